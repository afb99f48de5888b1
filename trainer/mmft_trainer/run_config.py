"""What mmft changes in the user's Axolotl config before training, and why (each change is logged)."""

from __future__ import annotations

import copy
from pathlib import Path

# A checkpoint every N optimizer steps when the config asks for none by steps: Spot preemption loses at most N steps.
DEFAULT_SAVE_STEPS = 50


def training_config(raw: dict, plugin: str, resume_from: Path | None) -> tuple[dict, list[str]]:
    """Return the config to train with and a note for each change made to ``raw``."""
    cfg = copy.deepcopy(raw)
    notes = []
    plugins = list(cfg.get("plugins") or [])
    if plugin not in plugins:
        cfg["plugins"] = plugins + [plugin]
    if cfg.get("save_strategy") != "steps" or not cfg.get("save_steps"):
        save_steps = cfg.get("save_steps") or DEFAULT_SAVE_STEPS
        notes.append(f"save_strategy {cfg.get('save_strategy')!r} -> 'steps' every {save_steps} steps, so a "
                     "preempted run loses little work")
        cfg["save_strategy"] = "steps"
        cfg["save_steps"] = save_steps
    # Axolotl's own auto-resume picks the newest checkpoint-N even if it was half-written; mmft picks instead.
    cfg["auto_resume_from_checkpoints"] = False
    if resume_from is not None:
        cfg["resume_from_checkpoint"] = str(resume_from)
        notes.append(f"resuming from {resume_from}")
    else:
        cfg.pop("resume_from_checkpoint", None)
    return cfg, notes
