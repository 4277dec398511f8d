"""Composite mentions: one written span, several concepts ("breast and ovarian cancer" → breast cancer,
ovarian cancer; "colorectal adenomas and carcinoma" → colorectal adenomas, colorectal carcinoma).

:func:`readings` spells out the ways a coordinated span may be read as separate names; the component
searches every conjunct and :func:`choose` keeps the reading whose conjuncts match best, provided it beats
the span read as one name. Pure functions: nothing here searches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

#: coordinators between conjuncts ("and", "or", "and/or", "nor", a comma, a slash between words)
_COORDINATOR = re.compile(r"\s*(?:,\s*(?:and/or|and|or)\s+|,\s*|\s+(?:and/or|and|or|nor)\s+|/)\s*", re.IGNORECASE)
MAX_CONJUNCTS = 4


def readings(text: str) -> list[tuple[str, ...]]:
    """The readings of *text* as two or more names, each a tuple of conjunct queries; [] when *text*
    has no coordinator between words. Three shapes, as annotators of NCBI-disease and CDR split them:

    * a shared tail: "breast and ovarian cancer" → ("breast cancer", "ovarian cancer");
    * a shared head: "colorectal adenomas and carcinoma" → ("colorectal adenomas", "colorectal carcinoma");
    * plain parts: "ataxia and muscular dystrophy" → ("ataxia", "muscular dystrophy");
    * a hyphenated head: "B- and T-cell lymphomas" → ("B-cell lymphomas", "T-cell lymphomas").
    """
    parts = [p.strip() for p in _COORDINATOR.split(text)]
    if len(parts) < 2 or len(parts) > MAX_CONJUNCTS or any(not p for p in parts):
        return []
    words = [p.split() for p in parts]
    found: list[tuple[str, ...]] = []

    def add(reading: Sequence[str]) -> None:
        reading = tuple(reading)
        if len(set(reading)) == len(reading) and reading not in found:
            found.append(reading)

    last = words[-1]
    if all(len(w) == 1 and w[0].endswith("-") for w in words[:-1]) and "-" in last[0]:
        rest = " ".join([last[0].split("-", 1)[1]] + last[1:])  # "B- and T-cell lymphomas"
        add([f"{w[0]}{rest}" for w in words[:-1]] + [parts[-1]])
    if len(last) > 1 and all(len(w) <= 2 for w in words[:-1]):
        tail = " ".join(last[1:])
        add([f"{' '.join(w)} {tail}" for w in words[:-1]] + [parts[-1]])
    first = words[0]
    if len(first) > 1 and all(len(w) <= 2 for w in words[1:]):
        head = " ".join(first[:-1])
        add([parts[0]] + [f"{head} {' '.join(w)}" for w in words[1:]])
    add(parts)
    return found


def choose(text: str, options: Sequence[tuple[str, ...]], score: Callable[[str], float], *,
           margin: float = 0.0) -> tuple[str, ...] | None:
    """The reading whose weakest conjunct scores best, when that beats the whole span read as one name by
    more than *margin* (an exact name of the whole, score 1.0, is never split); None otherwise."""
    whole = score(text)
    best: tuple[str, ...] | None = None
    best_score = whole + margin
    for reading in options:
        weakest = min(score(q) for q in reading)
        if weakest > best_score:
            best, best_score = reading, weakest
    return best


def conjunct_links(queries: Sequence[str], found: dict[str, list[Any]],
                   search: Callable[[list[str]], dict[str, list[Any]]], *, margin: float = 0.0
                   ) -> dict[str, list[Any]]:
    """For each composite query among *queries* (its best candidate not an exact name), the best candidate of
    each conjunct of its chosen reading; the conjuncts of the whole batch are searched at once (*found* gains
    them)."""
    def best(candidates: list[Any]) -> float:
        return candidates[0].score if candidates else 0.0

    options = {q: readings(q) for q in dict.fromkeys(queries) if found.get(q) and not found[q][0].exact}
    options = {q: r for q, r in options.items() if r}
    parts = [c for r in options.values() for reading in r for c in reading if c not in found]
    found.update(search(list(dict.fromkeys(parts))))
    out: dict[str, list[Any]] = {}
    for query, options_of in options.items():
        reading = choose(query, options_of, lambda q: best(found.get(q, [])), margin=margin)
        if reading is not None and all(found.get(c) for c in reading):
            out[query] = [found[c][0] for c in reading]
    return out
