"""Hard negatives mined with the base model, at no extra cost per step.

In-batch negatives drawn at random are easy: among 32 random HPO concepts the right name wins without
effort, while linking fails on neighbours ("Abnormal left ventricle morphology" vs. "… right …"). So the
concepts are clustered on the base model's embedding of their names (spherical k-means, about one batch
per cluster) and batches are filled with neighbouring concepts (:func:`linker.train.batching.plan_grouped_batches`):
every in-batch negative is then a concept the model can confuse. Validation uses the same neighbours,
so its score moves with what the full-index task measures rather than saturating on easy distractors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import numpy as np

log = logging.getLogger(__name__)


def cluster_rank(vectors: np.ndarray, cluster_size: int, seed: int) -> list[int]:
    """Position of each row of *vectors* in an order where members of one k-means cluster are adjacent.

    ``len(vectors) // cluster_size`` spherical clusters, laid out along a nearest-neighbour chain of their
    centroids (so a batch that spans two clusters spans two similar ones); rows of a cluster are shuffled (seeded).
    """
    import faiss

    n = len(vectors)
    rng = np.random.default_rng(seed)
    k = max(1, n // max(cluster_size, 1))
    if k == 1:
        order = rng.permutation(n)
    else:
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        kmeans = faiss.Kmeans(data.shape[1], k, niter=10, seed=seed, spherical=True, verbose=False,
                              max_points_per_centroid=max(64, cluster_size * 4))
        kmeans.train(data)
        _, assign = kmeans.index.search(data, 1)
        position = np.empty(k, dtype=np.int64)
        position[_centroid_chain(kmeans.centroids)] = np.arange(k)
        order = np.lexsort((rng.random(n), position[assign[:, 0]]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank.tolist()


def _centroid_chain(centroids: np.ndarray) -> list[int]:
    """Centroids in greedy nearest-neighbour order, starting from the first."""
    similarity = centroids @ centroids.T
    visited = np.zeros(len(centroids), dtype=bool)
    chain = [0]
    visited[0] = True
    for _ in range(len(centroids) - 1):
        row = np.where(visited, -np.inf, similarity[chain[-1]])
        chain.append(int(np.argmax(row)))
        visited[chain[-1]] = True
    return chain


def nearest(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    """Rows of *vectors* nearest (inner product) to each of *queries*, best first."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(vectors)))
    return [[int(i) for i in row if i >= 0] for row in ids]


def dictionary_negatives(anchor_vectors: np.ndarray, gold: Sequence[str], forbidden: Sequence[Collection[str]],
                         name_vectors: np.ndarray, names: Sequence[str], owners: Sequence[str], k: int,
                         normalise: Callable[[str], str]) -> list[list[tuple[str, str]]]:
    """For each anchor, the *k* names nearest to it that belong to other concepts: ``(text, owner)`` pairs.

    These are the names a linker index would rank above the gold concept (the dictionary's confusers,
    as BioSyn mines them), which in-batch negatives rarely contain. At most one name per concept; a name
    whose normalised text is in the anchor's *forbidden* texts (the anchor itself, its gold concept's
    names) is skipped, as the model cannot be taught to push a text away from itself.
    """
    out: list[list[tuple[str, str]]] = []
    for row, cid, banned in zip(nearest(name_vectors, anchor_vectors, k * 4 + 8), gold, forbidden):
        chosen: list[tuple[str, str]] = []
        for i in row:
            if owners[i] != cid and normalise(names[i]) not in banned and all(owners[i] != o for _, o in chosen):
                chosen.append((names[i], owners[i]))
                if len(chosen) == k:
                    break
        out.append(chosen)
    return out
