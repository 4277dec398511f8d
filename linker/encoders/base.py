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

    Subclasses set ``dimension`` and ``batch_size`` and embed one batch in :meth:`_embed_batch`. A backend that
    tokenises on its own (:meth:`_prepare`) hands back items whose ``len`` is their token count, and batches
    are then formed by tokens, not characters: over 4,000 MEDIC names in batches of 64, sorting by characters
    padded 38,065 tokens to 55,648, sorting by tokens to 39,744 (a padded token costs what a real one does).
    """

    dimension: int
    batch_size: int
    #: Texts are tokenised (:meth:`_prepare`) and sorted by tokens this many batches at a time, after a first
    #: sort by characters: a window's tokenisations are all that is held besides the output.
    window_batches = 64

    def _prepare(self, texts: list[str]) -> Sequence[Any]:
        """What :meth:`_embed_batch` takes for each text, ``len`` of each its cost: the texts themselves here
        (characters); a backend that tokenises overrides it (tokens)."""
        return texts

    def _embed_batch(self, batch: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def _identity(self, item: Any) -> Any:
        """What decides an item's vector: texts that the backend reads as the same input (an uncased model's
        tokens of "Breast cancer" and "breast cancer") are embedded once. The item itself here."""
        return item

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
        window = size * self.window_batches
        for first in range(0, len(order), window):
            rows = order[first:first + window]
            items = self._prepare([_encodable(unique[i]) for i in rows])
            first_of: dict[Any, int] = {}  # each distinct input's first item in this window
            same = [first_of.setdefault(self._identity(item), j) for j, item in enumerate(items)]
            distinct = list(first_of.values())
            by_cost = sorted(distinct, key=lambda j: len(items[j]), reverse=True)  # stable
            for start in range(0, len(by_cost), size):
                part = by_cost[start:start + size]
                out[[rows[j] for j in part]] = self._embed_batch([items[j] for j in part])
                if bar is not None:
                    bar.update(len(part))
            if len(distinct) < len(rows):
                out[rows] = out[[rows[j] for j in same]]
                if bar is not None:
                    bar.update(len(rows) - len(distinct))
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
