"""The ranking evaluation behind validation and scripts/bench_train.py: best-name aggregation, acc@k, records."""

from __future__ import annotations

import pytest

from conftest import HashEncoder
from linker.train.evaluate import RankingTask, evaluate


def test_concepts_rank_by_their_best_name_and_each_query_is_recorded() -> None:
    # an identical text is the nearest possible name, so the first concept of each query is known
    task = RankingTask("t", ["Seizure", "Fever", "Fits"], ["S", "F", "S"], ["Fits", "Fever"],
                       [frozenset({"S"}), frozenset({"S"})])
    record: list[dict] = []
    scores = evaluate(HashEncoder(), task, record=record)
    assert scores == {"acc@1": 0.5, "acc@10": 1.0, "queries": 2}
    assert record == [{"query": "Fits", "gold": ["S"], "ranked": ["S", "F"]},
                      {"query": "Fever", "gold": ["S"], "ranked": ["F", "S"]}]


def test_exact_first_puts_every_concept_with_the_query_as_a_name_first() -> None:
    task = RankingTask("t", ["fever", "Fever", "pyrexia"], ["A", "B", "C"], ["FEVER"], [frozenset({"B"})])
    ranked: list[dict] = []
    evaluate(HashEncoder(), task, ks=(1, 2), exact_first=True, record=ranked)
    assert set(ranked[0]["ranked"]) == {"A", "B"}  # both owners of the normalised text "fever" before "C"


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        RankingTask("t", ["a"], [], [], [])
