"""The Gemma-3-4B architecture both GPU benchmarks build with random weights (no model hub on the GPU machine).

Speed does not depend on the weights' values. Text: hidden 2560, 34 layers, 8 heads / 4 KV heads, head_dim 256,
sliding window 1024 with 5 local : 1 global layers, vocab 262208. Vision: SigLIP, 27 layers, hidden 1152, 896 px,
patch 14, 256 tokens per image.
"""

from __future__ import annotations

TEXT = {
    "vocab_size": 262208,
    "hidden_size": 2560,
    "intermediate_size": 10240,
    "num_hidden_layers": 34,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "sliding_window": 1024,
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 5 + ["sliding_attention"] * 4,
    "max_position_embeddings": 131072,
    "query_pre_attn_scalar": 256,
}
VISION = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 896,
    "patch_size": 14,
}
TOKENS_PER_IMAGE = 256


def config(tokenizer, **vision_overrides):
    """A Gemma3Config of this architecture with the special tokens of ``tokenizer``."""
    from transformers import Gemma3Config

    token = tokenizer.convert_tokens_to_ids
    special = {"pad_token_id": token("<pad>"), "bos_token_id": token("<bos>"), "eos_token_id": token("<eos>")}
    return Gemma3Config(
        text_config={**TEXT, **special},
        vision_config={**VISION, **vision_overrides},
        mm_tokens_per_image=TOKENS_PER_IMAGE,
        image_token_index=token("<image_soft_token>"),
        boi_token_index=token("<start_of_image>"),
        eoi_token_index=token("<end_of_image>"),
        **special,
    )
