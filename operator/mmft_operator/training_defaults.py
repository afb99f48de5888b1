"""Training defaults (adapter, micro batch, gradient checkpointing) that fit the card, by a memory model measured on
an H200 (bench/train_gemma3_h200.py, docs/bench-trainer.md).

The model predicts the peak of ``torch.cuda.max_memory_allocated`` for one multimodal sample of the seed's shape
(one 896 px image = 256 tokens, ~280 tokens in all), per GPU:

    peak = fixed x (weights + LoRA state) / (the same for the measured 4B) + micro batch x activations per sample

* **fixed**: measured on the H200 for Gemma 3 4B at r=32 per adapter (weights, LoRA state, CUDA context and
  workspaces), scaled to another size or rank by its weights + LoRA state: bf16 weights for LoRA; for QLoRA every
  linear layer in NF4 (0.516 byte per parameter with its double-quantised constants; bitsandbytes quantises the
  vision tower's too) and the embeddings in bf16; LoRA state is rank-r adapters on every attention and MLP
  projection with fp32 weights, gradients and two AdamW moments (16 bytes per parameter).
* **activations per sample**: measured for Gemma 3 4B per adapter and speed options (Liger's fused linear
  cross-entropy never materialises the 262k-vocabulary logits; gradient checkpointing keeps only each layer's
  input); a larger model scales them by layers x hidden size, which over-counts the vision tower's share (the same
  tower for every Gemma 3 size), so larger models are predicted on the safe side.

The plan: the fastest option whose largest fitting micro batch (from :data:`MICRO_BATCH_LADDER`) stays under
:data:`MEMORY_HEADROOM` of the card and reaches the seed's effective batch of 4 - LoRA before QLoRA (bf16 weights are
not dequantised on every matmul) and no checkpointing before checkpointing (recomputation costs another forward pass)
- else the option with the largest fitting micro batch; where nothing fits, the least memory (micro batch 1 with
checkpointing), and a CUDA OOM then ends the run with reason OutOfMemory. Values the user sets (adapter, micro batch,
checkpointing, Liger through ``overrides.plugins``) are kept and only the others are planned around them. The
ladder stops at 32: 64 was only 5.5% faster on the H200 and doubles the effective batch again, which with the seed's
learning rate means half as many updates per epoch.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from mmft_operator.accelerators import profile

MEMORY_HEADROOM = 0.85
MICRO_BATCH_LADDER = (1, 2, 4, 6, 8, 12, 16, 24, 32)
SEED_EFFECTIVE_BATCH = 4
LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"
GIB = 2**30

# bytes per parameter
BF16 = 2
NF4_WITH_CONSTANTS = 0.516  # 4 bits + double-quantised block constants (bitsandbytes' 4.127 bits)
LORA_STATE = 16


@dataclass(frozen=True)
class ModelShape:
    """The language model's shape (Gemma 3; the vision tower is the same SigLIP for every size)."""

    name: str
    hidden_size: int
    num_layers: int
    intermediate_size: int
    attention_width: int  # heads x head_dim
    kv_width: int  # key/value heads x head_dim
    vocab_size: int = 262_208
    vision_parameters: float = 0.417e9

    def projections(self) -> list[tuple[int, int]]:
        h = self.hidden_size
        return [(h, self.attention_width), (h, self.kv_width), (h, self.kv_width), (self.attention_width, h),
                (h, self.intermediate_size), (h, self.intermediate_size), (self.intermediate_size, h)]

    @property
    def linear_parameters(self) -> int:
        return self.num_layers * sum(i * o for i, o in self.projections())

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def parameters(self) -> float:
        return self.linear_parameters + self.embedding_parameters + self.vision_parameters

    def lora_parameters(self, rank: int) -> int:
        return self.num_layers * sum(rank * (i + o) for i, o in self.projections())

    def weights_gib(self, adapter: str) -> float:
        # bitsandbytes quantises every linear layer of the model, the vision tower's too; embeddings stay bf16.
        linear_bytes = NF4_WITH_CONSTANTS if adapter == "qlora" else BF16
        return ((self.linear_parameters + self.vision_parameters) * linear_bytes
                + self.embedding_parameters * BF16) / GIB

    @property
    def download_gib(self) -> float:
        """The checkpoint as published on the Hub, in bf16: what a pod downloads into HF_HOME (and a merged export
        of this size holds)."""
        return self.weights_gib("lora")

    @property
    def activation_scale(self) -> float:
        """Activations per sample relative to the measured 4B: layers x hidden size."""
        return self.num_layers * self.hidden_size / (GEMMA3_4B.num_layers * GEMMA3_4B.hidden_size)


