"""Concepts sharing a name: the preferred-name holder first, then the sentence decides."""

from __future__ import annotations

import numpy as np

from linker.linking.context import break_ties, description, preferred_first, sentence, tied
from linker.types import Candidate


def _c(cid: str, name: str, matched: str, exact: bool = True, score: float = 1.0) -> Candidate:
    return Candidate(cid, name, matched, score, exact)


def test_one_preferred_holder_is_no_tie() -> None:
    cands = [_c("A", "Lipoma", "lipoma"), _c("B", "Lipomatosis", "Lipoma"), _c("C", "Fat", "fat", False, 0.7)]
    assert tied(cands) == []


def test_exact_synonyms_of_several_concepts_are_tied() -> None:
    cands = [_c("A", "Bipolar Disorder", "Bipolar affective disorder"),
             _c("B", "Bipolar I Disorder", "Bipolar affective disorder"), _c("C", "Mania", "mania", False, 0.6)]
    assert [c.concept_id for c in tied(cands)] == ["A", "B"]


def test_sentence_around_a_mention() -> None:
    text = "First sentence. The patient had a lipoma of the back. Last one."
    start = text.index("lipoma")
    assert sentence(text, start, start + 6) == "The patient had a lipoma of the back."


def test_break_ties_orders_by_context_and_keeps_the_rest() -> None:
    cands = [_c("A", "Bipolar Disorder", "Bipolar affective disorder"),
             _c("B", "Bipolar I Disorder", "Bipolar affective disorder"), _c("C", "Mania", "mania", False, 0.6)]
    vectors = {"A": np.array([1.0, 0.0]), "B": np.array([0.0, 1.0])}
    ordered = break_ties(cands, np.array([0.1, 0.9]), vectors.__getitem__)
    assert [c.concept_id for c in ordered] == ["B", "A", "C"]
    assert break_ties(cands[2:], np.array([1.0, 0.0]), vectors.__getitem__) == cands[2:]


def test_description_joins_name_definition_and_parents() -> None:
    assert description("Lipoma", "A benign tumour of fat.", ["Neoplasm"]) == \
        "Lipoma. A benign tumour of fat. a kind of Neoplasm"


def test_a_nearest_name_that_several_concepts_hold_is_a_tie() -> None:
    """"migraineurs" is nearest to "migraine", a synonym of two concepts (one vector each, the same score)."""
    cands = [_c("OMIM:157300", "Migraine, susceptibility to, 1", "migraine", False, 0.9456),
             _c("D008881", "Migraine Disorders", "Migraine", False, 0.9456 - 1e-8),
             _c("D020326", "Migraine without Aura", "migraine without aura", False, 0.83)]
    assert [c.concept_id for c in tied(cands)] == ["OMIM:157300", "D008881"]
    vectors = {"OMIM:157300": np.array([1.0, 0.0]), "D008881": np.array([0.0, 1.0])}
    assert [c.concept_id for c in break_ties(cands, np.array([0.2, 0.8]), vectors.__getitem__)] == \
        ["D008881", "OMIM:157300", "D020326"]
    apart = [cands[0], _c("D008881", "Migraine Disorders", "Migraine", False, 0.94), cands[2]]
    assert tied(apart) == []  # a lower score is no tie
    other_name = [cands[0], _c("D008881", "Migraine Disorders", "migraine disorder", False, 0.9456), cands[2]]
    assert tied(other_name) == []  # the same score through another name is no tie either


def test_the_one_holder_of_a_shared_nearest_name_as_preferred_name_goes_first() -> None:
    cands = [_c("X", "Fat tumour of the skin", "lipoma", False, 0.91), _c("A", "Lipoma", "lipoma", False, 0.91),
             _c("C", "Fat", "fat", False, 0.7)]
    assert tied(cands) == []
    assert [c.concept_id for c in preferred_first(cands)] == ["A", "X", "C"]
    assert preferred_first(cands[1:]) == cands[1:]
