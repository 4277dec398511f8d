"""What every encoder backend shares: the :class:`Encoder` protocol and length-sorted, de-duplicated batching."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class Encoder(Protocol):
    """Anything that turns strings into L2-normalised float32 rows."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class BatchedEncoder:
    """Strings are de-duplicated, sorted by length into batches and returned in input order.

    Subclasses set ``dimension`` and ``batch_size`` and embed one batch in :meth:`_embed_batch`.
    """

    dimension: int
    batch_size: int

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Rows of unit length, one per text, in the order given."""
        unique = list(dict.fromkeys(texts))
        out = np.zeros((len(unique), self.dimension), dtype=np.float32)
        if not unique:
            return out[:0]
        size = batch_size or self.batch_size
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]), reverse=True)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(unique), unit="names", desc="embedding", leave=False)
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            out[idx] = self._embed_batch([_encodable(unique[i]) for i in idx])
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        if len(unique) == len(texts):  # no duplicates: unique is texts in order
            return out
        position = {text: i for i, text in enumerate(unique)}
        return out[[position[text] for text in texts]]


def _encodable(text: str) -> str:
    """*text*, with lone surrogates (which no tokenizer takes) replaced by ``?``; one bad character in one
    text then does not fail the batch it is in."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
