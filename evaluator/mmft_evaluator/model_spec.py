"""The `--model NAME=SPEC` argument of `mmft evaluate`.

SPEC is one of

* a Hugging Face id or a local/``gs://`` path of a full (or merged) model: ``google/gemma-3-4b-it``;
* ``BASE+ADAPTER`` (mmft_operator.model_location): a base model plus a LoRA adapter directory (what a FineTuneJob
  exports), for instance ``google/gemma-3-4b-it+gs://bucket/runs/melanoma/adapter``;
* an adapter directory alone, whose ``adapter_config.json`` names its base model (resolved at load time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmft_operator.model_location import ModelLocationError, format_location, parse_location

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class ModelSpecError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model: str
    adapter: str | None = None

    def describe(self) -> str:
        return format_location(self.model, self.adapter)


def parse_model_argument(text: str) -> ModelSpec:
    name, separator, spec = text.partition("=")
    if not separator or not spec.strip():
        raise ModelSpecError(f"--model {text!r}: expected NAME=SPEC, for example base=google/gemma-3-4b-it")
    name, spec = name.strip(), spec.strip()
    if not _NAME.match(name):
        raise ModelSpecError(
            f"--model {text!r}: name {name!r} must be 1-63 letters, digits, '.', '_' or '-' (it names output files)"
        )
    try:
        location = parse_location(spec)
    except ModelLocationError as error:
        raise ModelSpecError(f"--model {text!r}: {error}") from None
    return ModelSpec(name=name, model=location.model, adapter=location.adapter)


def parse_model_arguments(texts: list[str]) -> list[ModelSpec]:
    specs = [parse_model_argument(text) for text in texts]
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelSpecError(f"--model names must be unique; repeated: {', '.join(duplicates)}")
    return specs
