"""What phase 1 of the recipe trains on: the mention pairs' repeats, the batch plan (neighbouring concepts
for hard in-batch negatives) and the dictionary negatives mined for each query."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linker.errors import LinkerError
from linker.meta import write_json_atomic
from linker.normalize import normalize
from linker.train.batching import plan_batches, plan_grouped_batches
from linker.train.config import TrainConfig
from linker.train.mining import cluster_rank, dictionary_negatives
from linker.train.model import LiveEncoder
from linker.train.pairs import Pair, PairSet
from linker.train.validation import BaseNames

log = logging.getLogger(__name__)


def mention_repeat(config: TrainConfig, pairs: Sequence[Pair]) -> int:
    """Times each mention pair is planned per epoch: *mention_repeat* when given, otherwise the number of copies
    that makes mention pairs about *mention_share* of the plan (at least 1)."""
    if config.mention_repeat is not None:
        return max(1, config.mention_repeat)
    share = config.mention_share
    if not 0 <= share < 1:
        raise LinkerError(f"mention share {share} is out of range; give a fraction from 0 (no extra copies) to below 1")
    mentions = sum(p.kind == "mention" for p in pairs)
    if not mentions or not share:
        return 1
    repeat = max(1, round(share * (len(pairs) - mentions) / ((1 - share) * mentions)))
    log.info("each of %d mention pairs is planned %d times per epoch (mention share %.2f)", mentions, repeat, share)
    return repeat


def contrastive_plan(pairs: list[Pair], config: TrainConfig, base_names: BaseNames, path: Path) -> list[list[int]]:
    """Phase-1 batches over *pairs* for ``config.epochs`` epochs, kept in *path* so a resumed run replays them.

    With ``hard_negatives``, batches hold neighbouring concepts (k-means over the base model's embedding
    of each concept's name); otherwise random, length-bucketed batches. A batch holds the pairs of one
    ontology: with ``--extra-ontology`` the neighbours of HPO "Seizure" would otherwise include MEDIC
    "Seizures", a false negative.
    """
    if path.exists():
        return json.loads(path.read_text())

    def keys(p: Pair) -> tuple[str, ...]:
        return (p.concept_id, normalize(p.anchor), normalize(p.positive))

    # each ontology is planned alone: equivalent concepts of two ontologies would be false negatives
    groups = [(rows, [pairs[r] for r in rows])
              for rows in by_source([p.concept_id for p in pairs], base_names.concepts).values()]
    ranks = [neighbour_rank(members, config, base_names) if config.hard_negatives else {}
             for _, members in groups]
    batches: list[list[int]] = []
    for epoch in range(config.epochs):
        seed = config.seed * 1000 + epoch
        planned: list[list[int]] = []
        for (rows, members), rank in zip(groups, ranks):
            if config.hard_negatives:
                part = plan_grouped_batches(members, config.batch_size, seed=seed, keys=keys,
                                            group=lambda p: p.kind, rank=lambda p, r=rank: r[p.concept_id])
            else:
                part = plan_batches(members, config.batch_size, seed=seed, keys=keys,
                                    length=lambda p: len(p.anchor) + len(p.positive))
            planned += [[rows[i] for i in batch] for batch in part]
        if len(groups) > 1:
            random.Random(seed).shuffle(planned)
        batches += planned
    write_json_atomic(path, batches, indent=None, sort_keys=False)
    return batches


def by_source(concept_ids: Sequence[str], concepts: dict[str, Any]) -> dict[str, list[int]]:
    """Positions of *concept_ids* grouped by the ontology their concept comes from."""
    groups: dict[str, list[int]] = {}
    for i, cid in enumerate(concept_ids):
        groups.setdefault(concepts[cid].source, []).append(i)
    return groups


def neighbour_rank(pairs: Sequence[Pair], config: TrainConfig, base_names: BaseNames) -> dict[str, int]:
    """Concept id -> position in an order where neighbours (k-means on base-model name embeddings) are adjacent."""
    _, ids, vectors = base_names(False)
    trained = {p.concept_id for p in pairs}
    rows = [row for row, cid in enumerate(ids) if cid in trained]
    log.info("clustering %d concepts on base-model embeddings for hard in-batch negatives", len(rows))
    return dict(zip((ids[r] for r in rows), cluster_rank(vectors[rows], config.batch_size, config.seed)))


#: pair kinds whose one side plays the query of a linker (the text to link): that side, and the setting that
#: gives how many dictionary negatives are mined for it
QUERY_KINDS = {"mention": ("anchor", "mention_negatives"), "synonym": ("positive", "synonym_negatives")}


def query_side(pair: Pair) -> str | None:
    """The side of *pair* that holds its query (the mention of a (mention, name) pair, the synonym of a (name,
    synonym) pair); None for the other kinds."""
    return QUERY_KINDS[pair.kind][0] if pair.kind in QUERY_KINDS else None


def negatives_per_pair(config: TrainConfig, kind: str) -> int:
    return int(getattr(config, QUERY_KINDS[kind][1])) if kind in QUERY_KINDS else 0


def mined_negatives(pairset: PairSet, config: TrainConfig, encoder: LiveEncoder, base_names: BaseNames,
                     path: Path, fresh: bool = False) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """``(query, concept) -> [(name, owner concept), …]``: for each mention pair (*mention_negatives*) and
    synonym pair (*synonym_negatives*), names of other training concepts (every name of *scopes*, as a
    linker index holds them) that *encoder* puts nearest to the pair's query (:func:`query_side`): the base
    model's embedding of the names, or with *fresh* the names embedded again by *encoder* (the model being
    trained, see ``remine_every``). Kept in *path*, so a resumed run trains on the same negatives.

    In-batch negatives of a mention pair are other mentions' concepts, rarely the names that actually
    outrank the gold concept in a full index ("nephrotoxicity" → "Nephrotic Syndrome" rather than
    "Kidney Diseases"); these are. Batches of neighbouring concepts do not hold them for a synonym either:
    the neighbours are those of the concept's *name* ("MPO-ANCA" → Anti-myeloperoxidase antibody
    positivity is outranked by Fundus albipunctatus, a neighbour of neither).
    """
    if path.exists():
        return {(q, c): [(t, o) for t, o in negs] for q, c, negs in json.loads(path.read_text())}
    wanted = [p for p in pairset.pairs if negatives_per_pair(config, p.kind) > 0]
    if not wanted:
        return {}
    texts, owners, base_vectors = base_names(True)
    concepts = pairset.concepts
    queries = [getattr(p, QUERY_KINDS[p.kind][0]) for p in wanted]
    mined: list[list[tuple[str, str]]] = [[] for _ in wanted]
    groups: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(wanted):
        groups.setdefault((concepts[p.concept_id].source, negatives_per_pair(config, p.kind)), []).append(i)
    names: dict[str, tuple[list[int], np.ndarray]] = {}  # per source: the rows that may serve, their vectors
    for (source, k), positions in groups.items():
        if source not in names:
            rows = [i for i, (text, cid) in enumerate(zip(texts, owners)) if concepts[cid].source == source
                    and pairset.split[cid] == "train" and normalize(text) not in pairset.banned]
            names[source] = rows, encoder.encode([texts[i] for i in rows]) if fresh else base_vectors[rows]
        rows, vectors = names[source]
        log.info("mining %d dictionary negatives for each of %d pairs among %d names of %s%s",
                 k, len(positions), len(rows), source, " with the model being trained" if fresh else "")
        forbidden = [{normalize(t) for t in (queries[i], *concepts[wanted[i].concept_id].names(config.scopes))}
                     for i in positions]
        found = dictionary_negatives(encoder.encode([queries[i] for i in positions]),
                                     [wanted[i].concept_id for i in positions], forbidden, vectors,
                                     [texts[i] for i in rows], [owners[i] for i in rows], k, normalize)
        for i, negs in zip(positions, found):
            mined[i] = negs
    write_json_atomic(path, [[q, p.concept_id, negs] for q, p, negs in zip(queries, wanted, mined)], indent=None, sort_keys=False)
    return {(q, p.concept_id): negs for q, p, negs in zip(queries, wanted, mined)}