GEMMA3_4B = ModelShape("4B", 2560, 34, 10240, 8 * 256, 4 * 256)
MODEL_SHAPES: dict[str, ModelShape] = {
    shape.name: shape
    for shape in (
        GEMMA3_4B,
        ModelShape("12B", 3840, 48, 15360, 16 * 256, 8 * 256),
        ModelShape("27B", 5376, 62, 21504, 32 * 128, 16 * 128),
    )
}
MEASURED_LORA_RANK = 32


@dataclass(frozen=True)
class Measured:
    """One line of the memory model for Gemma 3 4B at r=32: peak GiB = fixed + per_sample x micro batch."""

    fixed_gib: float
    per_sample_gib: float
    source: str


# (adapter, liger, gradient checkpointing) -> measured line. LoRA runs with torch.compile (rendered with it), QLoRA
# without (rendered without: its 4-bit layers gain nothing from it).
MEASURED: dict[tuple[str, bool, bool], Measured] = {
    ("lora", True, False): Measured(9.4, 1.02, "H200, session 2 call 5: micro batch 32 -> 41.9, 64 -> 74.4 GiB"),
    ("qlora", False, False): Measured(
        4.0, 2.10, "H200, issue 18: micro batch 8 -> 20.8, 16 -> 37.6 GiB (run 3: 16 -> 37.6 GiB again)"
    ),
    ("qlora", True, False): Measured(
        3.8, 1.10, "H200, issue 18 run 3: micro batch 8 -> 12.7, 16 -> 21.4, 32 -> 39.0 GiB"
    ),
    ("qlora", True, True): Measured(3.8, 0.21, "H200, issue 18 run 3: micro batch 16 -> 7.2, 32 -> 10.6 GiB"),
}


def _line(adapter: str, liger: bool, checkpointing: bool) -> Measured:
    """The measured line, or one derived from measured ones where a combination was not run (said in ``source``)."""
    key = (adapter, liger, checkpointing)
    if key in MEASURED:
        return MEASURED[key]
    # The base's precision changes the weights, not the activations per sample; Liger's fused cross-entropy saves
    # the same logits memory whatever the base. So a missing combination borrows the other adapter's activations.
    other = "qlora" if adapter == "lora" else "lora"
    fixed = MEASURED[(adapter, True, False)].fixed_gib
    if (other, liger, checkpointing) in MEASURED:
        borrowed = MEASURED[(other, liger, checkpointing)]
        return Measured(fixed, borrowed.per_sample_gib, f"derived: {other}'s activations per sample")
    logits = MEASURED[("qlora", False, False)].per_sample_gib - MEASURED[("qlora", True, False)].per_sample_gib
    with_liger = _line(adapter, True, checkpointing)
    return Measured(fixed, with_liger.per_sample_gib + logits, "derived: + the logits Liger would not materialise")


def _state_gib(shape: ModelShape, adapter: str, rank: int) -> float:
    """Weights and LoRA state (fp32 adapter, gradients, two AdamW moments)."""
    return shape.weights_gib(adapter) + shape.lora_parameters(rank) * LORA_STATE / GIB


