"""Training batches in which no concept and no (normalised) text occurs twice: length-bucketed random
batches (:func:`plan_batches`) or batches of neighbouring concepts (:func:`plan_grouped_batches`).

In-batch negatives are only negatives when they belong to other concepts and differ in text: two
pairs of one concept, or two concepts sharing a synonym, in one batch would be false negatives.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from linker.errors import LinkerError

T = TypeVar("T")


def plan_batches(items: Sequence[T], batch_size: int, *, seed: int, keys: Callable[[T], Iterable[Hashable]],
                 length: Callable[[T], int], bucket_batches: int = 32) -> list[list[int]]:
    """Indices of *items* grouped into batches, deterministic for *seed*.

    Items are shuffled, cut into buckets of ``batch_size * bucket_batches``, sorted by *length* within a
    bucket (so a batch pads little), and packed so that no two items of a batch share any of their
    *keys*; an item that fits none of the few open batches waits for the next bucket. Batch order is shuffled at the end.
    """
    if batch_size < 2:
        raise LinkerError(f"batch size must be at least 2 for in-batch negatives, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    span = batch_size * bucket_batches
    sequence = [i for start in range(0, len(order), span)
                for i in sorted(order[start:start + span], key=lambda i: length(items[i]))]
    batches = _pack(items, sequence, batch_size, keys, hold=span)
    rng.shuffle(batches)
    return batches


def plan_grouped_batches(items: Sequence[T], batch_size: int, *, seed: int, keys: Callable[[T], Iterable[Hashable]],
                         group: Callable[[T], Hashable], rank: Callable[[T], int]) -> list[list[int]]:
    """Batches of items that sit near each other in *rank* order (hard in-batch negatives), deterministic for *seed*.

    Items are split by *group* (e.g. the pair kind, so lengths within a batch are alike) and, within a
    group, into rounds: round r holds the r-th item (in seeded random order) of each concept, where an
    item's concept is its first key. A round is laid out by *rank* (concepts adjacent in rank are
    neighbours, see :func:`linker.train.mining.cluster_rank`) and cut into batches; an item that
    conflicts (shares a key) with every open batch is held back for up to four batches' worth of items
    (see :func:`_pack`). Batch order is shuffled.
    """
    if batch_size < 2:
        raise LinkerError(f"batch size must be at least 2 for in-batch negatives, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    seen: dict[tuple[Hashable, Hashable], int] = {}
    placed: list[tuple[str, int, int, int]] = []
    for i in order:
        item = items[i]
        kind = group(item)
        owner = next(iter(keys(item)))
        r = seen.get((kind, owner), 0)
        seen[(kind, owner)] = r + 1
        placed.append((repr(kind), r, rank(item), i))
    placed.sort()
    batches = _pack(items, [i for *_, i in placed], batch_size, keys, hold=batch_size * 4)
    rng.shuffle(batches)
    return batches


def _pack(items: Sequence[T], sequence: Sequence[int], batch_size: int, keys: Callable[[T], Iterable[Hashable]],
          hold: int) -> list[list[int]]:
    """Cut *sequence* into batches in which no two items share a key.

    At most four batches are open at once; an item that conflicts with all of them is held back and
    retried whenever a batch opens, for up to *hold* positions, after which it opens a batch of its own.
    """
    batches: list[list[int]] = []
    open_batches: list[tuple[list[int], set[Hashable]]] = []
    waiting: list[tuple[int, int, set[Hashable]]] = []  # (position held since, item, its keys)

    def fit(i: int, item_keys: set[Hashable]) -> bool:
        for entry in open_batches:
            members, used = entry
            if not (item_keys & used):
                members.append(i)
                used |= item_keys
                if len(members) == batch_size:
                    batches.append(members)
                    open_batches.remove(entry)
                return True
        return False

    for position, i in enumerate(sequence):
        item_keys = set(keys(items[i]))
        opened = False
        if not fit(i, item_keys):
            if len(open_batches) < 4:
                open_batches.append(([i], item_keys))
                opened = True
            else:
                waiting.append((position, i, item_keys))
        while waiting and position - waiting[0][0] >= hold:  # held long enough: open a batch for it
            _, j, j_keys = waiting.pop(0)
            if not fit(j, j_keys):
                open_batches.append(([j], j_keys))
            opened = True
        if opened and waiting:
            waiting = [w for w in waiting if not fit(w[1], w[2])]
    for _, j, j_keys in waiting:
        if not fit(j, j_keys):
            open_batches.append(([j], j_keys))
    batches.extend(members for members, _ in open_batches if len(members) >= 2)
    return batches
