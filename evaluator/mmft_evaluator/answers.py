"""Reading a model's free-text answer as a yes/no call, the way the seed's notebook did.

The seed asked "Does this appear to be malignant melanoma?" and parsed answers such as "Yes, this appears to be
malignant melanoma." Models that explain first (MedGemma: "... suggestive of melanoma. Yes, this appears to be
malignant melanoma.") put the verdict last, so the last verdict in the text wins.
"""

from __future__ import annotations

import re

_VERDICT_NEAR_SUBJECT = re.compile(r"\b(yes|no)\b[^.?!]*?\bmalignant melanoma\b", re.IGNORECASE)
_LEADING_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def parse_answer(text: str, positive_answer: str, negative_answer: str) -> int | None:
    """1 for a positive call, 0 for a negative one, None when the answer states neither."""
    lowered = text.lower()
    exact = [(lowered.rfind(answer.lower()), value) for answer, value in ((positive_answer, 1), (negative_answer, 0))]
    found = [(position, value) for position, value in exact if position >= 0]
    if found:
        return max(found)[1]
    verdicts = _VERDICT_NEAR_SUBJECT.findall(text)
    if verdicts:
        return 1 if verdicts[-1].lower() == "yes" else 0
    leading = _LEADING_VERDICT.match(text)
    if leading:
        return 1 if leading.group(1).lower() == "yes" else 0
    return None
