"""The model location format ``BASE+ADAPTER``: a base model plus a LoRA adapter directory.

The one parser and formatter: the operator writes a FineTuneJob's adapter export as a location for `mmft evaluate`
(and `mmft render` shows it), the evaluator parses it back. A location without ``+`` is a whole model (a Hugging Face
id, or a local or ``gs://`` path). Pure, standard library only: the workloads import it without the operator's
dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "+"


class ModelLocationError(ValueError):
    pass


@dataclass(frozen=True)
class ModelLocation:
    model: str
    adapter: str | None = None

    def __str__(self) -> str:
        return format_location(self.model, self.adapter)


def format_location(model: str, adapter: str | None = None) -> str:
    """``model``, or ``model+adapter`` when an adapter is given."""
    return f"{model}{SEPARATOR}{adapter}" if adapter else model


def parse_location(text: str) -> ModelLocation:
    """The parts of ``BASE+ADAPTER`` (surrounding spaces dropped), or the whole model of a location without ``+``."""
    model, separator, adapter = text.partition(SEPARATOR)
    model, adapter = model.strip(), adapter.strip()
    if separator and not (model and adapter):
        raise ModelLocationError("BASE+ADAPTER needs both a base model and an adapter")
    if SEPARATOR in adapter:
        raise ModelLocationError(f"only one {SEPARATOR!r} is allowed (BASE+ADAPTER)")
    return ModelLocation(model, adapter or None)
