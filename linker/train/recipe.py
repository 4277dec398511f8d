"""The BioLORD recipe end to end: pairs → phase 1 (contrastive) → phase 2 (self-distillation) → phase 3 (weight averaging).

Everything lives in one output folder, which is itself the final sentence-transformers model::

    OUT/  config.json model.safetensors tokenizer… modules.json 1_Pooling/ …   final model (linker build --model OUT)
          training.json   settings, pair counts, split, budgets, phase summaries, soup choice
          train_log.jsonl one line per checkpoint: phase, step, loss, lr, seconds, validation acc@1/acc@10
          heldout.tsv     concept_id<TAB>val|test: the concepts training never saw
          validation.json the validation queries and the concepts whose names they are ranked against
          phase1/ phase2/ the model after each phase (sentence-transformers folders)
          checkpoints/    resumable state, the checkpoint weights averaged in phase 3 (deleted once the run is
                          complete unless ``keep_checkpoints``), the batch plans and mined negatives

Run the same call again after an interruption: finished phases are skipped, an unfinished one resumes
from its last checkpoint, with the same batches in the same order; on a finished run it returns at once.
The pieces: :mod:`~linker.train.config` (settings), :mod:`~linker.train.validation` (what is validated on),
:mod:`~linker.train.plans` (phase 1's batches and mined negatives), phases 1 and 2 here,
:mod:`~linker.train.soup` (phase 3).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from linker.errors import LinkerError
from linker.meta import write_json_atomic
from linker.progress import ticking
from linker.sources import Source
from linker.train.batching import plan_batches
from linker.train.config import ADDED_SETTINGS, PHASES, RUNTIME_ONLY, TrainConfig
from linker.train.evaluate import evaluate, right_at_1
from linker.train.loop import Budget, PhaseConfig, amp_context, run_phase
from linker.train.model import LiveEncoder, embed, load_base, save_sentence_transformer, similarities, symmetric_infonce
from linker.train.pairs import PairSet, build_pairs
from linker.train.plans import contrastive_plan, mention_repeat, mined_negatives, negatives_per_pair, query_side
from linker.train.soup import soup_phase
from linker.train.validation import BaseNames, validation_score, validation_tasks

__all__ = ["PHASES", "TrainConfig", "train", "contrastive_phase", "distill_phase"]

log = logging.getLogger(__name__)


def _device(config: TrainConfig) -> str:
    if config.device:
        return config.device
    return "cuda" if torch.cuda.is_available() else "cpu"


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
        if card.get("final") and (out / "modules.json").exists():
            log.info("%s holds a finished run (final model: %s); use another --out to train again", out, card["final"])
            return out
    else:
        card = {"settings": settings, "phases": {}}

    shown = config.progress  # set-up takes minutes on a large ontology: each step shows its own line
    with ticking("set-up: reading the ontologies and building pairs", shown):
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
    write_json_atomic(card_path, card, sort_keys=False)

    with ticking("set-up: loading the base model", shown):
        tokenizer, net, base_max = load_base(config.base_model)
    net.to(device)
    if config.freeze_embeddings:
        net.get_input_embeddings().weight.requires_grad_(False)
    base_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    max_length = config.max_length
    encoder = LiveEncoder(net, tokenizer, max_length, device, autocast=amp_context(device, config.amp)[0],
                          progress=shown)

    # the base model's name embeddings; used before any trained weights are loaded into *net*
    mines = any(negatives_per_pair(config, p.kind) for p in pairset.pairs)
    base_names = BaseNames(pairset.concepts, config.scopes, encoder,
                           all_names_needed=mines or bool(pairset.val_mentions and config.val_neighbours))
    with ticking("set-up: choosing the validation queries", shown):
        tasks = validation_tasks(pairset, config, encoder, base_names, out / "validation.json")

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
        with ticking("set-up: validating the base model", shown):
            card["base_validation"] = validate()
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"phase": "base", "step": 0, "validation": card["base_validation"]}) + "\n")
        write_json_atomic(card_path, card, sort_keys=False)
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
            write_json_atomic(card_path, card, sort_keys=False)
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
            write_json_atomic(card_path, card, sort_keys=False)
        current = "phase2"

    if "soup" in config.phases:
        choice = soup_phase(net, base_state, out, config, validate, log_path)
        card["phases"]["soup"] = choice
        current = choice["chosen"]
    card["seconds_this_call"] = round(time.perf_counter() - started, 1)
    save_sentence_transformer(net, tokenizer, out, max_length=max_length, card=None)
    card["final"] = current  # written last: a run killed before this point resumes
    write_json_atomic(card_path, card, sort_keys=False)
    if not config.keep_checkpoints:
        removed = [path for path in (out / "checkpoints").glob("*/*.pt")]
        for path in removed:
            path.unlink()
        log.info("removed %d checkpoint file(s) of the finished run (keep them with --keep-checkpoints)", len(removed))
    log.info("trained model written to %s (final: %s)", out, current)
    return out


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


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
    its mined dictionary negatives (see :func:`mined_negatives`); a negative that is a name of another pair's
    concept in the batch is masked for that pair. Each mention pair is planned *repeat* times per epoch
    (:func:`mention_repeat`).
    """
    pairs = pairset.pairs + [p for p in pairset.pairs if p.kind == "mention"] * (repeat - 1)
    folder = out / "checkpoints" / "contrastive"
    with ticking("set-up: planning batches of neighbouring concepts", config.progress):
        batches = contrastive_plan(pairs, config, base_names, folder / "batches.json")
    with ticking("set-up: mining dictionary negatives", config.progress):
        negatives = mined_negatives(pairset, config, encoder, base_names, folder / "negatives.json")
    mining_round = 0

    def remine(step: int) -> None:
        """At each *remine_every* steps, negatives mined with the model as it is then (kept per round, so a
        resumed run replays the same ones)."""
        nonlocal negatives, mining_round
        if not config.remine_every or not negatives or step // config.remine_every == mining_round:
            return
        mining_round = step // config.remine_every
        negatives = mined_negatives(pairset, config, encoder, base_names,
                                     folder / f"negatives-{mining_round:03d}.json", fresh=True)

    def mined(queries: torch.Tensor, batch: list[int], side: str) -> torch.Tensor | None:
        """Scores of the batch's *side* rows against the negatives mined for pairs whose query is on that side;
        a negative is masked in the row of its own concept."""
        extra = [neg for i in batch if query_side(pairs[i]) == side
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
