"""A tiny random Gemma 3 (text + SigLIP vision) with a real processor, built offline in a few seconds.

No model hub is reachable here, so tests build the model instead of downloading one: a byte-fallback BPE tokenizer
trained with ``tokenizers`` and wrapped as ``GemmaTokenizer`` (with Gemma's turn and image special tokens and its
chat template), ``Gemma3ImageProcessorPil`` at 32 px, ``Gemma3Processor`` with 4 tokens per image, and a
``Gemma3ForConditionalGeneration`` of hidden size 64 with 2 text layers and 1 vision layer. Everything is seeded, so
two builds give the same files.

The chat template is Axolotl's ``gemma3`` template, copied beside this file so that users of the tiny model that do
not install Axolotl (the evaluator) get the same one.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmft_operator.seed_prompts import SEED_PROMPTS

IMAGE_SIZE = 32
PATCH_SIZE = 8
TOKENS_PER_IMAGE = 4
VOCAB_SIZE = 640
SEED = 1234

SPECIAL_TOKENS = [
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>",
]
BYTE_TOKENS = [f"<0x{value:02X}>" for value in range(256)]
CHAT_TEMPLATE = (Path(__file__).with_name("gemma3_chat_template.jinja")).read_text()

_CORPUS = [
    SEED_PROMPTS.system,
    SEED_PROMPTS.question,
    SEED_PROMPTS.positive_answer,
    "No, this appears to be a benign lesion.",
    "The lesion shows irregular borders, uneven coloration and asymmetry.",
    "The mole is symmetric with a regular border and uniform color.",
    "user model system assistant image text",
]


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    backend = Tokenizer(BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Gemma's own normalisation: spaces become "▁" and each word keeps its leading marker.
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    trainer = BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS + BYTE_TOKENS, show_progress=False)
    backend.train_from_iterator(_CORPUS * 4, trainer=trainer)
    state = json.loads(backend.to_str())["model"]
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in state["merges"]]
    return state["vocab"], merges


def build_tokenizer():
    from transformers import GemmaTokenizer

    vocab, merges = _train_tokenizer()
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
            "sot_token": "<start_of_turn>",
            "eot_token": "<end_of_turn>",
        },
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                                       "<image_soft_token>"]}
    )
    return tokenizer


def build_processor(image_size: int = IMAGE_SIZE, tokens_per_image: int = TOKENS_PER_IMAGE):
    """The processor; the defaults are the tiny model's, the benchmark passes Gemma 3's real 896 px and 256."""
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor

    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=tokens_per_image,
    )


def tiny_config(tokenizer):
    from transformers import Gemma3Config

    def token_id(token: str) -> int:
        return tokenizer.convert_tokens_to_ids(token)

    return Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 1024,
            "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"],
            "pad_token_id": token_id("<pad>"),
            "bos_token_id": token_id("<bos>"),
            "eos_token_id": token_id("<eos>"),
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        mm_tokens_per_image=TOKENS_PER_IMAGE,
        image_token_index=token_id("<image_soft_token>"),
        boi_token_index=token_id("<start_of_image>"),
        eoi_token_index=token_id("<end_of_image>"),
        pad_token_id=token_id("<pad>"),
        bos_token_id=token_id("<bos>"),
        eos_token_id=token_id("<eos>"),
    )


def build_tiny_gemma3(out_dir: Path) -> Path:
    """Save a tiny random Gemma 3 model and its processor/tokenizer to ``out_dir`` and return it."""
    import torch
    from transformers import Gemma3ForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    processor = build_processor()
    torch.manual_seed(SEED)
    model = Gemma3ForConditionalGeneration(tiny_config(processor.tokenizer))
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# The seed's prompt set (mmft_operator.seed_prompts); answers indexed by label. The negative answer is the tiny
# model's own: like the seed's positive answer, the tiny tokenizer learns it as one token (_CORPUS), which the tests
# of single- vs multi-token answers rely on.
SYSTEM_PROMPT = SEED_PROMPTS.system
QUESTION = SEED_PROMPTS.question
ANSWERS = ("No, this appears to be a benign lesion.", SEED_PROMPTS.positive_answer)


def write_chat_dataset(out_dir: Path, rows: int = 16, image_px: int = 48) -> Path:
    """Write ``rows`` examples in the seed's chat_template format (system, user image + question, assistant) with
    small seeded JPEGs, and return the JSONL path. Labels alternate so both answers occur."""
    import random

    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    lines = []
    for index in range(rows):
        label = index % 2
        image = Image.new("RGB", (image_px, image_px), (230, 200, 180))
        radius = rng.randint(image_px // 6, image_px // 3)
        center = image_px // 2
        colour = (60, 30, 20) if label else (150, 100, 70)
        ImageDraw.Draw(image).ellipse((center - radius, center - radius, center + radius, center + radius), colour)
        image_path = out_dir / "images" / f"lesion_{index:04d}.jpg"
        image.save(image_path, quality=90)
        lines.append(json.dumps({"messages": [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
            {"role": "user", "content": [{"type": "image", "path": str(image_path)},
                                         {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[label]}]},
        ]}))
    path = out_dir / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    import sys

    print(build_tiny_gemma3(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-gemma3")))