def predicted_peak_gib(shape: ModelShape, adapter: str, micro_batch: int, checkpointing: bool, liger: bool,
                       lora_rank: int = MEASURED_LORA_RANK) -> float:
    line = _line(adapter, liger, checkpointing)
    # The measured fixed part (weights, LoRA state, CUDA context and workspaces) scales with weights + LoRA state.
    fixed = line.fixed_gib * _state_gib(shape, adapter, lora_rank) / _state_gib(GEMMA3_4B, adapter, MEASURED_LORA_RANK)
    return fixed + line.per_sample_gib * shape.activation_scale * micro_batch


@dataclass(frozen=True)
class TrainingDefaults:
    adapter: str
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    liger: bool
    torch_compile: bool
    dataloader_num_workers: int
    predicted_peak_gib: float
    budget_gib: float
    # Whether the predicted peak stays inside the budget (False only where even the least memory does not fit, or
    # where the user's own values do not).
    fits: bool

    def as_dict(self) -> dict:
        return asdict(self)


def model_shape(base_model: str, declared_size: str | None) -> ModelShape:
    """The declared size, else the size in the model's name (google/gemma-3-12b-it -> 12B), else Gemma 3 4B."""
    if declared_size:
        return MODEL_SHAPES[declared_size]
    match = re.search(r"(?<![0-9.])([0-9]+)[bB](?![a-zA-Z0-9])", base_model.rsplit("/", 1)[-1])
    if match and f"{match.group(1)}B" in MODEL_SHAPES:
        return MODEL_SHAPES[f"{match.group(1)}B"]
    return GEMMA3_4B


def plan(
    accelerator: str,
    shape: ModelShape = GEMMA3_4B,
    adapter: str | None = None,
    micro_batch: int | None = None,
    checkpointing: bool | None = None,
    liger: bool = True,
    lora_rank: int = MEASURED_LORA_RANK,
) -> TrainingDefaults:
    """Defaults for ``accelerator`` and ``shape``; the arguments that are set are the user's and stay as they are."""
    card = profile(accelerator)
    budget = card.memory_gib * MEMORY_HEADROOM
    options = [(a, c) for a in ("lora", "qlora") for c in (False, True)
               if adapter in (None, a) and checkpointing in (None, c)]
    candidates = []
    for option_adapter, option_checkpointing in options:
        sizes = (micro_batch,) if micro_batch is not None else MICRO_BATCH_LADDER
        fitting = [size for size in sizes if predicted_peak_gib(
            shape, option_adapter, size, option_checkpointing, liger, lora_rank) <= budget]
        if fitting:
            candidates.append((option_adapter, option_checkpointing, fitting[-1]))
    enough = [c for c in candidates if c[2] >= SEED_EFFECTIVE_BATCH or micro_batch is not None]
    if enough:
        chosen = enough[0]
    elif candidates:
        chosen = max(candidates, key=lambda candidate: candidate[2])
    else:
        # Nothing fits (or the user's values do not): the least memory the user's values allow. The run says
        # why if it then fails: GPU out of memory, reason OutOfMemory, with what to lower.
        chosen = (adapter or "qlora", True if checkpointing is None else checkpointing, micro_batch or 1)
    chosen_adapter, chosen_checkpointing, chosen_micro_batch = chosen
    peak = predicted_peak_gib(shape, chosen_adapter, chosen_micro_batch, chosen_checkpointing, liger, lora_rank)
    return TrainingDefaults(
        adapter=chosen_adapter,
        micro_batch_size=chosen_micro_batch,
        gradient_accumulation_steps=math.ceil(SEED_EFFECTIVE_BATCH / chosen_micro_batch),
        gradient_checkpointing=chosen_checkpointing,
        liger=liger,
        torch_compile=chosen_adapter == "lora",
        dataloader_num_workers=card.dataloader_workers,
        predicted_peak_gib=round(peak, 1),
        budget_gib=round(budget, 1),
        fits=peak <= budget,
    )
