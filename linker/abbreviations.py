"""Abbreviations defined in running text, after Schwartz & Hearst (PSB 2003).

``"... spinal muscular atrophy (SMA) ..."`` defines the short form *SMA* by its long form *spinal
muscular atrophy*. :func:`find_definitions` finds such pairs in ``long form (short form)`` order (and the
rarer ``short form (long form)``); :func:`find_abbreviations` also returns every later use of each short
form, so that a linker can link all of them through the long form. Pure string code, character offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PAREN = re.compile(r"\(([^()]{1,200})\)")
_WORD = re.compile(r"\S+")
_SPLIT_INNER = re.compile(r"\s*[;,]\s*")


@dataclass(frozen=True, slots=True)
class Abbreviation:
    """One occurrence of a short form, with the long form that defines it."""

    start: int
    end: int
    short: str
    long_start: int
    long_end: int
    long: str
    #: True for the occurrence inside the defining parentheses (or the definition's first word)
    definition: bool = False


def _is_short_form(text: str) -> bool:
    """2-10 characters, at most two words, a letter among them, starting with a letter or digit."""
    if not 2 <= len(text) <= 10 or len(text.split()) > 2:
        return False
    if not text[0].isalnum() or not any(ch.isalpha() for ch in text):
        return False
    # lower-case words are not abbreviations ("(see)", "(mean)"); keep "mRNA", "G6PD", "IgA"
    return any(ch.isupper() for ch in text) or any(ch.isdigit() for ch in text)


def _best_long_form(short: str, candidate: str) -> int | None:
    """Offset in *candidate* where the long form of *short* starts, matching characters right to left
    (the Schwartz-Hearst algorithm); None when *short* cannot be spelled from *candidate*."""
    s_idx, l_idx = len(short) - 1, len(candidate) - 1
    while s_idx >= 0:
        ch = short[s_idx].lower()
        if not ch.isalnum():
            s_idx -= 1
            continue
        while l_idx >= 0 and (candidate[l_idx].lower() != ch or
                              (s_idx == 0 and l_idx > 0 and candidate[l_idx - 1].isalnum())):
            l_idx -= 1
        if l_idx < 0:
            return None
        l_idx -= 1
        s_idx -= 1
    start = candidate.rfind(" ", 0, l_idx + 1) + 1
    return start


def _long_form(text: str, end: int, short: str) -> tuple[int, int] | None:
    """Character span of the long form of *short* ending at *end* (the opening parenthesis) in *text*."""
    max_words = min(len(short) + 5, 2 * len(short))
    words = list(_WORD.finditer(text, max(0, end - 400), end))
    # the window stops at a sentence or clause break before the parenthesis
    kept: list[re.Match[str]] = []
    for word in reversed(words):
        if len(kept) >= max_words:
            break
        token = word.group()
        if kept and (token.endswith((".", ";", ":")) or token in {"(", ")"} or token.endswith(")")):
            break
        kept.append(word)
    if not kept:
        return None
    window_start = kept[-1].start()
    window_end = kept[0].end()
    while window_end > window_start and not text[window_end - 1].isalnum():
        window_end -= 1  # "atrophy, (SMA)" -> "atrophy"
    candidate = text[window_start:window_end]
    offset = _best_long_form(short, candidate)
    if offset is None:
        return None
    long_start = window_start + offset
    long_text = text[long_start:window_end]
    if len(long_text) <= len(short) or short.lower() in long_text.lower().split():
        return None
    return long_start, window_end


def find_definitions(text: str) -> list[Abbreviation]:
    """Short forms defined in *text*, one per definition, in text order."""
    found: list[Abbreviation] = []
    for match in _PAREN.finditer(text):
        inner = match.group(1)
        # "(SMA; OMIM 253300)" or "(SMA, type I)": the short form is the first part
        first = _SPLIT_INNER.split(inner.strip(), maxsplit=1)[0].strip()
        s_start = match.start(1) + inner.find(first)
        if _is_short_form(first):
            span = _long_form(text, match.start(), first)
            if span is not None:
                found.append(Abbreviation(s_start, s_start + len(first), first, span[0], span[1],
                                          text[span[0]:span[1]], True))
                continue
        # "SMA (spinal muscular atrophy)": a short form just before the parenthesis
        before = text[max(0, match.start() - 12):match.start()].rstrip()
        words = before.split()
        if not words or len(inner.split()) < 2:
            continue
        short = words[-1].strip(",;:")
        if not _is_short_form(short) or len(inner) <= len(short):
            continue
        long_text = inner.strip()
        if _best_long_form(short, long_text) != 0:
            continue
        b_start = text.rfind(short, 0, match.start())
        l_start = match.start(1) + inner.find(long_text)
        found.append(Abbreviation(b_start, b_start + len(short), short, l_start, l_start + len(long_text),
                                  long_text, True))
    return found


def find_abbreviations(text: str) -> list[Abbreviation]:
    """Every occurrence of every short form defined in *text* (the first definition of a short form wins),
    sorted by position. Occurrences must stand as whole words and match case exactly."""
    definitions: dict[str, Abbreviation] = {}
    for definition in find_definitions(text):
        definitions.setdefault(definition.short, definition)
    if not definitions:
        return []
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(s) for s in sorted(definitions, key=len, reverse=True))
                         + r")(?![\w-])")
    out: dict[int, Abbreviation] = {}
    for definition in definitions.values():
        out[definition.start] = definition
    for match in pattern.finditer(text):
        definition = definitions[match.group(1)]
        if match.start() in out or definition.long_start <= match.start() < definition.long_end:
            continue
        out[match.start()] = Abbreviation(match.start(), match.end(), definition.short, definition.long_start,
                                          definition.long_end, definition.long, False)
    return [out[key] for key in sorted(out)]
