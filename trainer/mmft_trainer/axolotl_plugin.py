"""Axolotl plugin that attaches mmft's callback to the Trainer Axolotl builds.

Axolotl instantiates plugins by dotted name, so the runner hands over the callback through :func:`attach` before
training starts.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

PLUGIN_NAME = "mmft_trainer.axolotl_plugin.MmftPlugin"
_callbacks: list = []


def attach(callback) -> None:
    _callbacks.clear()
    _callbacks.append(callback)


class MmftPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return list(_callbacks)
