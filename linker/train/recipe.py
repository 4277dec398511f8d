"""The BioLORD recipe end to end: pairs → phase 1 (contrastive) → phase 2 (self-distillation) → phase 3 (weight averaging).

Everything lives in one output folder, which is itself the final sentence-transformers model::

    OUT/  config.json model.safetensors tokenizer… modules.json 1_Pooling/ …   final model (linker build --model OUT)
          training.json   settings, pair counts, split, budgets, phase summaries, soup choice
          train_log.jsonl one line per checkpoint: phase, step, loss, lr, seconds, validation acc@1/acc@10
          heldout.tsv     concept_id<TAB>val|test: the concepts training never saw
          validation.json the validation queries and the concepts whose names they are ranked against
          phase1/ phase2/ the model after each phase (sentence-transformers folders)
          checkpoints/    resumable state and the checkpoint weights averaged in phase 3

Run the same call again after an interruption: finished phases are skipped, an unfinished one resumes
from its last checkpoint, with the same batches in the same order.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linker.errors import LinkerError
from linker.normalize import normalize
from linker.sources import Source
from linker.train.batching import plan_batches, plan_grouped_batches
from linker.train.evaluate import RankingTask, evaluate, paired_gain, right_at_1, synonym_task
from linker.train.loop import Budget, PhaseConfig, amp_context, checkpoints, run_phase
from linker.train.mining import cluster_rank, dictionary_negatives, nearest
from linker.train.model import (LiveEncoder, embed, load_base, save_sentence_transformer, similarities,
                                state_average, symmetric_infonce)
from linker.train.pairs import DEFAULT_SCOPES, KINDS, Pair, PairSet, build_pairs

log = logging.getLogger(__name__)

PHASES = ("contrastive", "distill", "soup")
#: settings that may differ between a run and its resumption
RUNTIME_ONLY = ("amp", "device", "threads", "progress")
#: settings added after runs were recorded, with the value that reproduces those runs: recorded only when they
#: differ from it, so the runs still resume
ADDED_SETTINGS = {"freeze_embeddings": False, "synonym_negatives": 0, "remine_every": 0}


@dataclass
class TrainConfig:
    """Settings of :func:`train`; the defaults suit a CPU run of tens of minutes."""

    base_model: str | None = None
    seed: int = 0
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    #: pair kinds trained on (see :data:`linker.train.pairs.KINDS`)
    kinds: tuple[str, ...] = KINDS
    corpora: tuple[str, ...] = ()
    mention_types: tuple[str, ...] | None = None
    phases: tuple[str, ...] = PHASES
    batch_size: int = 32
    max_length: int = 64
    epochs: int = 1
    #: batches of neighbouring concepts (hard in-batch negatives mined with the base model) instead of random ones
    hard_negatives: bool = True
    #: times each (mention, name) pair of a corpus is planned per epoch; None: as many as make the mention pairs
    #: about *mention_share* of the plan (a corpus gives ~1.5k pairs next to tens of thousands from an ontology)
    mention_repeat: int | None = None
    mention_share: float = 0.3
    #: names of other concepts mined per (mention, name) pair as extra negatives: the base model's nearest
    #: dictionary names to the mention (0 = in-batch negatives only)
    mention_negatives: int = 2
    #: the same for each (name, synonym) pair: names of other concepts nearest to the synonym (the query side).
    #: None: 2 without *corpora*, 0 with. On HPO alone 2 gained 2.1 and 2.8 test points (12 and 20 minutes,
    #: paired z = 2.6 and 3.3), but cost BC5CDR 1.1 points (z = -4.2) in an HPO + MEDIC + corpora run
    #: (docs/training.md)
    synonym_negatives: int | None = None
    #: mine the mention and synonym negatives again every this many phase-1 steps, with the model being trained
    #: (BioSyn updates its candidates each epoch); 0: the base model's negatives serve the whole phase
    remine_every: int = 0
    #: fraction of distinct corpus mention texts held out (never trained on) for the ``val_mentions`` validation
    mention_val_fraction: float = 0.1
    #: peak phase-1 learning rate: 1e-4 suits the packaged MiniLM (2e-4 measured best at 8 minutes, see
    #: docs/training.md); 768-dim base models usually want 2e-5 to 5e-5
    lr: float = 1e-4
    scale: float = 20.0
    #: keep the token embeddings of the base model (half of MiniLM's weights): 23% more steps per minute on
    #: HPO, no accuracy gain measured (docs/training.md)
    freeze_embeddings: bool = False
    #: phase-1 budget; None = no limit (the pair plan is the last limit)
    steps: int | None = None
    pairs: int | None = None
    #: total minutes of phases 1 and 2 (validation included); phase 2 gets *distill_share* of it
    minutes: float | None = None
    distill_share: float = 0.2
    distill_steps: int | None = None
    distill_lr: float = 1e-5
    distill_definition_weight: float = 0.5
    checkpoint_every: int = 200
    keep: int = 4
    val_pool: int = 1000
    val_queries: int = 500
    #: each validation query also ranks against the concepts of its *val_neighbours* nearest names (base model)
    val_neighbours: int = 10
    #: phase-3 weights a of a * soup + (1 - a) * base; 0.5 is left out: in the 4 MEDIC runs where it won the
    #: validation, it tested 0.9 to 2.3 NCBI-disease dev points below a phase-1 or phase-2 model of its run
    interpolations: tuple[float, ...] = (0.75,)
    #: phase 3 replaces the last model by an average only when the average's validation gain is at least
    #: this many paired standard errors (see :func:`~linker.train.evaluate.paired_gain`); 0: the best score wins
    soup_margin: float = 1.0
    amp: str = "auto"
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _device(config: TrainConfig) -> str:
    if config.device:
        return config.device
    return "cuda" if torch.cuda.is_available() else "cpu"


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


def _validation_tasks(pairset: PairSet, config: TrainConfig, base: LiveEncoder, base_names: BaseNames,
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
    _write_json(path, {"tasks": saved}, indent=None)
    return [task(t) for t in saved]


def validation_score(scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One validation figure from per-task *scores*: acc@1 and acc@10 averaged over the tasks (each task
    weighs the same, so a corpus's mentions steer checkpoints and phase 3 as much as the ontology's
    synonyms), plus each task's own scores under its name."""
    if not scores:
        return {}
    mean = {m: round(sum(s[m] for s in scores.values()) / len(scores), 4) for m in ("acc@1", "acc@10")}
    return {**mean, **scores}


