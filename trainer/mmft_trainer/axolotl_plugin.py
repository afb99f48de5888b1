"""Axolotl plugin that attaches mmft's callback to the Trainer Axolotl builds, and trims the loss's work.

Axolotl instantiates plugins by dotted name, so the runner hands over the callback through :func:`attach` before
training starts. Frozen encoder towers run without autograd (:mod:`mmft_trainer.frozen_towers`), and with Liger's
fused linear cross-entropy on, the language-model head runs over labelled positions only
(:mod:`mmft_trainer.labelled_rows`).
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin

PLUGIN_NAME = "mmft_trainer.axolotl_plugin.MmftPlugin"
_callbacks: list = []


def attach(callback) -> None:
    _callbacks.clear()
    _callbacks.append(callback)


class MmftPlugin(BasePlugin):
    def post_model_load(self, cfg, model):
        from .frozen_towers import run_frozen_towers_without_grad

        run_frozen_towers_without_grad(model)
        if cfg.liger_fused_linear_cross_entropy:
            from . import labelled_rows

            labelled_rows.install()

    def add_callbacks_post_trainer(self, cfg, trainer):
        return list(_callbacks)
