"""How the `logprob` forward pass executes: `torch.compile` of the vision tower and/or the language model, and the
SDPA kernel of the vision tower's full bidirectional attention (4096 patches x 16 heads of head_dim 72 at 896 px).

The vision tower is ~75% of Gemma 3's FLOPs per image and runs 27 identical layers over 4096 tokens, so fusing its
LayerNorm/GELU/bias/residual passes (compile) and picking its attention kernel are where the eager model loses
time. Compiled modules run with ``dynamic=False``, so the scorer pads every batch to the same size
(``pads_batches``) and one graph serves the whole run. A module whose compilation fails runs eagerly instead
(logged once), so a compiler problem costs speed, never the evaluation.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

COMPILE_TARGETS = ("none", "vision", "vision+language")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
VISION_ATTENTION = ("auto", "flash", "efficient", "cudnn", "math")


@dataclass(frozen=True)
class ExecutionOptions:
    compile: str = "none"
    compile_mode: str = "default"
    vision_attention: str = "auto"

    def __post_init__(self):
        for field, value, allowed in (("compile", self.compile, COMPILE_TARGETS),
                                      ("compile_mode", self.compile_mode, COMPILE_MODES),
                                      ("vision_attention", self.vision_attention, VISION_ATTENTION)):
            if value not in allowed:
                raise ValueError(f"execution option {field}={value!r} is not one of {', '.join(allowed)}")

    @property
    def pads_batches(self) -> bool:
        """Compiled graphs are specialised to one batch shape; the last, smaller batch is padded to it."""
        return self.compile != "none"

    def label(self) -> str:
        parts = [f"compile={self.compile}"]
        if self.compile != "none":
            parts.append(f"mode={self.compile_mode}")
        parts.append(f"vision_attention={self.vision_attention}")
        return ",".join(parts)


# Images one model must score before `auto` compiles: on the H200 the vision tower + language model compile took
# 53-57 s and saved 4.6 ms per image against eager end to end (docs/bench-evaluator.md), so it repays itself after
# ~12,000 images. max-autotune (5-6 minutes, 62 vs 58 images/s) is never chosen automatically.
AUTO_COMPILE_MIN_IMAGES = 12_000


def resolve_execution(compile: str = "auto", compile_mode: str = "default", vision_attention: str = "auto",
                      images: int = 0, device_type: str = "cpu") -> ExecutionOptions:
    """`auto` compiles the vision tower and language model on CUDA when the model scores at least
    AUTO_COMPILE_MIN_IMAGES images, where the compile pays for itself; otherwise it runs eagerly."""
    target = compile
    if compile == "auto":
        worth_it = device_type == "cuda" and images >= AUTO_COMPILE_MIN_IMAGES
        target = "vision+language" if worth_it else "none"
    return ExecutionOptions(compile=target, compile_mode=compile_mode, vision_attention=vision_attention)


def _parts(model):
    """(vision tower, language model) of a Gemma 3-style image-text model (also after a LoRA merge)."""
    inner = getattr(model, "model", model)
    vision = getattr(inner, "vision_tower", None)
    language = getattr(inner, "language_model", None)
    if vision is None or language is None:
        raise ValueError(f"{type(model).__name__} has no model.vision_tower / model.language_model; "
                         "use --compile none and --vision-attention auto for this model")
    return vision, language


def _sdpa_backends(choice: str, device):
    if choice == "auto":
        return None
    from torch.nn.attention import SDPBackend

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[choice]
    if getattr(device, "type", str(device)) == "cuda":
        # Strict on the GPU: a kernel that cannot take these inputs is an error, not a silent fallback to math.
        return [backend]
    # CPU has no efficient/cuDNN kernels; math keeps CPU runs (tests, smoke runs) working with the same option.
    return [backend, SDPBackend.MATH]


class _ExecutedForward:
    """Stands in for ``module.forward``: runs it under the chosen SDPA kernels, compiled when asked, and falls back
    to the eager forward if compilation fails."""

    def __init__(self, label: str, eager, backends, compile_kwargs: dict | None):
        import torch

        self.label = label
        self.eager = eager
        self.backends = backends
        self.compiled = torch.compile(eager, **compile_kwargs) if compile_kwargs is not None else None
        self.compile_error: str | None = None

    def _kernels(self):
        if self.backends is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel(self.backends)

    def __call__(self, *args, **kwargs):
        import torch

        with self._kernels():
            if self.compiled is not None:
                try:
                    return self.compiled(*args, **kwargs)
                except torch.OutOfMemoryError:
                    raise
                except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly, say why once
                    self.compile_error = " ".join(f"{type(error).__name__}: {error}".split())[:500]
                    log.warning("%s: torch.compile failed (%s); running eagerly", self.label, self.compile_error)
                    self.compiled = None
            return self.eager(*args, **kwargs)


class AppliedExecution:
    """The modules whose forward was replaced; ``restore()`` puts the eager forwards back."""

    def __init__(self, options: ExecutionOptions, wrapped: dict):
        self.options = options
        self.wrapped = wrapped

    def compile_errors(self) -> dict[str, str]:
        return {label: forward.compile_error for label, (_, forward) in self.wrapped.items() if forward.compile_error}

    def restore(self) -> None:
        for module, _ in self.wrapped.values():
            del module.forward  # the instance attribute; the class's forward shows through again
        self.wrapped = {}


def apply_execution(model, options: ExecutionOptions, device) -> AppliedExecution:
    """Installs ``options`` on ``model`` in place (compilation itself happens on the first forward pass)."""
    if options.compile == "none" and options.vision_attention == "auto":
        return AppliedExecution(options, {})
    vision, language = _parts(model)
    compile_kwargs = None
    if options.compile != "none":
        compile_kwargs = {"dynamic": False}
        if options.compile_mode != "default":
            compile_kwargs["mode"] = options.compile_mode
    targets = {"vision_tower": (vision, _sdpa_backends(options.vision_attention, device), compile_kwargs)}
    if options.compile == "vision+language":
        # The language model's masked (causal / sliding-window) attention keeps SDPA's own kernel choice.
        targets["language_model"] = (language, None, compile_kwargs)
    wrapped = {}
    for label, (module, backends, kwargs) in targets.items():
        if backends is None and kwargs is None:
            continue
        forward = _ExecutedForward(label, module.forward, backends, kwargs)
        module.forward = forward
        wrapped[label] = (module, forward)
    return AppliedExecution(options, wrapped)
