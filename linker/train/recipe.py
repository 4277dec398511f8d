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
import functools
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linker.errors import LinkerError
from linker.normalize import normalize
from linker.sources import Source
from linker.train.batching import plan_batches, plan_grouped_batches
from linker.train.evaluate import RankingTask, evaluate, synonym_task
from linker.train.loop import Budget, PhaseConfig, checkpoints, run_phase
from linker.train.mining import cluster_rank, neighbour_pool
from linker.train.model import LiveEncoder, embed, load_base, save_sentence_transformer, state_average
from linker.train.pairs import DEFAULT_SCOPES, KINDS, Pair, PairSet, build_pairs

log = logging.getLogger(__name__)

PHASES = ("contrastive", "distill", "soup")
#: settings that may differ between a run and its resumption
RUNTIME_ONLY = ("amp", "device", "threads", "progress")


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
    #: times each (mention, name) pair of a corpus is planned per epoch (corpus pairs are few next to ontology pairs)
    mention_repeat: int = 1
    #: peak phase-1 learning rate: 1e-4 suits the packaged MiniLM (2e-4 measured best at 8 minutes, see
    #: docs/training.md); 768-dim base models usually want 2e-5 to 5e-5
    lr: float = 1e-4
    scale: float = 20.0
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
    interpolations: tuple[float, ...] = (0.75, 0.5)
    amp: str = "auto"
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _device(config: TrainConfig) -> str:
    if config.device:
        return config.device
    return "cuda" if torch.cuda.is_available() else "cpu"


#: the base model's embedding of every concept's name: ``(concept ids, vectors)``, computed once on first use
BaseNames = Callable[[], tuple[list[str], np.ndarray]]


def _validation_task(pairset: PairSet, config: TrainConfig, base: LiveEncoder, base_names: BaseNames,
                     path: Path) -> RankingTask:
    """Up to *val_queries* sampled synonyms of val concepts, ranked against the names of their concepts, of
    the concepts whose names are the base model's *val_neighbours* nearest to each query (the distractors
    that make the full-index task hard) and of *val_pool* other concepts (seeded).

    Cheap enough to run at every checkpoint on a CPU. The task is kept in *path*, so a resumed run
    validates on exactly the same task.
    """
    concepts = pairset.concepts
    if path.exists():
        saved = json.loads(path.read_text())
        return RankingTask("val_synonyms", [concepts[c].name for c in saved["pool"]], saved["pool"], saved["queries"],
                           [frozenset(g) for g in saved["gold"]])
    full = synonym_task(concepts, pairset.split, "val", scopes=config.scopes, seed=config.seed, name="val_synonyms")
    rng = random.Random(config.seed)
    keep = sorted(rng.sample(range(len(full.queries)), min(config.val_queries, len(full.queries))))
    queries, gold = [full.queries[i] for i in keep], [full.gold[i] for i in keep]
    wanted = dict.fromkeys(cid for g in gold for cid in g)
    if config.val_neighbours and queries:
        ids, names = base_names()
        wanted.update(dict.fromkeys(neighbour_pool(ids, names, base.encode(queries), config.val_neighbours)))
    others = sorted(set(concepts) - set(wanted))
    rng.shuffle(others)
    pool = list(wanted) + others[:config.val_pool]
    _write_json(path, {"queries": queries, "gold": [sorted(g) for g in gold], "pool": pool}, indent=None)
    return RankingTask("val_synonyms", [concepts[c].name for c in pool], pool, queries, gold)


def train(sources: Sequence[Source], out: str | Path, config: TrainConfig | None = None) -> Path:
    """Adapt ``config.base_model`` to the ontologies *sources*; returns *out*, a sentence-transformers folder."""
    config = config or TrainConfig()
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
    settings = {**{k: v for k, v in asdict(config).items() if k not in RUNTIME_ONLY},
                "sources": [s.describe() for s in sources]}
    card_path = out / "training.json"
    if card_path.exists():
        previous = json.loads(card_path.read_text())
        if previous.get("settings") != json.loads(json.dumps(settings, default=str)):
            raise LinkerError(f"{out} holds a run with other settings (see {card_path}); pass another --out, "
                              "or delete the folder to start over")
        card: dict[str, Any] = previous
    else:
        card = {"settings": settings, "phases": {}}

    pairset = build_pairs(sources, corpora=config.corpora, mention_types=config.mention_types, scopes=config.scopes,
                          seed=config.seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                          kinds=config.kinds)
    if len(pairset.pairs) < 2:
        raise LinkerError(f"only {len(pairset.pairs)} training pair(s) from {', '.join(str(s.path) for s in sources)}; "
                          "an ontology needs synonyms, definitions or parents to train on")
    card["pairs"] = pairset.counts
    (out / "heldout.tsv").write_text("".join(f"{cid}\t{part}\n" for cid, part in sorted(pairset.split.items())
                                             if part != "train"))
    _write_json(card_path, card)

    tokenizer, net, base_max = load_base(config.base_model)
    net.to(device)
    base_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    max_length = config.max_length
    encoder = LiveEncoder(net, tokenizer, max_length, device)

    @functools.cache
    def base_names() -> tuple[list[str], np.ndarray]:  # used before any trained weights are loaded into *net*
        ids = list(pairset.concepts)
        log.info("embedding the names of %d concepts with the base model", len(ids))
        return ids, encoder.encode([pairset.concepts[c].name for c in ids])

    task = _validation_task(pairset, config, encoder, base_names, out / "validation.json")

    def validate() -> dict[str, float]:
        return evaluate(encoder, task)

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


