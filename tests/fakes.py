"""Picklable stand-ins for the spaCy pipeline, for tests of bulk-annotation mechanics (not of linking quality)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from linker.types import Candidate, Mention

TERMS = {
    "seizures": ("HP:0001250", "Seizure"),
    "seizure": ("HP:0001250", "Seizure"),
    "short stature": ("HP:0004322", "Short stature"),
    "enlarged kidney": ("HP:0000105", "Enlarged kidney"),
    "nephromegaly": ("HP:0000105", "Enlarged kidney"),
    "developmental delay": ("HP:0001263", "Global developmental delay"),
}
_PATTERN = re.compile("|".join(sorted(map(re.escape, TERMS), key=len, reverse=True)), re.IGNORECASE)


class KeywordAnnotator:
    """Finds the words of :data:`TERMS`; ``no X`` is negated; a text containing ``<<boom>>`` raises."""

    def __call__(self, texts: Sequence[str]) -> list[list[Mention]]:
        out = []
        for text in texts:
            if "<<boom>>" in text:
                raise ValueError("the pipeline choked on <<boom>>")
            mentions = []
            for match in _PATTERN.finditer(text):
                concept_id, name = TERMS[match.group(0).lower()]
                negated = text[max(0, match.start() - 3):match.start()].lower() == "no "
                mentions.append(Mention(match.start(), match.end(), match.group(0),
                                        (Candidate(concept_id, name, name, 0.9), Candidate("HP:0000118", "Phenotypic abnormality", "Phenotypic abnormality", 0.5)),
                                        concept_id, "dictionary", negated=negated))
            out.append(mentions)
        return out


class InterruptAfter(KeywordAnnotator):
    """Raises KeyboardInterrupt on the call after *calls* calls: a deterministic Ctrl-C in the middle of a run."""

    def __init__(self, calls: int) -> None:
        self.left = calls

    def __call__(self, texts: Sequence[str]) -> list[list[Mention]]:
        if self.left <= 0:
            raise KeyboardInterrupt
        self.left -= 1
        return super().__call__(texts)


class HoldAnnotator(KeywordAnnotator):
    """A :class:`KeywordAnnotator` that, on a text containing ``<<hold>>``, waits until the file *release* exists:
    a run that can be killed while one batch is certainly unfinished and every other one may be done."""

    def __init__(self, release: str) -> None:
        self.release = release

    def __call__(self, texts: Sequence[str]) -> list[list[Mention]]:
        import os
        import time

        while any("<<hold>>" in text for text in texts) and not os.path.exists(self.release):
            time.sleep(0.05)
        return super().__call__(texts)


class DieAnnotator(KeywordAnnotator):
    """A :class:`KeywordAnnotator` whose process ends (``os._exit``) on a text containing ``<<die>>``, once the file
    *release* exists: a Spark task that fails for good at a moment the test chooses."""

    def __init__(self, release: str) -> None:
        self.release = release

    def __call__(self, texts: Sequence[str]) -> list[list[Mention]]:
        import os
        import time

        if any("<<die>>" in text for text in texts):
            while not os.path.exists(self.release):
                time.sleep(0.05)
            os._exit(3)
        return super().__call__(texts)
