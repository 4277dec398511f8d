"""Plain-dict (JSON) shapes of the value types, shared by the CLI and the HTTP service."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from linker.termdb import TermDB
from linker.types import Candidate, ConceptCard, Mention


def candidate_to_dict(candidate: Candidate) -> dict[str, Any]:
    return asdict(candidate)


def card_to_dict(card: ConceptCard, termdb: TermDB) -> dict[str, Any]:
    concept = card.concept
    parent_names = termdb.names(concept.parents)
    return {
        "concept_id": concept.concept_id,
        "name": concept.name,
        "definition": concept.definition,
        "synonyms": [{"text": t.text, "scope": t.scope, "kind": t.kind} for t in card.synonyms],
        "parents": [{"concept_id": p, "name": parent_names.get(p)} for p in concept.parents],
        "types": list(concept.types),
        "alt_ids": list(card.alt_ids),
    }


def mention_to_dict(mention: Mention, candidates: int | None = None) -> dict[str, Any]:
    """A linked span: offsets, the linked concept (name, score) when there is one, ranked candidates, flags."""
    ranked = mention.candidates if candidates is None else mention.candidates[:candidates]
    best = next((c for c in mention.candidates if c.concept_id == mention.concept_id), None) \
        if mention.concept_id is not None else None
    return {
        "start": mention.start,
        "end": mention.end,
        "text": mention.text,
        "label": mention.label,
        "concept_id": mention.concept_id,
        "concept_ids": list(mention.concept_ids),  # a composite's conjuncts, else the one concept (or none)
        "name": best.name if best else None,
        "score": round(best.score, 4) if best else None,
        "candidates": [{"concept_id": c.concept_id, "name": c.name, "score": round(c.score, 4)} for c in ranked],
        "negated": mention.negated,
        "historical": mention.historical,
        "hypothetical": mention.hypothetical,
        "family": mention.family,
        "source": mention.source,
    }
