"""The text normaliser used for exact matching (and recorded in meta.json)."""

from __future__ import annotations

import re
import unicodedata

#: Bumped whenever :func:`normalize` changes; an index records the version it was built with.
NORMALIZER = "nfkd-strip-marks-casefold-punct-space/1"

_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Case-, accent-, punctuation- and whitespace-insensitive key of *text*.

    ``"Sjögren's  Syndrome"`` and ``"sjogren s syndrome"`` share one key; hyphens and
    other punctuation become spaces, so ``"Cafe-au-lait spots"`` equals ``"cafe au lait spots"``.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", stripped.casefold()).split())
