"""A functional facade over a lazily opened, per-process index (the embedded HPO default unless told)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import overload

from linker.defaults import open_index
from linker.types import Candidate, ConceptCard

IndexPath = str | os.PathLike[str] | None


@overload
def lookup(texts: str, k: int = ..., index: IndexPath = ...) -> list[Candidate]: ...
@overload
def lookup(texts: Sequence[str], k: int = ..., index: IndexPath = ...) -> list[list[Candidate]]: ...


def lookup(texts: str | Sequence[str], k: int = 5, index: IndexPath = None) -> list[Candidate] | list[list[Candidate]]:
    """Ranked concepts for one text, or for each of several texts (searched as one batch)."""
    concept_index = open_index(index)
    if isinstance(texts, str):
        return concept_index.search([texts], k)[0]
    return concept_index.search(list(texts), k)


def get(concept_id: str, index: IndexPath = None) -> ConceptCard:
    """The concept card of *concept_id*; alternative and obsolete ids resolve to the current concept."""
    return open_index(index).card(concept_id)
