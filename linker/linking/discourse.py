"""One sense per discourse: a text linked with confidence in a document is linked alike where it occurs again.

A detector finds "myopathy" in one sentence and misses it, or takes a longer span it cannot link ("statin
myopathy" below the threshold), in the next; the dictionary finds only names the ontology writes. Every other
occurrence of a confidently linked text (whole words, at least ``min_chars`` characters; case-insensitive
unless the text is written in capitals) becomes a mention with the same candidates, unless it lies inside or
across a mention that is linked itself. A mention below the threshold that such an occurrence overlaps gives
way to it (its span is returned, so that its entity is not kept).
"""

from __future__ import annotations

import re

from linker.linking.entities import is_linked
from linker.mentions.proposal import ABBREVIATION, Proposal
from linker.types import Candidate

Linked = list[tuple[Proposal, list[Candidate]]]


def propagate(text: str, linked: Linked, conjuncts: dict[str, list[Candidate]], *, threshold: float,
              min_chars: int = 4, min_confidence: float = 0.0) -> tuple[Linked, set[tuple[int, int]]]:
    """*linked* with every further occurrence of a confidently linked text added, and the spans of the
    unconfident mentions those occurrences replaced. A mention is confident when :func:`write_entities`
    will link it (*conjuncts*: the links of composite mentions; *min_confidence*: its detector's)."""
    def confident(prop: Proposal, candidates: list[Candidate]) -> bool:
        return is_linked(prop, candidates, conjuncts, threshold, min_confidence)

    sure = [(p, c) for p, c in linked if confident(p, c)]
    if not sure:
        return linked, set()
    taken = sorted((p.start, p.end) for p, _ in sure)
    seen: dict[str, tuple[Proposal, list[Candidate]]] = {}
    for prop, candidates in sure:
        surface = text[prop.start:prop.end]
        if prop.source != ABBREVIATION and len(surface) >= min_chars and any(ch.isalpha() for ch in surface):
            seen.setdefault(surface if surface.isupper() else surface.lower(), (prop, candidates))
    added: Linked = []
    replaced: set[tuple[int, int]] = set()
    for surface, (prop, candidates) in seen.items():
        flags = 0 if surface.isupper() else re.IGNORECASE
        for match in re.finditer(r"(?<![\w-])" + re.escape(surface) + r"(?![\w-])", text, flags):
            start, end = match.span()
            if any(a < end and start < b for a, b in taken):
                continue
            for other, other_candidates in linked:
                if other.start < end and start < other.end and not confident(other, other_candidates):
                    replaced.add((other.start, other.end))
            added.append((Proposal(start, end, prop.source, prop.query, prop.label), candidates))
            taken.append((start, end))
    if not added:
        return linked, set()
    kept = [(p, c) for p, c in linked if (p.start, p.end) not in replaced]
    return sorted(kept + added, key=lambda pc: (pc[0].start, pc[0].end)), replaced
