"""Merges a trained LoRA adapter into its base model and saves the result with the processor/tokenizer."""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base_model: str, adapter_dir: Path, out_dir: Path, multimodal: bool) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    auto_class = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    # The base is loaded unquantized even after QLoRA: a 4-bit base cannot hold merged weights exactly.
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = auto_class.from_pretrained(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    loader = AutoProcessor if multimodal else AutoTokenizer
    loader.from_pretrained(str(adapter_dir)).save_pretrained(out_dir)
    return out_dir
