"""Length-bucketed batches in which no concept and no (normalised) text occurs twice.

In-batch negatives are only negatives when they belong to other concepts and differ in text: two
pairs of one concept, or two concepts sharing a synonym, in one batch would be false negatives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def plan_batches(items: Sequence[T], batch_size: int, *, seed: int, keys: Callable[[T], Iterable[Hashable]],
                 length: Callable[[T], int], bucket_batches: int = 32) -> list[list[int]]:
    """Indices of *items* grouped into batches, deterministic for *seed*.

    Items are shuffled, cut into buckets of ``batch_size * bucket_batches``, sorted by *length* within a
    bucket (so a batch pads little), and packed so that no two items of a batch share any of their
    *keys*; an item that fits none of the few open batches waits for the next bucket. Batch order is shuffled at the end.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for in-batch negatives, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    open_batches: list[tuple[list[int], set[Hashable]]] = []
    span = batch_size * bucket_batches
    carry: list[int] = []
    for start in range(0, len(order), span):
        bucket = carry + sorted(order[start:start + span], key=lambda i: length(items[i]))
        carry = []
        for i in bucket:
            item_keys = set(keys(items[i]))
            for members, used in open_batches:
                if not (item_keys & used):
                    members.append(i)
                    used |= item_keys
                    if len(members) == batch_size:
                        batches.append(members)
                        open_batches.remove((members, used))
                    break
            else:
                if len(open_batches) < 4:
                    open_batches.append(([i], item_keys))
                else:  # conflicts with every open batch: wait for the next bucket
                    carry.append(i)
    for i in carry:
        open_batches.append(([i], set(keys(items[i]))))
    batches.extend(members for members, _ in open_batches if len(members) >= 2)
    rng.shuffle(batches)
    return batches
