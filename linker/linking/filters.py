"""Which concepts a linker may answer with: by type, under roots, not under excluded roots."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConceptFilter:
    """``allowed(concept_id)`` over one term dictionary, with ancestors and answers cached."""

    def __init__(self, termdb: Any, *, types: Iterable[str] = (), roots: Iterable[str] = (),
                 exclude_roots: Iterable[str] = ()) -> None:
        self.termdb = termdb
        self.types, self.roots, self.exclude_roots = frozenset(types), frozenset(roots), frozenset(exclude_roots)
        self._ancestors: dict[str, frozenset[str]] = {}
        self._allowed: dict[str, bool] = {}

    @property
    def active(self) -> bool:
        return bool(self.types or self.roots or self.exclude_roots)

    def allowed(self, concept_id: str) -> bool:
        found = self._allowed.get(concept_id)
        if found is None:
            found = self._allowed[concept_id] = self._check(concept_id)
        return found

    def _check(self, concept_id: str) -> bool:
        concept = self.termdb.concept(concept_id)
        if concept is None:
            return False
        if self.types and not self.types.intersection(concept.types):
            return False
        if not (self.roots or self.exclude_roots):
            return True
        lineage = self.lineage(concept_id) | {concept_id}
        return (not self.roots or bool(self.roots & lineage)) and not self.exclude_roots & lineage

    def lineage(self, concept_id: str) -> frozenset[str]:
        """Every ancestor of *concept_id* (cycles in the parents stop the walk)."""
        if concept_id not in self._ancestors:
            self._ancestors[concept_id] = frozenset()  # cycle guard
            concept = self.termdb.concept(concept_id)
            found: set[str] = set()
            for parent in concept.parents if concept else ():
                found.add(parent)
                found |= self.lineage(parent)
            self._ancestors[concept_id] = frozenset(found)
        return self._ancestors[concept_id]
