"""mmft's bundled trainer: preflight, Axolotl training with progress reports, preemption-safe checkpoints, export."""
