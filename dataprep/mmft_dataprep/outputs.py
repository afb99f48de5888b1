"""The prepared dataset's files: chat_template JSONL lines and atomic writes (no half-written file after a crash)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mmft_operator.seed_prompts import PromptSet


def chat_example(image_path: str, positive: bool, prompts: PromptSet) -> dict:
    """One Axolotl chat_template example (field_messages: messages), as in the seed article."""
    return {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": prompts.system}]},
            {"role": "user", "content": [{"type": "image", "path": image_path},
                                         {"type": "text", "text": prompts.question}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": prompts.positive_answer if positive else prompts.negative_answer}]},
        ]
    }


def write_jsonl_atomically(path: Path, rows: Iterable[dict]) -> int:
    count = 0

    def lines():
        nonlocal count
        for row in rows:
            count += 1
            yield json.dumps(row, ensure_ascii=False) + "\n"

    write_text_atomically(path, lines())
    return count


def write_json_atomically(path: Path, document: dict) -> None:
    write_text_atomically(path, [json.dumps(document, indent=2, ensure_ascii=False) + "\n"])


def write_text_atomically(path: Path, chunks: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(chunks)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