def train(sources: Sequence[Source], out: str | Path, config: TrainConfig | None = None,
          extra_sources: Sequence[Source] = ()) -> Path:
    """Adapt ``config.base_model`` to the ontologies *sources*; returns *out*, a sentence-transformers folder.

    *extra_sources* are trained on whole, none of their concepts held out (see
    :func:`~linker.train.pairs.build_pairs`).
    """
    config = config or TrainConfig()
    if config.synonym_negatives is None:
        config = replace(config, synonym_negatives=0 if config.corpora else 2)
    unknown = set(config.phases) - set(PHASES)
    if unknown or not config.phases:
        raise LinkerError(f"unknown phase(s) {', '.join(sorted(unknown)) or '(none given)'}; use some of {', '.join(PHASES)}")
    if not sources:
        raise LinkerError("no ontology given; pass at least one ontology file")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = _device(config)
    started = time.perf_counter()
    settings = {**{k: v for k, v in asdict(config).items()
                   if k not in RUNTIME_ONLY and (k not in ADDED_SETTINGS or v != ADDED_SETTINGS[k])},
                "sources": [s.describe() for s in sources]}
    if extra_sources:  # absent when none, so runs recorded before the option still resume
        settings["extra_sources"] = [s.describe() for s in extra_sources]
    card_path = out / "training.json"
    if card_path.exists():
        previous = json.loads(card_path.read_text())
        recorded, now = previous.get("settings", {}), json.loads(json.dumps(settings, default=str))
        if recorded != now:
            differ = "; ".join(f"{key}: {_short(recorded.get(key, '(not set)'))} there, "
                               f"{_short(now.get(key, '(not set)'))} now"
                               for key in sorted(recorded.keys() | now.keys()) if recorded.get(key) != now.get(key))
            raise LinkerError(f"{out} holds a run with other settings ({differ}; see {card_path}); pass those "
                              "settings to resume it, another --out, or delete the folder to start over")
        card: dict[str, Any] = previous
    else:
        card = {"settings": settings, "phases": {}}

    pairset = build_pairs(sources, extra_sources=extra_sources, corpora=config.corpora,
                          mention_types=config.mention_types, scopes=config.scopes, seed=config.seed,
                          val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                          kinds=config.kinds, mention_val_fraction=config.mention_val_fraction)
    if len(pairset.pairs) < 2:
        raise LinkerError(f"only {len(pairset.pairs)} training pair(s) from {', '.join(str(s.path) for s in sources)}; "
                          "an ontology needs synonyms, definitions or parents to train on")
    card["pairs"] = pairset.counts
    repeat = mention_repeat(config, pairset.pairs)  # before the slow set-up, so a bad share fails at once
    card["mention_repeat"] = repeat
    (out / "heldout.tsv").write_text("".join(f"{cid}\t{part}\n" for cid, part in sorted(pairset.split.items())
                                             if part != "train"))
    _write_json(card_path, card)

    tokenizer, net, base_max = load_base(config.base_model)
    net.to(device)
    if config.freeze_embeddings:
        net.get_input_embeddings().weight.requires_grad_(False)
    base_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    max_length = config.max_length
    encoder = LiveEncoder(net, tokenizer, max_length, device, autocast=amp_context(device, config.amp)[0])

    # the base model's name embeddings; used before any trained weights are loaded into *net*
    mines = any(_negatives_per_pair(config, p.kind) for p in pairset.pairs)
    base_names = BaseNames(pairset.concepts, config.scopes, encoder,
                           all_names_needed=mines or bool(pairset.val_mentions and config.val_neighbours))
    tasks = _validation_tasks(pairset, config, encoder, base_names, out / "validation.json")

    def validate(hits: list[float] | None = None) -> dict[str, Any]:
        """The validation scores; with *hits*, each query's share of the mean acc@1 (0 when wrong) is appended."""
        scores = {}
        for task in tasks:
            record: list[dict] | None = [] if hits is not None else None
            scores[task.name] = evaluate(encoder, task, record=record)
            if hits is not None and record:
                hits.extend(right / (len(tasks) * len(record)) for right in right_at_1(record))
        return validation_score(scores)

    log_path = out / "train_log.jsonl"
    if "base_validation" not in card:
        card["base_validation"] = validate()
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"phase": "base", "step": 0, "validation": card["base_validation"]}) + "\n")
        _write_json(card_path, card)
    log.info("base model validation: %s", card["base_validation"])
    share = config.distill_share if "distill" in config.phases else 0.0
    current = "base"

    if "contrastive" in config.phases:
        folder = out / "phase1"
        if (folder / "modules.json").exists():
            net.load_state_dict(_load_weights(folder, net))
        else:
            summary = contrastive_phase(net, tokenizer, pairset, config, out, device, max_length, validate, base_names,
                                        encoder, repeat,
                                        minutes=config.minutes * (1 - share) if config.minutes else None)
            save_sentence_transformer(net, tokenizer, folder, max_length=max_length)
            card["phases"]["contrastive"] = _summary(summary)
            _write_json(card_path, card)
        current = "phase1"

    if "distill" in config.phases:
        folder = out / "phase2"
        if (folder / "modules.json").exists():
            net.load_state_dict(_load_weights(folder, net))
        else:
            summary = distill_phase(net, tokenizer, pairset, config, out, device, max_length, validate,
                                    minutes=config.minutes * share if config.minutes else None)
            save_sentence_transformer(net, tokenizer, folder, max_length=max_length)
            card["phases"]["distill"] = _summary(summary)
            _write_json(card_path, card)
        current = "phase2"

    if "soup" in config.phases:
        choice = soup_phase(net, base_state, out, config, validate, log_path)
        card["phases"]["soup"] = choice
        current = choice["chosen"]
    card["final"] = current
    card["seconds_this_call"] = round(time.perf_counter() - started, 1)
    save_sentence_transformer(net, tokenizer, out, max_length=max_length, card=None)
    _write_json(card_path, card)
    log.info("trained model written to %s (final: %s)", out, current)
    return out


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def _write_json(path: Path, value: Any, indent: int | None = 2) -> None:
    """Write *value* as JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=indent, default=str))
    tmp.replace(path)


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {"steps": state["step"], "items": state["items"], "seconds": round(state["seconds"], 1),
            "amp": state.get("amp"), "validations": state["validations"]}


def _load_weights(folder: Path, net: Any) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder)).state_dict()


# -- phase 1 --------------------------------------------------------------------------------------------------
def contrastive_phase(net: Any, tokenizer: Any, pairset: PairSet, config: TrainConfig, out: Path, device: str,
                      max_length: int, validate: Any, base_names: BaseNames, encoder: LiveEncoder, repeat: int,
                      minutes: float | None) -> dict[str, Any]:
    """Symmetric InfoNCE (multiple-negatives ranking both ways) over (anchor, positive) pairs, in-batch negatives.

    The query side of a mention pair (the mention) or of a synonym pair (the synonym) is also ranked against
    its mined dictionary negatives (see :func:`_mined_negatives`); a negative that is a name of another pair's
    concept in the batch is masked for that pair. Each mention pair is planned *repeat* times per epoch
    (:func:`mention_repeat`).
    """
    pairs = pairset.pairs + [p for p in pairset.pairs if p.kind == "mention"] * (repeat - 1)
    folder = out / "checkpoints" / "contrastive"
    batches = _contrastive_plan(pairs, config, base_names, folder / "batches.json")
    negatives = _mined_negatives(pairset, config, encoder, base_names, folder / "negatives.json")
    mining_round = 0

    def remine(step: int) -> None:
        """At each *remine_every* steps, negatives mined with the model as it is then (kept per round, so a
        resumed run replays the same ones)."""
        nonlocal negatives, mining_round
        if not config.remine_every or not negatives or step // config.remine_every == mining_round:
            return
        mining_round = step // config.remine_every
        negatives = _mined_negatives(pairset, config, encoder, base_names,
                                     folder / f"negatives-{mining_round:03d}.json", fresh=True)

    def mined(queries: torch.Tensor, batch: list[int], side: str) -> torch.Tensor | None:
        """Scores of the batch's *side* rows against the negatives mined for pairs whose query is on that side;
        a negative is masked in the row of its own concept."""
        extra = [neg for i in batch if _query_side(pairs[i]) == side
                 for neg in negatives.get((getattr(pairs[i], side), pairs[i].concept_id), ())]
        if not extra:
            return None
        scores = similarities(queries, embed(net, tokenizer, [t for t, _ in extra], max_length, device), config.scale)
        mask = torch.tensor([[owner == pairs[i].concept_id for _, owner in extra] for i in batch], device=device)
        return scores.masked_fill(mask, float("-inf"))

    def loss_fn(batch: list[int]) -> torch.Tensor:
        anchors = embed(net, tokenizer, [pairs[i].anchor for i in batch], max_length, device)
        positives = embed(net, tokenizer, [pairs[i].positive for i in batch], max_length, device)
        logits = similarities(anchors, positives, config.scale)
        forward, backward = logits, logits.T
        if (extra := mined(anchors, batch, "anchor")) is not None:
            forward = torch.cat([forward, extra], dim=1)
        if (extra := mined(positives, batch, "positive")) is not None:
            backward = torch.cat([backward, extra], dim=1)
        return symmetric_infonce(logits, forward, backward)

    phase = PhaseConfig("contrastive", lr=config.lr, checkpoint_every=config.checkpoint_every, keep=config.keep,
                        amp=config.amp, budget=Budget(config.steps, config.pairs, minutes),
                        progress_bar=config.progress)
    return run_phase(net, batches, loss_fn, config=phase, folder=folder, log_path=out / "train_log.jsonl",
                     device=device, validate=validate, before_step=remine)


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


def _contrastive_plan(pairs: list[Pair], config: TrainConfig, base_names: BaseNames, path: Path) -> list[list[int]]:
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
              for rows in _by_source([p.concept_id for p in pairs], base_names.concepts).values()]
    ranks = [_neighbour_rank(members, config, base_names) if config.hard_negatives else {}
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
    _write_json(path, batches, indent=None)
    return batches


def _by_source(concept_ids: Sequence[str], concepts: dict[str, Any]) -> dict[str, list[int]]:
    """Positions of *concept_ids* grouped by the ontology their concept comes from."""
    groups: dict[str, list[int]] = {}
    for i, cid in enumerate(concept_ids):
        groups.setdefault(concepts[cid].source, []).append(i)
    return groups


def _neighbour_rank(pairs: Sequence[Pair], config: TrainConfig, base_names: BaseNames) -> dict[str, int]:
    """Concept id -> position in an order where neighbours (k-means on base-model name embeddings) are adjacent."""
    _, ids, vectors = base_names(False)
    trained = {p.concept_id for p in pairs}
    rows = [row for row, cid in enumerate(ids) if cid in trained]
    log.info("clustering %d concepts on base-model embeddings for hard in-batch negatives", len(rows))
    return dict(zip((ids[r] for r in rows), cluster_rank(vectors[rows], config.batch_size, config.seed)))


#: pair kinds whose one side plays the query of a linker (the text to link): that side, and the setting that
#: gives how many dictionary negatives are mined for it
QUERY_KINDS = {"mention": ("anchor", "mention_negatives"), "synonym": ("positive", "synonym_negatives")}


def _query_side(pair: Pair) -> str | None:
    """The side of *pair* that holds its query (the mention of a (mention, name) pair, the synonym of a (name,
    synonym) pair); None for the other kinds."""
    return QUERY_KINDS[pair.kind][0] if pair.kind in QUERY_KINDS else None


def _negatives_per_pair(config: TrainConfig, kind: str) -> int:
    return int(getattr(config, QUERY_KINDS[kind][1])) if kind in QUERY_KINDS else 0


def _mined_negatives(pairset: PairSet, config: TrainConfig, encoder: LiveEncoder, base_names: BaseNames,
                     path: Path, fresh: bool = False) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """``(query, concept) -> [(name, owner concept), …]``: for each mention pair (*mention_negatives*) and
    synonym pair (*synonym_negatives*), names of other training concepts (every name of *scopes*, as a
    linker index holds them) that *encoder* puts nearest to the pair's query (:func:`_query_side`): the base
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
    wanted = [p for p in pairset.pairs if _negatives_per_pair(config, p.kind) > 0]
    if not wanted:
        return {}
    texts, owners, base_vectors = base_names(True)
    concepts = pairset.concepts
    queries = [getattr(p, QUERY_KINDS[p.kind][0]) for p in wanted]
    mined: list[list[tuple[str, str]]] = [[] for _ in wanted]
    groups: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(wanted):
        groups.setdefault((concepts[p.concept_id].source, _negatives_per_pair(config, p.kind)), []).append(i)
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
    _write_json(path, [[q, p.concept_id, negs] for q, p, negs in zip(queries, wanted, mined)], indent=None)
    return {(q, p.concept_id): negs for q, p, negs in zip(queries, wanted, mined)}


