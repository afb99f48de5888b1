"""Evaluation examples from the chat JSONL that `mmft dataprep` writes (the seed's format):

``{"messages": [{"role": "system", ...}, {"role": "user", "content": [{"type": "image", "path": ...},
{"type": "text", "text": QUESTION}]}, {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]}]}``

The label comes from a top-level ``label`` (0/1) when present, else from the assistant answer. The id is a
top-level ``id`` when present, else the image file name without extension. Relative image paths are resolved
against the JSONL file's directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .answers import parse_answer


class ExamplesError(ValueError):
    """An evaluation file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    id: str
    label: int
    image: str
    prompt: tuple[dict, ...]


def _image_entry(messages: list, where: str) -> str:
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image":
                for key in ("path", "url", "image"):
                    if isinstance(part.get(key), str) and part[key]:
                        return part[key]
    raise ExamplesError(f"{where}: no image entry ({{'type': 'image', 'path': ...}}) in the messages")


def _text_of(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content or () if isinstance(part, dict))


def _resolve(image: str, base_dir: Path) -> str:
    if "://" in image or PurePosixPath(image).is_absolute():
        return image
    return str(base_dir / image)


def parse_example(row: dict, where: str, base_dir: Path, positive_answer: str, negative_answer: str) -> Example:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ExamplesError(f"{where}: missing 'messages' list")
    image = _resolve(_image_entry(messages, where), base_dir)
    prompt = tuple(message for message in messages if message.get("role") != "assistant")
    if "label" in row:
        label = row["label"]
        if isinstance(label, bool) or label not in (0, 1):
            raise ExamplesError(f"{where}: 'label' must be 0 or 1, got {json.dumps(label)}")
    else:
        answers = [_text_of(message) for message in messages if message.get("role") == "assistant"]
        label = parse_answer(answers[-1], positive_answer, negative_answer) if answers else None
        if label is None:
            raise ExamplesError(
                f"{where}: no 'label' field and the assistant answer does not read as "
                f"{positive_answer!r} or {negative_answer!r}"
            )
    example_id = str(row["id"]) if "id" in row else PurePosixPath(image).stem
    return Example(id=example_id, label=int(label), image=image, prompt=prompt)


def read_examples(path: Path, positive_answer: str, negative_answer: str, limit: int | None = None) -> list[Example]:
    examples: list[Example] = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise ExamplesError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ExamplesError(f"{where}: expected a JSON object")
            examples.append(parse_example(row, where, path.parent, positive_answer, negative_answer))
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        raise ExamplesError(f"{path}: no examples")
    return examples
