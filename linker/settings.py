"""The ``concept_linker`` settings' values: checked once, where they are given (``--set``, ``config=``, a
pipeline's ``config.cfg``), so that a bad value is one clear error instead of a failure per document."""

from __future__ import annotations

import math
from typing import Any

from linker.errors import LinkerError
from linker.mentions import SOURCES

UNLINKED = ("keep", "drop")
_AT_LEAST_ONE = ("k", "batch_size", "max_words", "dense_limit")
_AT_LEAST_ZERO = ("min_chars", "composite_margin")
_SCORES = ("threshold", "dense_threshold")  # cosine similarities of L2-normalised vectors; 1.0 is an exact name
_PROBABILITIES = ("detector_confidence",)


def check_values(settings: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse a value of the wrong type (by the type of its default) or out of range, naming the setting."""
    for key, value in settings.items():
        default = defaults.get(key)
        problem = _type_problem(value, default)
        if problem is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            problem = _range_problem(key, value)
        if problem is None and key == "sources":
            sources = list(dict.fromkeys(value))
            if not sources or any(s not in SOURCES for s in sources):
                problem = f"each must be one of {', '.join(SOURCES)}, and at least one given"
        if problem is None and key == "unlinked" and value not in UNLINKED:
            problem = "use 'keep' or 'drop'"
        if problem is not None:
            raise LinkerError(f"concept_linker {key}={value!r}: {problem}")


def _type_problem(value: Any, default: Any) -> str | None:
    if default is None:  # index, memory: a path or nothing
        return None if value is None or isinstance(value, str) else "must be a path (a string) or null"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "must be a string"
    if isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
        return None if ok else "must be a list of strings"
    return None


def _range_problem(key: str, value: float) -> str | None:
    if key in _AT_LEAST_ONE and value < 1:
        return "must be at least 1"
    if key in _AT_LEAST_ZERO and value < 0:
        return "must be at least 0"
    if key in _SCORES and not 0.0 <= value <= 1.0:
        return "must lie between 0 and 1 (a cosine similarity; 1.0 links exact names only)"
    if key in _PROBABILITIES and not 0.0 <= value <= 1.0:
        return "must lie between 0 and 1 (a probability; 0 treats every detected span alike)"
    return None