def _write_json(path: Path, value: Any, indent: int | None = 2) -> None:
    """Write *value* as JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=indent, default=str))
    tmp.replace(path)


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {"steps": state["step"], "items": state["items"], "seconds": round(state["seconds"], 1),
            "validations": state["validations"]}


def _load_weights(folder: Path, net: Any) -> dict[str, torch.Tensor]:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder)).state_dict()


# -- phase 1 --------------------------------------------------------------------------------------------------
def contrastive_phase(net: Any, tokenizer: Any, pairset: PairSet, config: TrainConfig, out: Path, device: str,
                      max_length: int, validate: Any, base_names: BaseNames, minutes: float | None) -> dict[str, Any]:
    """Symmetric InfoNCE (multiple-negatives ranking both ways) over (anchor, positive) pairs, in-batch negatives."""
    pairs = pairset.pairs + [p for p in pairset.pairs if p.kind == "mention"] * max(0, config.mention_repeat - 1)
    folder = out / "checkpoints" / "contrastive"
    batches = _contrastive_plan(pairs, config, base_names, folder / "batches.json")
    labels_cache: dict[int, torch.Tensor] = {}

    def loss_fn(batch: list[int]) -> torch.Tensor:
        anchors = embed(net, tokenizer, [pairs[i].anchor for i in batch], max_length, device)
        positives = embed(net, tokenizer, [pairs[i].positive for i in batch], max_length, device)
        logits = config.scale * anchors @ positives.T
        labels = labels_cache.setdefault(len(batch), torch.arange(len(batch), device=device))
        return (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits.T, labels)) / 2

    phase = PhaseConfig("contrastive", lr=config.lr, checkpoint_every=config.checkpoint_every, keep=config.keep,
                        amp=config.amp, budget=Budget(config.steps, config.pairs, minutes),
                        progress_bar=config.progress)
    return run_phase(net, batches, loss_fn, config=phase, folder=folder, log_path=out / "train_log.jsonl",
                     device=device, validate=validate)


def _contrastive_plan(pairs: list[Pair], config: TrainConfig, base_names: BaseNames, path: Path) -> list[list[int]]:
    """Phase-1 batches over *pairs* for ``config.epochs`` epochs, kept in *path* so a resumed run replays them.

    With ``hard_negatives``, batches hold neighbouring concepts (k-means over the base model's embedding
    of each concept's name); otherwise random, length-bucketed batches.
    """
    if path.exists():
        return json.loads(path.read_text())

    def keys(p: Pair) -> tuple[str, ...]:
        return (p.concept_id, normalize(p.anchor), normalize(p.positive))

    rank: dict[str, int] = {}
    if config.hard_negatives:
        ids, vectors = base_names()
        trained = {p.concept_id for p in pairs}
        rows = [row for row, cid in enumerate(ids) if cid in trained]
        log.info("clustering %d concepts on base-model embeddings for hard in-batch negatives", len(rows))
        rank = dict(zip((ids[r] for r in rows), cluster_rank(vectors[rows], config.batch_size, config.seed)))
    batches: list[list[int]] = []
    for epoch in range(config.epochs):
        seed = config.seed * 1000 + epoch
        if config.hard_negatives:
            batches += plan_grouped_batches(pairs, config.batch_size, seed=seed, keys=keys, group=lambda p: p.kind,
                                            rank=lambda p: rank[p.concept_id])
        else:
            batches += plan_batches(pairs, config.batch_size, seed=seed, keys=keys,
                                    length=lambda p: len(p.anchor) + len(p.positive))
    _write_json(path, batches, indent=None)
    return batches


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

    Candidates: the last model (no averaging), the uniform soup of all checkpoints, the greedy soup
    (checkpoints by validation acc@1, each kept only if the average does not get worse), and the greedy
    soup interpolated with the base model (``a * soup + (1 - a) * base`` for each *interpolations* a).
    The best validation acc@1 wins (ties: the earlier candidate). *net* ends holding the winner.
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

    def score(name: str, state: dict[str, torch.Tensor]) -> float:
        net.load_state_dict(state)
        value = validate()
        results.append({"candidate": name, "validation": value})
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"phase": "soup", "candidate": name, "validation": value}) + "\n")
        log.info("soup candidate %s: %s", name, value)
        return float(value.get("acc@1", 0.0))

    last_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    candidates: list[tuple[str, float, dict[str, torch.Tensor]]] = [("last", score("last", last_state), last_state)]
    ranked = sorted(scores, key=lambda p: -scores[p])
    if len(ranked) >= 2:
        loaded = {p: torch.load(p, map_location="cpu", weights_only=True) for p in ranked}
        uniform = state_average(list(loaded.values()))
        candidates.append(("uniform_soup", score("uniform_soup", uniform), uniform))
        greedy = [ranked[0]]
        best = scores[ranked[0]]
        for path in ranked[1:]:
            trial = state_average([loaded[p] for p in greedy + [path]])
            value = score(f"greedy_trial+{path.parent.name}/{path.stem}", trial)
            if value >= best:
                greedy.append(path)
                best = value
        greedy_state = state_average([loaded[p] for p in greedy])
        candidates.append(("greedy_soup", best, greedy_state))
        del loaded
    else:
        greedy_state = last_state
    for alpha in config.interpolations:
        mixed = state_average([greedy_state, base_state], [alpha, 1 - alpha])
        candidates.append((f"interpolate_{alpha}", score(f"interpolate_{alpha}", mixed), mixed))
    name, value, state = max(candidates, key=lambda c: c[1])  # max keeps the first of equal scores
    net.load_state_dict(state)
    log.info("phase 3 keeps %s (validation acc@1 %.4f)", name, value)
    return {"chosen": name, "validation_acc@1": value, "candidates": results}
