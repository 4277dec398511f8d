"""A bounded LRU cache of query embeddings, shared by every search of one index in a process (batches,
documents, HTTP requests, the settings a dev sweep tries)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

#: default bound: 20,000 vectors of 384 float32 dimensions hold about 31 MB
DEFAULT_ENTRIES = 20_000


class EmbeddingCache:
    """``embed(texts)`` through a cache of at most *max_entries* vectors (least recently used go first)."""

    def __init__(self, max_entries: int = DEFAULT_ENTRIES) -> None:
        self.max_entries = max_entries
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors of *texts* (rows in order); only the texts not cached are passed to *encode*."""
        texts = list(texts)
        with self._lock:
            cached = {t: self._vectors[t] for t in dict.fromkeys(texts) if t in self._vectors}
            for text in cached:
                self._vectors.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in cached]
        if missing:
            fresh = np.asarray(encode(missing), dtype=np.float32)
            new = dict(zip(missing, fresh))
            cached.update(new)
            with self._lock:
                if self.max_entries > 0:
                    self._vectors.update(new)
                    while len(self._vectors) > self.max_entries:
                        self._vectors.popitem(last=False)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cached[t] for t in texts])

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()
