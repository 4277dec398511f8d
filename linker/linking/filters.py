"""Which concepts a linker may answer with: by type, under roots, not under excluded roots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from linker.types import Candidate


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

    def search(self, index: Any, queries: Sequence[str], k: int, *, skip_exact: bool) -> list[list[Candidate]]:
        """*k* allowed candidates of each query from *index*, in one batch: four times *k* asked for when a
        filter is set; a query whose one exact concept is filtered out (``skip_exact``) is ranked after all."""
        if not queries:
            return []
        wanted = k * 4 if self.active else k
        results = index.search(list(queries), wanted, skip_unique_exact=skip_exact)
        if self.active:
            results = [[c for c in row if self.allowed(c.concept_id)][:k] for row in results]
            redo = [i for i, row in enumerate(results) if not row] if skip_exact else []
            for i, row in zip(redo, index.search([queries[i] for i in redo], wanted) if redo else []):
                results[i] = [c for c in row if self.allowed(c.concept_id)][:k]
        return results

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
