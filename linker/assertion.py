"""Assertion status of mentions: negated, family history, hypothetical, historical (NegEx/ConText style).

A cue opens a scope that runs forwards (``"denies fever"``, ``"no seizures"``) or backwards
(``"fever was ruled out"``) from it, within the clause: the scope ends at a sentence break, at a
termination word (``but``, ``however``, ``although``, ...) or after :data:`WINDOW` words. A mention in
a scope gets the cue's flag. Pseudo-cues (``"no increase"``, ``"not only"``, ``"gram negative"``) are
matched first and cancel a shorter cue inside them. Pure string code over character offsets; the
cue lists follow the categories of Chapman et al.'s NegEx and ConText, written for this project.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Words a cue's scope reaches at most.
WINDOW = 8

NEGATED, FAMILY, HYPOTHETICAL, HISTORICAL = "negated", "family", "hypothetical", "historical"
FLAGS = (NEGATED, FAMILY, HYPOTHETICAL, HISTORICAL)

_FORWARD: dict[str, tuple[str, ...]] = {
    NEGATED: (
        "no", "not", "without", "denies", "denied", "deny", "denying", "negative for", "free of", "absence of",
        "no evidence of", "no sign of", "no signs of", "no history of", "never had", "never developed",
        "rules out", "ruled out", "no longer", "not have", "did not have",
        "does not have", "do not have", "fails to reveal", "failed to reveal", "unremarkable for", "cannot see",
        "lack of", "lacks", "lacked", "nor", "neither", "excluded", "exclude", "w/o",
    ),
    FAMILY: (
        "family history of", "family history", "fh of", "mother", "father", "sister", "brother", "sibling",
        "siblings", "aunt", "uncle", "cousin", "grandmother", "grandfather", "mother's", "father's", "parents",
        "daughter", "son", "relatives", "maternal", "paternal",
    ),
    HYPOTHETICAL: (
        "if", "in case of", "should", "risk of", "at risk for", "return if", "come back if", "watch for",
        "monitor for", "rule out", "possible", "possibly", "suspected", "suspicion of", "may develop",
        "could develop", "likely to develop", "concern for", "to prevent", "prevention of", "screening for",
    ),
    HISTORICAL: (
        "history of", "past history of", "h/o", "previous", "previously", "prior", "past", "former",
        "status post", "s/p", "in childhood", "years ago", "recovered from",
    ),
}

_BACKWARD: dict[str, tuple[str, ...]] = {
    NEGATED: (
        "was ruled out", "were ruled out", "is ruled out", "has been ruled out", "have been ruled out",
        "was excluded", "were excluded", "is absent", "are absent", "was absent", "were absent", "was negative",
        "were negative", "is negative", "unlikely", "not seen", "not present", "not found", "not observed",
        "not detected", "free", "resolved",
    ),
    FAMILY: ("in her mother", "in his mother", "in her father", "in his father", "in the family", "in family members",
             "in relatives", "in siblings", "in a sibling"),
    HISTORICAL: ("in the past", "in childhood", "years ago", "as a child"),
    HYPOTHETICAL: ("was suspected", "is suspected", "were suspected"),
}

#: Phrases that contain a cue word but negate nothing; they win over the shorter cue inside them.
_PSEUDO = (
    "no increase", "no change", "no significant change", "not only", "not necessarily", "not certain if",
    "not rule out", "gram negative", "no further", "without difficulty", "not cause", "not drain",
    "no suspicious change", "whether or not", "not all", "not just", "not clear", "not known", "no doubt",
    "history of present illness", "family history negative", "if any", "if needed", "if necessary",
    "non-small", "non small", "no longer than", "not limited to", "sister chromatid", "son of sevenless",
)

_TERMINATE = frozenset((
    "but", "however", "although", "though", "except", "apart", "aside", "yet", "nevertheless", "which", "who",
    "whose", "because", "since", "while", "whereas", "presents", "presented", "presenting", "complains",
    "reports", "reported", "shows", "showed", "revealed", "reveals", "now", "currently", "today",
    "patient", "pt", "cause", "causes", "caused", "due", "secondary", "etiology", "source", "origin",
))

_CLAUSE_BREAK = re.compile(r"[.;:!?\n]|\s-\s|(?<=\w)\s*,\s*(?=but\b|however\b|although\b)", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:[-'/][^\W_]+)*", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Assertion:
    negated: bool = False
    family: bool = False
    hypothetical: bool = False
    historical: bool = False

    def flags(self) -> dict[str, bool]:
        return {flag: getattr(self, flag) for flag in FLAGS}


def _compile(cues: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted(set(cues), key=len, reverse=True)
    return re.compile(r"(?<![\w/])(" + "|".join(re.escape(c) for c in ordered) + r")(?![\w/])", re.IGNORECASE)


_PSEUDO_RE = _compile(_PSEUDO)
_FORWARD_RE = {flag: _compile(cues) for flag, cues in _FORWARD.items()}
_BACKWARD_RE = {flag: _compile(cues) for flag, cues in _BACKWARD.items()}


def _clauses(text: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for match in _CLAUSE_BREAK.finditer(text):
        if match.group() == "." and 0 < match.start() < len(text) - 1 and text[match.start() + 1].isalnum():
            continue  # "1.5", "e.g" -- not a break
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(text)))
    return [(s, e) for s, e in bounds if e > s]


def _scopes(text: str, start: int, end: int) -> dict[str, list[tuple[int, int]]]:
    """Character scopes of each flag within the clause ``text[start:end]``."""
    clause = text[start:end]
    scopes: dict[str, list[tuple[int, int]]] = {flag: [] for flag in FLAGS}
    forward = [(flag, m.start() + start, m.end() + start) for flag, pattern in _FORWARD_RE.items()
               for m in pattern.finditer(clause)]
    backward = [(flag, m.start() + start, m.end() + start) for flag, pattern in _BACKWARD_RE.items()
                for m in pattern.finditer(clause)]
    cues = forward + backward
    if not cues:  # most clauses: no words to split
        return scopes
    words = [(m.start() + start, m.end() + start, m.group().lower()) for m in _WORD.finditer(clause)]
    word_starts = [w[0] for w in words]
    word_ends = [w[1] for w in words]
    pseudo = [(m.start() + start, m.end() + start) for m in _PSEUDO_RE.finditer(clause)]

    def inside_pseudo(s: int, e: int) -> bool:
        return any(ps <= s and e <= pe for ps, pe in pseudo)

    def shadowed(flag: str, s: int, e: int) -> bool:
        """Inside a pseudo-cue, or inside a longer cue ("history of" in "family history of")."""
        return inside_pseudo(s, e) or any(os <= s and e <= oe and (oe - os) > (e - s) for _, os, oe in cues)

    for flag, c_start, c_end in forward:
        if shadowed(flag, c_start, c_end):
            continue
        first = bisect_left(word_starts, c_end)
        after = words[first:first + WINDOW + 1]
        scope_end, count = c_end, 0
        for w_start, w_end, word in after:
            if word in _TERMINATE or count >= WINDOW:
                break
            scope_end, count = w_end, count + 1
        if scope_end > c_end:
            scopes[flag].append((c_end, scope_end))
    for flag, c_start, c_end in backward:
        if shadowed(flag, c_start, c_end):
            continue
        last = bisect_right(word_ends, c_start)
        before = words[max(0, last - WINDOW - 1):last]
        scope_start, count = c_start, 0
        for w_start, w_end, word in reversed(before):
            if word in _TERMINATE or count >= WINDOW:
                break
            scope_start, count = w_start, count + 1
        if scope_start < c_start:
            scopes[flag].append((scope_start, c_start))
    return scopes


def assert_spans(text: str, spans: Sequence[tuple[int, int]]) -> list[Assertion]:
    """The assertion of each ``(start, end)`` span of *text*, in the order given.

    A span is flagged when it lies inside a cue's scope in its clause; a span that is itself the
    cue (``"no"``) is not. A span crossing a clause break is judged by the clause of its start.
    """
    if not spans:
        return []
    clauses = _clauses(text)
    cache: dict[tuple[int, int], dict[str, list[tuple[int, int]]]] = {}
    out: list[Assertion] = []
    starts = [cs for cs, _ in clauses]
    for s, e in spans:
        at = bisect_right(starts, s) - 1
        clause = clauses[at] if at >= 0 and clauses[at][0] <= s < clauses[at][1] else None
        if clause is None:
            out.append(Assertion())
            continue
        if clause not in cache:
            cache[clause] = _scopes(text, *clause)
        scopes = cache[clause]
        flags = {flag: any(ss <= s and min(e, clause[1]) <= se for ss, se in scopes[flag]) for flag in FLAGS}
        out.append(Assertion(**flags))
    return out
