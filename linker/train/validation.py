"""What the recipe validates on: the base model's embedding of the names, held-out synonyms and mentions ranked
against their distractors, and one validation figure."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linker.meta import write_json_atomic
from linker.train.config import TrainConfig
from linker.train.evaluate import RankingTask, synonym_task
from linker.train.mining import nearest
from linker.train.model import LiveEncoder
from linker.train.pairs import PairSet

log = logging.getLogger(__name__)


class BaseNames:
    """The base model's embedding of the concepts' names, computed once per kind on first use.

    ``base_names(all_names)`` → ``(texts, concept ids, vectors)``: one row per preferred name, or with
    *all_names* one per name of *scopes* (as a linker index holds them). With *all_names_needed* (a corpus's
    mentions are mined and validated against every name), the preferred-name rows are taken from the
    all-names embedding instead of embedding those names a second time.
    """

    def __init__(self, concepts: dict[str, Any], scopes: Sequence[str], encoder: LiveEncoder,
                 all_names_needed: bool) -> None:
        self.concepts, self.scopes, self.encoder = concepts, scopes, encoder
        self.all_names_needed = all_names_needed
        self._cache: dict[bool, tuple[list[str], list[str], np.ndarray]] = {}

    def __call__(self, all_names: bool = False) -> tuple[list[str], list[str], np.ndarray]:
        if all_names not in self._cache:
            self._cache[all_names] = self._compute(all_names)
        return self._cache[all_names]

    def _compute(self, all_names: bool) -> tuple[list[str], list[str], np.ndarray]:
        if not all_names and self.all_names_needed:
            texts, ids, vectors = self(True)
            # each concept's rows are consecutive and its preferred name comes first (OntologyConcept.names)
            first = [i for i, cid in enumerate(ids) if i == 0 or ids[i - 1] != cid]
            return [texts[i] for i in first], [ids[i] for i in first], vectors[first]
        rows = [(text, cid) for cid, c in self.concepts.items()
                for text in (c.names(self.scopes) if all_names else [c.name])]
        log.info("embedding %d names of %d concepts with the base model", len(rows), len(self.concepts))
        return [t for t, _ in rows], [c for _, c in rows], self.encoder.encode([t for t, _ in rows])


def validation_tasks(pairset: PairSet, config: TrainConfig, base: LiveEncoder, base_names: BaseNames,
                      path: Path) -> list[RankingTask]:
    """The validation tasks: held-out synonyms (``val_synonyms``) and, with corpora, held-out mentions.

    ``val_synonyms``: up to *val_queries* sampled synonyms of val concepts, ranked against the preferred
    names of their concepts, of the concepts whose preferred names are the base model's *val_neighbours*
    nearest to each query (the distractors that make the full-index task hard) and of *val_pool* other
    concepts (seeded). ``val_mentions``: up to *val_queries* held-out corpus mentions (see
    :func:`~linker.train.pairs.build_pairs`), ranked against every name of their concepts, the
    *val_neighbours* names (any scope, as a linker index holds them) nearest to each query, and the
    preferred names of *val_pool* other concepts.

    Cheap enough to run at every checkpoint on a CPU (a few thousand names per task). The tasks are kept
    in *path*, so a resumed run validates on exactly the same tasks.
    """
    concepts = pairset.concepts

    def task(saved: dict[str, Any]) -> RankingTask:
        return RankingTask(saved["name"], [t for t, _ in saved["index"]], [c for _, c in saved["index"]],
                           saved["queries"], [frozenset(g) for g in saved["gold"]])

    if path.exists():
        return [task(t) for t in json.loads(path.read_text())["tasks"]]
    rng = random.Random(config.seed)
    full = synonym_task(concepts, pairset.split, "val", scopes=config.scopes, seed=config.seed, name="val_synonyms")
    wanted_tasks = [("val_synonyms", full.queries, [sorted(g) for g in full.gold], False),
                    ("val_mentions", [t for t, _ in pairset.val_mentions], [[c] for _, c in pairset.val_mentions],
                     True)]
    saved = []
    for name, all_queries, all_gold, all_names in wanted_tasks:
        if not all_queries:
            continue
        keep = sorted(rng.sample(range(len(all_queries)), min(config.val_queries, len(all_queries))))
        queries, gold = [all_queries[i] for i in keep], [all_gold[i] for i in keep]
        index = {(text, cid): None for g in gold for cid in g
                 for text in (concepts[cid].names(config.scopes) if all_names else [concepts[cid].name])}
        # distractors from the gold concepts' own ontologies: another ontology's equivalent is no error
        sources = {concepts[cid].source for g in gold for cid in g}
        if config.val_neighbours:
            texts, owners, vectors = base_names(all_names)
            rows = [i for i, cid in enumerate(owners) if concepts[cid].source in sources]
            for row in nearest(vectors[rows], base.encode(queries), config.val_neighbours):
                index.update(dict.fromkeys((texts[rows[i]], owners[rows[i]]) for i in row))
        present = {cid for _, cid in index}
        others = sorted(cid for cid in set(concepts) - present if concepts[cid].source in sources)
        rng.shuffle(others)
        index.update(dict.fromkeys((concepts[cid].name, cid) for cid in others[:config.val_pool]))
        saved.append({"name": name, "queries": queries, "gold": gold, "index": [list(key) for key in index]})
    write_json_atomic(path, {"tasks": saved}, indent=None, sort_keys=False)
    return [task(t) for t in saved]


def validation_score(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One validation figure from per-task *scores*: acc@1 and acc@10 averaged over the tasks (each task
    weighs the same, so a corpus's mentions steer checkpoints and phase 3 as much as the ontology's
    synonyms), plus each task's own scores under its name."""
    if not scores:
        return {}
    mean = {m: round(sum(s[m] for s in scores.values()) / len(scores), 4) for m in ("acc@1", "acc@10")}
    return {**mean, **scores}
