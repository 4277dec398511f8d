"""The ranking evaluation behind validation and scripts/bench_train.py: best-name aggregation, acc@k, records."""

from __future__ import annotations

import pytest

from conftest import HashEncoder
from linker.train.evaluate import RankingTask, evaluate, paired_gain, right_at_1


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


def test_right_at_1_reads_the_first_ranked_concept() -> None:
    record = [{"gold": ["S"], "ranked": ["S", "F"]}, {"gold": ["S"], "ranked": ["F", "S"]},
              {"gold": ["A"], "ranked": []}]
    assert right_at_1(record) == [True, False, False]


def test_paired_gain_counts_only_disagreements() -> None:
    reference = [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    candidate = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]  # 4 wins, 0 losses: z = 4 / sqrt(4) = 2
    assert paired_gain(candidate, reference) == (4.0, 2.0)
    gain, z = paired_gain([0, 1, 1, 1], [1, 0, 0, 0])  # 3 wins, 1 loss: z = 2 / sqrt(4) = 1
    assert (gain, z) == (2.0, 1.0)
    assert paired_gain([0.5, 0.0], [0.5, 0.0]) == (0.0, 0.0)
    gain, z = paired_gain([0.25, 0.0, 0.5], [0.0, 0.25, 0.0])  # weighted queries: 0.75 / sqrt(0.375)
    assert gain == pytest.approx(0.5) and z == pytest.approx(0.5 / 0.375 ** 0.5)
    with pytest.raises(ValueError, match="same queries"):
        paired_gain([1], [1, 0])
