"""The LRU cache of query embeddings."""

from __future__ import annotations

import numpy as np

from linker.embedding_cache import EmbeddingCache


class Counting:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen.append(list(texts))
        return np.array([[float(len(t)), 1.0] for t in texts], dtype=np.float32)


def test_cached_texts_are_not_encoded_again_and_rows_keep_their_order() -> None:
    cache, encode = EmbeddingCache(10), Counting()
    first = cache.embed(["fever", "ataxia"], encode)
    second = cache.embed(["ataxia", "seizure", "fever", "ataxia"], encode)
    assert encode.seen == [["fever", "ataxia"], ["seizure"]]
    assert np.array_equal(second[0], first[1]) and np.array_equal(second[2], first[0])
    assert second.shape == (4, 2) and (cache.hits, cache.misses) == (3, 3)


def test_least_recently_used_go_first() -> None:
    cache, encode = EmbeddingCache(2), Counting()
    cache.embed(["a", "b"], encode)
    cache.embed(["a"], encode)  # b is now the least recent
    cache.embed(["c"], encode)
    assert len(cache) == 2
    cache.embed(["a", "b"], encode)
    assert encode.seen[-1] == ["b"]


def test_zero_entries_cache_nothing() -> None:
    cache, encode = EmbeddingCache(0), Counting()
    cache.embed(["a"], encode)
    cache.embed(["a"], encode)
    assert encode.seen == [["a"], ["a"]] and len(cache) == 0


def test_index_search_uses_the_cache(mini_index) -> None:
    mini_index.embedding_cache.clear()
    before = mini_index.embedding_cache.misses
    mini_index.search(["large kidneys"], k=2)
    mini_index.search(["large kidneys"], k=2)
    assert mini_index.embedding_cache.misses == before + 1