# -- phase 2 --------------------------------------------------------------------------------------------------
def distill_phase(net: Any, tokenizer: Any, pairset: PairSet, config: TrainConfig, out: Path, device: str,
                  max_length: int, validate: Any, minutes: float | None) -> dict[str, Any]:
    """Self-distillation: the phase-1 model (frozen) teaches its own continuation.

    Loss per batch of names: ``1 - cos(student(name), centroid)`` where the centroid is the teacher's
    normalised mean embedding of the concept's names (up to 4) and definition, plus
    ``w * (1 - cos(student(definition), teacher(definition)))`` over the batch's definitions. The first
    term pulls every name of a concept to one denoised point (what synonym → concept linking needs,
    without the noise of single in-batch negatives); the second keeps sentence embeddings where the
    teacher had them, so ability on longer text is not traded away.
    """
    teacher = copy.deepcopy(net).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    concepts = pairset.concepts
    train_ids = [cid for cid, part in pairset.split.items() if part == "train"]
    items = [(cid, name) for cid in train_ids for name in concepts[cid].names(config.scopes)]
    batches = plan_batches(items, config.batch_size, seed=config.seed * 1000 + 777, keys=lambda it: (it[0],),
                           length=lambda it: len(it[1]))
    centroids: dict[str, torch.Tensor] = {}

    def teacher_embed(texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return embed(teacher, tokenizer, texts, max_length, device)

    def loss_fn(batch: list[int]) -> torch.Tensor:
        ids = [items[i][0] for i in batch]
        missing = [cid for cid in dict.fromkeys(ids) if cid not in centroids]
        if missing:
            texts, owner = [], []
            for cid in missing:
                c = concepts[cid]
                for text in c.names(config.scopes)[:4] + ([c.definition] if c.definition else []):
                    texts.append(text)
                    owner.append(cid)
            vectors = teacher_embed(texts)
            for cid in missing:
                rows = [j for j, o in enumerate(owner) if o == cid]
                centroids[cid] = torch.nn.functional.normalize(vectors[rows].mean(0), dim=0)
        student = embed(net, tokenizer, [items[i][1] for i in batch], max_length, device)
        target = torch.stack([centroids[cid] for cid in ids])
        loss = (1 - (student * target).sum(1)).mean()
        definitions = [concepts[cid].definition for cid in dict.fromkeys(ids) if concepts[cid].definition]
        definitions = definitions[: max(2, len(batch) // 4)]
        if definitions and config.distill_definition_weight > 0:
            s = embed(net, tokenizer, definitions, max_length, device)
            t = teacher_embed(definitions)
            loss = loss + config.distill_definition_weight * (1 - (s * t).sum(1)).mean()
        return loss

    steps = config.distill_steps
    if steps is None and config.steps is not None:
        steps = max(1, round(config.steps * config.distill_share))
    phase = PhaseConfig("distill", lr=config.distill_lr, checkpoint_every=config.checkpoint_every, keep=config.keep,
                        amp=config.amp, budget=Budget(steps, None, minutes), progress_bar=config.progress)
    summary = run_phase(net, batches, loss_fn, config=phase, folder=out / "checkpoints" / "distill",
                        log_path=out / "train_log.jsonl", device=device, validate=validate)
    del teacher
    return summary


# -- phase 3 --------------------------------------------------------------------------------------------------
def soup_phase(net: Any, base_state: dict[str, torch.Tensor], out: Path, config: TrainConfig, validate: Any,
               log_path: Path) -> dict[str, Any]:
    """Weight averaging over the saved checkpoints of phases 1 and 2, chosen on the validation split.

    Candidates: the last model (no averaging), the best checkpoint alone, the uniform soup of all
    checkpoints, the greedy soup (the last model, then checkpoints by their training-time validation, each
    kept only if the average does not get worse), and the greedy soup (or the last model) interpolated with
    the base model (``a * soup + (1 - a) * base`` for each *interpolations* a).

    A candidate replaces the last model only when its paired validation gain over it reaches
    *soup_margin* standard errors (:func:`~linker.train.evaluate.paired_gain`); among those, the best
    validation acc@1 wins (ties: the earlier candidate). Validation sets of a few hundred queries
    cannot tell a 1-point difference from noise, and picking the best of ten noisy candidates
    otherwise favours averages that test worse. *net* ends holding the winner.
    """
    scores: dict[Path, float] = {}
    for phase in ("contrastive", "distill"):
        folder = out / "checkpoints" / phase
        if not folder.exists():
            continue
        by_step = {}
        last = folder / "last.pt"
        if last.exists():
            state = torch.load(last, map_location="cpu", weights_only=False)["state"]
            by_step = {v["step"]: v["validation"].get("acc@1", 0.0) for v in state["validations"]}
        for path in checkpoints(folder):
            scores[path] = by_step.get(int(path.stem.split("-")[1]), 0.0)
    results: list[dict[str, Any]] = []
    reference: list[float] = []  # the last model's per-query hits

    def log_entry(entry: dict[str, Any]) -> None:
        results.append(entry)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"phase": "soup", **entry}) + "\n")
        log.info("soup candidate %s", entry)

    def score(name: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Validate *state*: its log entry, with its paired gain over the last model (z in standard errors)."""
        net.load_state_dict(state)
        hits: list[float] = []
        entry: dict[str, Any] = {"candidate": name, "validation": validate(hits)}
        if not results:  # the last model is scored first: the reference of the paired gains
            reference.extend(hits)
        else:
            gain, z = paired_gain(hits, reference)
            entry.update(gain=round(gain, 4), z=round(z, 2))
        log_entry(entry)
        return entry

    last_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    candidates: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = [(score("last", last_state), last_state)]
    ranked = sorted(scores, key=lambda p: -scores[p])
    greedy_state, greedy_entry = last_state, candidates[0][0]
    if len(ranked) >= 2:
        loaded = {p: torch.load(p, map_location="cpu", weights_only=True) for p in ranked}
        uniform = state_average(list(loaded.values()))
        candidates.append((score("uniform_soup", uniform), uniform))
        best = ranked[0]
        candidates.append((score(f"best_checkpoint:{best.parent.name}/{best.stem}", loaded[best]), loaded[best]))
        # the greedy soup grows from the last model, the one shipped without phase 3; seeding it with the
        # checkpoint of best training-time validation once left phase 2 out of the soup and cost 2.3 points
        greedy: list[Path] = []
        for path in ranked:
            if all(torch.equal(loaded[path][k], last_state[k]) for k in last_state):
                continue  # the last model's own checkpoint
            trial = state_average([last_state] + [loaded[p] for p in greedy + [path]])
            trial_entry = score(f"greedy_trial+{path.parent.name}/{path.stem}", trial)
            if trial_entry["validation"].get("acc@1", 0.0) >= greedy_entry["validation"].get("acc@1", 0.0):
                greedy.append(path)
                greedy_state, greedy_entry = trial, trial_entry
        if greedy:  # the last accepted trial, logged again under its own name
            entry = {**greedy_entry, "candidate": "greedy_soup",
                     "members": ["last"] + [f"{p.parent.name}/{p.stem}" for p in greedy]}
            log_entry(entry)
            candidates.append((entry, greedy_state))
        del loaded
    for alpha in config.interpolations:
        mixed = state_average([greedy_state, base_state], [alpha, 1 - alpha])
        candidates.append((score(f"interpolate_{alpha}", mixed), mixed))
    chosen = pick_candidate([entry for entry, _ in candidates], config.soup_margin)
    entry, state = next(c for c in candidates if c[0]["candidate"] == chosen)
    net.load_state_dict(state)
    value = entry["validation"].get("acc@1", 0.0)
    log.info("phase 3 keeps %s (validation acc@1 %.4f; margin %.1f standard errors over the last model)",
             chosen, value, config.soup_margin)
    return {"chosen": chosen, "validation_acc@1": value, "soup_margin": config.soup_margin, "candidates": results}


def pick_candidate(entries: Sequence[dict[str, Any]], margin: float) -> str:
    """The phase-3 choice among candidate *entries* (the first is the last model, the others carry ``z``, their
    paired gain over it in standard errors): the best validation acc@1 among the last model and the
    candidates with ``z >= margin``; the earlier entry wins a tie."""
    eligible = [e for i, e in enumerate(entries) if i == 0 or e.get("z", 0.0) >= margin]
    return max(eligible, key=lambda e: e["validation"].get("acc@1", 0.0))["candidate"]
