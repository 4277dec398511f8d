"""Concepts that share a name: a mention whose text is an exact name of several concepts, or whose nearest
name is one that several concepts hold (every one of them scoring the same), is given the one that holds the
name as its preferred name, and among equals the one whose description fits the sentence best (the sentence's
embedding against each concept's name, definition and parents' names) — never the order of the index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Sequence
from typing import Any

import numpy as np

from linker.normalize import normalize
from linker.rescoring import TIE
from linker.types import Candidate

_SENTENCE_END = re.compile(r"[.!?;]\s|\n")
MAX_SENTENCE = 400


def leaders(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The leading candidates one name gave: the exact ones (a name of several concepts), or else those that
    reach the best score through the same name as the first (a name several concepts hold: one vector each)."""
    exact = [c for c in candidates if c.exact]
    if exact or not candidates:
        return exact
    first, key = candidates[0], normalize(candidates[0].matched_text)
    return [c for c in candidates if first.score - c.score <= TIE and normalize(c.matched_text) == key]


def _holds(candidate: Candidate) -> bool:
    """Whether *candidate* holds the name it was matched by as its preferred name."""
    return normalize(candidate.matched_text) == normalize(candidate.name)


def tied(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The leaders (:func:`leaders`) that the name cannot tell apart: none holding it as its preferred name
    more than the others (empty when there is nothing to break)."""
    group = leaders(candidates)
    if len(group) < 2:
        return []
    preferred = [c for c in group if _holds(c)]
    if len(preferred) == 1:
        return []  # it leads (preferred_first)
    return preferred or group


def preferred_first(candidates: list[Candidate]) -> list[Candidate]:
    """*candidates* with the one leader that holds the shared name as its preferred name first (ConceptIndex.search
    already puts it first among exact candidates; a shared nearest name comes in the index's order)."""
    group = leaders(candidates)
    preferred = [c for c in group if _holds(c)]
    if len(group) < 2 or len(preferred) != 1 or candidates[0] is preferred[0]:
        return candidates
    return preferred + [c for c in candidates if c is not preferred[0]]


def sentence(text: str, start: int, end: int) -> str:
    """The sentence around ``text[start:end]`` (at most :data:`MAX_SENTENCE` characters each side)."""
    left = max(0, start - MAX_SENTENCE)
    before = [m.end() for m in _SENTENCE_END.finditer(text, left, start)]
    after = _SENTENCE_END.search(text, end, min(len(text), end + MAX_SENTENCE))
    return text[before[-1] if before else left:after.start() + 1 if after else min(len(text), end + MAX_SENTENCE)]


def description(name: str, definition: str | None, parents: Sequence[str]) -> str:
    """The text a concept is embedded as for context: its name, its definition, its parents' names."""
    parts = [name]
    if definition:
        parts.append(definition[:300].rstrip(". "))
    if parents:
        parts.append("a kind of " + ", ".join(parents[:3]))
    return ". ".join(parts)


def break_ties(candidates: list[Candidate], context: np.ndarray, describe: Callable[[str], np.ndarray]
               ) -> list[Candidate]:
    """*candidates* with the tied leaders (:func:`tied`) ordered by cosine of their description to *context*."""
    group = tied(candidates)
    if not group:
        return candidates
    ids = {c.concept_id for c in group}
    ordered = sorted(group, key=lambda c: -float(np.dot(context, describe(c.concept_id))))
    rest = [c for c in candidates if c.concept_id not in ids]
    return ordered + rest


def _description_of(termdb: Any, concept_id: str) -> str:
    concept = termdb.concept(concept_id)
    if concept is None:
        return concept_id
    parents = termdb.names(concept.parents)
    return description(concept.name, concept.definition, [parents.get(p, p) for p in concept.parents])


def resolve_ties(index: Any, texts: Sequence[str], chosen: list[list[tuple[Any, list[Candidate]]]], *,
                 keep: Container[str] = ()) -> list[list[tuple[Any, list[Candidate]]]]:
    """*chosen* (per text, ``(proposal, candidates)`` pairs) with the tied leaders of each mention ordered by
    its sentence; the sentences and descriptions are embedded in one batch through the index's cache.
    Mentions whose query is in *keep* (linked by the mention memory) keep their order."""
    chosen = [[(p, cands if p.query in keep else preferred_first(cands)) for p, cands in linked] for linked in chosen]
    wanted = [(d, i) for d, linked in enumerate(chosen) for i, (p, cands) in enumerate(linked)
              if p.query not in keep and tied(cands)]
    if not wanted:
        return chosen
    sentences = [sentence(texts[d], chosen[d][i][0].start, chosen[d][i][0].end) for d, i in wanted]
    concepts = sorted({c.concept_id for d, i in wanted for c in tied(chosen[d][i][1])})
    vectors = index.embed(sentences + [_description_of(index.termdb, c) for c in concepts])
    described = dict(zip(concepts, vectors[len(sentences):]))
    out = [list(linked) for linked in chosen]
    for (d, i), context in zip(wanted, vectors[:len(sentences)]):
        proposal, cands = out[d][i]
        out[d][i] = (proposal, break_ties(cands, context, described.__getitem__))
    return out
