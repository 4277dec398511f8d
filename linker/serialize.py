"""Plain-dict (JSON) shapes of the value types, shared by the CLI and the HTTP service."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from linker.termdb import TermDB
from linker.types import Candidate, ConceptCard


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
