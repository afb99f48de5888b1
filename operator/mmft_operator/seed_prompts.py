"""The seed's prompt set: the texts of every chat sample (system, question, the two answers).

The one source of these texts: the DatasetPrep and Evaluation defaults of the API, `mmft dataprep` and
`mmft evaluate`'s defaults, the tests' tiny model and the benchmarks read them here, so a model is evaluated with the
question and answers it was trained on. Pure data: the workloads import it without the operator's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSet:
    system: str
    question: str
    positive_answer: str
    negative_answer: str


SEED_PROMPTS = PromptSet(
    system="You are a dermatology assistant that helps identify potential melanoma from skin lesion images.",
    question="Does this appear to be malignant melanoma?",
    positive_answer="Yes, this appears to be malignant melanoma.",
    negative_answer="No, this does not appear to be malignant melanoma.",
)
