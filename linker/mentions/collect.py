"""Every finder's proposals for one Doc, with the short forms its text defines.

A defined short form ("spinal muscular atrophy (SMA) ... SMA") is searched by its long form wherever a finder
proposed it, and each of its occurrences is proposed too, anchored to the long form: arbitration
(:mod:`linker.mentions.arbitration`) keeps them when the long form is linked and drops them when it is not, so
that the short form follows its long form whichever finder found that (the trained detector included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from spacy.tokens import Doc

from linker.abbreviations import find_abbreviations
from linker.mentions.dense import dense_spans
from linker.mentions.dictionary import DictionaryMatcher
from linker.mentions.proposal import ABBREVIATION, DENSE, DICTIONARY, UPSTREAM, Proposal, upstream_proposals


def collect(doc: Doc, text: str, sources: Sequence[str], matcher: Callable[[], DictionaryMatcher], *,
            abbreviations: bool, max_words: int, dense_limit: int, longer_wins: bool = True) -> list[Proposal]:
    """The proposals of *sources* in *doc*, whose ``doc.text`` is *text* (read once by the caller: spaCy joins
    the tokens on every read); *matcher* opens the dictionary matcher when a source needs it.

    With *longer_wins* and upstream spans but not the dictionary among the sources, the dictionary names that
    hold two or more upstream spans are proposed too (a detector that split "migraine with aura" into
    "migraine" and "aura"), for arbitration to join them; no other name is."""
    proposals: list[Proposal] = []
    if UPSTREAM in sources:
        proposals += upstream_proposals(doc)
    if DICTIONARY in sources:
        proposals += matcher().find(text)
    elif longer_wins and len(proposals) >= 2:
        proposals += [name for name in matcher().find(text)
                      if sum(name.start <= p.start and p.end <= name.end for p in proposals) >= 2]
    if DENSE in sources:
        vocabulary = matcher().vocabulary
        for start, end in dense_spans(doc, max_words=max_words, vocabulary=vocabulary, limit=dense_limit):
            proposals.append(Proposal(start, end, DENSE, text[start:end]))
    if abbreviations:
        abbrevs = find_abbreviations(text)
        if abbrevs:
            long_of = {a.short: a.long for a in abbrevs}
            proposals = [replace(p, query=long_of[text[p.start:p.end]]) if text[p.start:p.end] in long_of else p
                         for p in proposals]
            proposals += [Proposal(a.start, a.end, ABBREVIATION, a.long, anchor=(a.long_start, a.long_end))
                          for a in abbrevs]
    return proposals
