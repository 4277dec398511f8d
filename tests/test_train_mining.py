"""Hard in-batch negatives: neighbour batches, k-means order and the validation pool (no model needed)."""

from __future__ import annotations

import numpy as np

from linker.train.batching import plan_grouped_batches
from linker.train.mining import cluster_rank, dictionary_negatives, nearest


def _blobs(per: int = 40, centres: int = 5, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    middle = rng.normal(size=(centres, dim)) * 10
    rows = np.concatenate([middle[c] + rng.normal(size=(per, dim)) for c in range(centres)])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32), [c for c in range(centres) for _ in range(per)]


def test_cluster_rank_puts_members_of_a_cluster_next_to_each_other() -> None:
    vectors, truth = _blobs()
    rank = cluster_rank(vectors, cluster_size=40, seed=3)
    assert sorted(rank) == list(range(len(vectors)))
    by_rank = [truth[i] for i in np.argsort(rank)]
    changes = sum(a != b for a, b in zip(by_rank, by_rank[1:]))
    assert changes == 4  # five blobs laid out as five runs; a random order changes about 160 times
    assert rank == cluster_rank(vectors, cluster_size=40, seed=3)


def test_grouped_batches_hold_neighbours_of_one_group_and_never_repeat_a_key() -> None:
    vectors, truth = _blobs(per=24, centres=4)
    rank = cluster_rank(vectors, cluster_size=8, seed=0)
    # items: (concept, text, kind); concept c has two "syn" items and one "def" item; concepts 0 and 1 share a text
    items = [(c, f"syn{c}-{j}", "syn") for c in range(len(vectors)) for j in range(2)]
    items += [(c, f"def{c}", "def") for c in range(len(vectors))]
    items.append((1, "syn0-0", "syn"))

    def keys(it):
        return (it[0], it[1])

    plan = plan_grouped_batches(items, 8, seed=5, keys=keys, group=lambda it: it[2], rank=lambda it: rank[it[0]])
    assert plan == plan_grouped_batches(items, 8, seed=5, keys=keys, group=lambda it: it[2],
                                        rank=lambda it: rank[it[0]])
    used = [i for batch in plan for i in batch]
    assert len(used) == len(set(used)) and len(used) >= len(items) - 2
    pure = 0
    for batch in plan:
        assert 2 <= len(batch) <= 8
        assert len({items[i][0] for i in batch}) == len(batch)  # no concept twice
        assert len({items[i][1] for i in batch}) == len(batch)  # no text twice
        assert len({items[i][2] for i in batch}) == 1  # one kind per batch
        pure += len({truth[items[i][0]] for i in batch}) == 1
    assert pure >= 0.8 * len(plan)  # batches of neighbours: random batches of 8 from 4 blobs are almost never pure


def test_nearest_rows_are_the_query_and_its_own_blob() -> None:
    vectors, truth = _blobs(per=10, centres=3)
    assert nearest(vectors, vectors[:2], 1) == [[0], [1]]
    row = nearest(vectors, vectors[[0]], 10)[0]
    assert row[0] == 0 and len(row) == 10
    assert {truth[i] for i in row} == {truth[0]}


def test_dictionary_negatives_are_the_nearest_names_of_other_concepts() -> None:
    names = ["kidney disease", "Kidney Disease", "nephrotic syndrome", "renal failure", "nephrotoxicity",
             "Kidney Diseases", "nephropathy", "migraine"]
    owners = ["KD", "KD", "NS", "RF", "TOX", "OTHER", "NS", "MIG"]
    angle = np.array([0.0, 0.01, 0.1, 0.2, 0.05, 0.03, 0.12, 1.5])  # names as points on a circle
    vectors = np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)
    query = np.array([[np.cos(0.04), np.sin(0.04)]], dtype=np.float32)
    forbidden = [{"nephrotoxicity", "kidney disease", "kidney diseases"}]  # the mention and its gold's names
    mined = dictionary_negatives(query, ["KD"], forbidden, vectors, names, owners, 2, str.lower)
    # skipped: the gold concept's own names, the text equal to the mention, another concept's name equal to
    # a gold name ("Kidney Diseases"), and a second name of a concept already chosen ("nephropathy")
    assert mined == [[("nephrotic syndrome", "NS"), ("renal failure", "RF")]]
    everything = dictionary_negatives(query, ["KD"], forbidden, vectors, names, owners, 9, str.lower)[0]
    assert everything == [("nephrotic syndrome", "NS"), ("renal failure", "RF"), ("migraine", "MIG")]
