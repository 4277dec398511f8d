"""One non-overlapping set of mentions out of the proposals of every finder.

Order of precedence:

1. upstream spans (``doc.ents``: another NER, or the trained detector) — except that, with
   ``longer_wins``, a dictionary name that passes the threshold and strictly contains upstream spans
   replaces them ("sensorineural deafness" over a detected "deafness"): the longer, more specific
   mention wins; an upstream span that contains a dictionary name keeps it ("colorectal neoplasia"
   over the name "neoplasia"), and partial overlaps keep the upstream span. Without the dictionary among
   the sources, the only names proposed are those that join two or more upstream spans
   (:func:`linker.mentions.collect.collect`: "migraine with aura" over a detected "migraine" and "aura");
2. dictionary names, longest first;
3. dense spans, best score first;
4. short forms whose long form was linked (they take the long form's query and label), wherever they stand:
   a defined short form is a mention when its long form is one, and only then — an upstream span at a
   short-form position whose long form is not linked is left out too;
5. dictionary names at short-form positions left over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from linker.mentions.proposal import (
    ABBREVIATION,
    DENSE,
    DICTIONARY,
    UPSTREAM,
    Proposal,
    bar,
)


def _contains(outer: Proposal, inner: Proposal) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end and outer.end - outer.start > inner.end - inner.start


def arbitrate(props: Sequence[Proposal], best: Callable[[str], float], *, threshold: float,
              dense_threshold: float, longer_wins: bool = True, min_confidence: float = 0.0) -> list[Proposal]:
    """The chosen proposals in text order; *best* gives the top score of a query (a short form follows a long
    form that will be linked: *min_confidence* as in :func:`linker.mentions.proposal.bar`)."""
    short_forms = [p for p in props if p.source == ABBREVIATION]
    at_short = {(p.start, p.end) for p in short_forms}
    upstream = [p for p in props if p.source == UPSTREAM and (p.start, p.end) not in at_short]
    names = sorted((p for p in props if p.source == DICTIONARY and best(p.query) >= threshold),
                   key=lambda p: (-(p.end - p.start), p.start))
    dense = sorted((p for p in props if p.source == DENSE and best(p.query) >= dense_threshold),
                   key=lambda p: (-best(p.query), -(p.end - p.start), p.start))
    chosen: list[Proposal] = []
    taken = bytearray(max((p.end for p in props), default=0))  # characters inside a chosen span

    def take(p: Proposal, force: bool = False) -> None:
        if force or not any(taken[p.start:p.end]):
            chosen.append(p)
            taken[p.start:p.end] = b"\x01" * (p.end - p.start)

    if longer_wins and upstream:
        for name in names:
            inside = [u for u in upstream if _contains(name, u)]
            crossing = [u for u in upstream if u not in inside and u.start < name.end and name.start < u.end]
            if inside and not crossing and (name.start, name.end) not in at_short:
                upstream = [u for u in upstream if u not in inside]
                label = inside[0].label
                upstream.append(Proposal(name.start, name.end, DICTIONARY, name.query, label))
    for p in upstream:
        take(p, force=True)
    for p in names + dense:
        if (p.start, p.end) not in at_short:
            take(p)
    linked_by_end = {p.end: p for p in chosen if best(p.query) >= bar(p, threshold, min_confidence)}
    for p in short_forms:
        anchor = linked_by_end.get(p.anchor[1]) if p.anchor else None
        if anchor is not None and anchor.start < p.anchor[1]:  # type: ignore[index]
            take(Proposal(p.start, p.end, ABBREVIATION, anchor.query, anchor.label, anchor=p.anchor))
    for p in names:
        if (p.start, p.end) in at_short:
            take(p)
    chosen.sort(key=lambda p: p.start)
    return chosen


def given_way(props: Sequence[Proposal], chosen: Sequence[Proposal]) -> set[tuple[int, int]]:
    """The upstream spans of *props* that a chosen dictionary name holding them replaced (``longer_wins``): the
    entities an earlier component set there give way to it."""
    names = [p for p in chosen if p.source == DICTIONARY]
    kept = {(p.start, p.end) for p in chosen}
    return {(u.start, u.end) for u in props if u.source == UPSTREAM and (u.start, u.end) not in kept
            and any(n.start <= u.start and u.end <= n.end for n in names)}
