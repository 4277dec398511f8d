"""Linked mentions written onto the Doc as entities, with their plain-data record (``span._.linker_data``)."""

from __future__ import annotations

from typing import Any

from spacy.tokens import Doc, Span

from linker.assertion import assert_spans
from linker.extensions import DATA_ATTR
from linker.mentions.proposal import Proposal, bar
from linker.types import Candidate


def is_linked(prop: Proposal, candidates: list[Candidate], conjuncts: dict[str, list[Candidate]],
              threshold: float, min_confidence: float = 0.0) -> bool:
    """Whether :func:`write_entities` links *prop*: its best candidate, or every conjunct of a composite
    mention, at or above *threshold* (1.0 for a detected span its detector is less sure of than
    *min_confidence*: :func:`linker.mentions.proposal.bar`)."""
    return _decision(prop, candidates, conjuncts, bar(prop, threshold, min_confidence))[0]


def _decision(prop: Proposal, candidates: list[Candidate], conjuncts: dict[str, list[Candidate]],
              needed: float) -> tuple[bool, list[Candidate] | None]:
    """(linked, the conjuncts' links when *prop* is a composite mention linked through them) at score *needed*."""
    parts = conjuncts.get(prop.query)
    if parts is not None and min(c.score for c in parts) >= needed:
        return True, parts
    return bool(candidates) and candidates[0].score >= needed, None


def write_entities(doc: Doc, text: str, linked: list[tuple[Proposal, list[Candidate]]],
                   conjuncts: dict[str, list[Candidate]], *, threshold: float, keep_unlinked: bool, overwrite: bool,
                   label: str, assertion: bool, replaced: set[tuple[int, int]] | None = None,
                   min_confidence: float = 0.0) -> None:
    """Set the entities of *doc* (whose ``doc.text`` is *text*): linked spans, plus the earlier entities that do
    not clash with them (on a clash the earlier entity stays unless ``overwrite``) and whose span is not one of
    *replaced* (given way to a linked mention: :mod:`linker.linking.discourse`)."""
    if not linked:
        return
    flags = assert_spans(text, [(p.start, p.end) for p, _ in linked]) if assertion else None
    old = {(e.start_char, e.end_char): e for e in doc.ents}
    handled: set[tuple[int, int]] = set(replaced or ())
    new: list[Span] = []
    occupied = bytearray(len(doc))  # tokens inside a new entity
    for i, (prop, candidates) in enumerate(linked):
        handled.add((prop.start, prop.end))
        ok, parts = _decision(prop, candidates, conjuncts, bar(prop, threshold, min_confidence))
        if parts is not None:
            candidates = [parts[0]] + [c for c in candidates if c.concept_id != parts[0].concept_id]
        if not ok and not keep_unlinked:
            continue
        span = doc.char_span(prop.start, prop.end, alignment_mode="expand")
        if span is None or not len(span) or any(occupied[span.start:span.end]):
            continue
        existing = old.get((prop.start, prop.end))
        kb_id = candidates[0].concept_id if ok else ""
        if existing is not None and existing.kb_id_ and not overwrite:
            kb_id = existing.kb_id_
        ent_label = existing.label_ if existing is not None else (prop.label or label)
        ent = Span(doc, span.start, span.end, label=ent_label, kb_id=kb_id)
        data: dict[str, Any] = {"c": [[c.concept_id, c.name, c.matched_text, round(float(c.score), 6), c.exact]
                                      for c in candidates], "s": prop.source, "q": prop.query}
        if parts is not None:
            data["j"] = list(dict.fromkeys(c.concept_id for c in parts))
        if flags is not None:
            data.update(flags[i].flags())
        ent._.set(DATA_ATTR, data)
        new.append(ent)
        occupied[span.start:span.end] = b"\x01" * len(span)
    earlier = [e for key, e in old.items() if key not in handled]
    if earlier and not overwrite:
        before = bytearray(len(doc))
        for e in earlier:
            before[e.start:e.end] = b"\x01" * len(e)
        new = [n for n in new if not any(before[n.start:n.end])]
    else:
        earlier = [e for e in earlier if not any(occupied[e.start:e.end])]
    doc.ents = sorted(new + earlier, key=lambda e: e.start)
