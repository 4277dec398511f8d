"""Train the mention detector: spaCy's ``ner`` (hash-embedding CNN + transition parser) through spaCy's own
training API (:func:`spacy.training.loop.train_while_improving`), on annotated documents.

The output folder is a spaCy pipeline (``spacy.load(OUT)``: tokenizer + ``tok2vec`` + ``ner``), the model
that scored best on the dev documents. Training state lives in ``OUT/.train/``:

* ``last/`` — the pipeline at the last checkpoint, ``state.json`` — its step, epoch, elapsed seconds, the
  scores so far and the settings of the run. Both are replaced atomically at every checkpoint, so a killed run
  loses at most ``eval_every`` steps, and the same command resumes from there (the batches are replayed from
  the seed, so the resumed run sees the same batches as an uninterrupted one; the optimiser's moments
  start afresh). At most two pipelines are on disk at any time: the best and the last.

The budget is ``steps`` and/or ``minutes`` of training (the first reached stops; set-up is not counted).
A GPU is used when spaCy finds one (``spacy.prefer_gpu``, which needs cupy).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.meta import write_json_atomic
from linker.train.annotated import AnnotatedDoc, DetectorData, save_pipeline_into, training_docs

log = logging.getLogger(__name__)

STATE_DIR, LAST, STATE_FILE, LOG_FILE = ".train", "last", "state.json", "log.jsonl"
#: settings that must match for a run to resume (the budget may grow)
RESUME_KEYS = ("corpora", "dev", "types", "exclude_types", "label", "seed", "width", "depth", "embed_rows",
               "dropout", "learn_rate", "dev_fraction", "weak", "weak_contexts")


@dataclass
class DetectorConfig(DetectorData):
    """Settings of one detector training run (all recorded in ``OUT/.train/state.json`` and ``meta.json``)."""

    steps: int | None = 6000
    minutes: float | None = 25.0
    eval_every: int = 200
    width: int = 128
    depth: int = 4
    embed_rows: int = 10000
    dropout: float = 0.1
    learn_rate: float = 0.001
    progress_bar: bool = True


def _spacy_config(cfg: DetectorConfig) -> Any:
    from spacy.cli.init_config import init_config

    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency")
    config["system"]["seed"] = cfg.seed
    config["training"]["seed"] = cfg.seed
    config["training"]["dropout"] = cfg.dropout
    config["training"]["optimizer"]["learn_rate"] = cfg.learn_rate
    config["training"]["max_steps"] = cfg.steps or 0
    config["training"]["eval_frequency"] = cfg.eval_every
    config["training"]["patience"] = 0
    encode = config["components"]["tok2vec"]["model"]["encode"]
    encode["width"], encode["depth"] = cfg.width, cfg.depth
    rows = cfg.embed_rows
    config["components"]["tok2vec"]["model"]["embed"]["rows"] = [rows, rows // 5, rows // 2, rows // 2]
    return config


def _examples(nlp: Any, docs: Sequence[AnnotatedDoc]) -> tuple[list[Any], int]:
    """spaCy Examples of *docs* (tokenized by *nlp*); spans that do not fall on token boundaries are left out,
    and the tokens of unknown ranges outside the spans are missing values (spaCy's ``ner`` learns nothing
    there)."""
    from spacy.training import Example

    examples, misaligned = [], 0
    for item in docs:
        doc = nlp.make_doc(item.text)
        ents = []
        for span in item.spans:
            found = doc.char_span(span.start, span.end, label=span.label)
            if found is None:
                misaligned += 1
            else:
                ents.append(found)
        reference = doc.copy()
        taken = {i for ent in ents for i in range(ent.start, ent.end)}
        missing = [token for begin, finish in item.unknown
                   if (token := reference.char_span(begin, finish, alignment_mode="expand")) is not None
                   and not taken.intersection(range(token.start, token.end))]
        reference.set_ents(ents, missing=missing, default="outside")
        examples.append(Example(nlp.make_doc(item.text), reference))
    return examples, misaligned


def _batches(examples: list[Any], batcher: Any, seed: int, start_epoch: int = 0) -> Iterator[tuple[int, list[Any]]]:
    """(epoch, batch) forever; each epoch's order is drawn from (seed, epoch), so it can be replayed."""
    epoch = start_epoch
    while True:
        order = list(examples)
        random.Random(seed * 100_003 + epoch).shuffle(order)
        for batch in batcher(order):
            yield epoch, batch
        epoch += 1


def _write_atomically(nlp: Any, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    nlp.to_disk(tmp)
    old = target.with_name(target.name + ".old")
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)


def _save_best(nlp: Any, out: Path) -> None:
    """The best pipeline is OUT itself: its spaCy files are swapped in, ``OUT/.train`` stays."""
    save_pipeline_into(nlp, out, out / STATE_DIR / "best.tmp")


def train_detector(out: str | os.PathLike[str], config: DetectorConfig) -> dict[str, Any]:
    """Train (or resume) the detector into *out*; returns the final state (scores, steps, seconds)."""
    from tqdm import tqdm

    out = Path(out)
    state_dir = out / STATE_DIR
    setup = tqdm(total=5, desc="setting up the detector", unit="stage", disable=not config.progress_bar)
    settings = {key: value for key, value in asdict(config).items() if key in RESUME_KEYS}
    state: dict[str, Any] = {"step": 0, "epoch": 0, "seconds": 0.0, "scores": [], "best": None,
                             "settings": settings}
    state_file = state_dir / STATE_FILE
    if state_file.exists():
        previous = json.loads(state_file.read_text())
        differ = [k for k in RESUME_KEYS if k not in config.unused_settings()
                  and previous["settings"].get(k) != settings.get(k)]
        if differ:
            raise LinkerError(f"{out} holds a detector run with other settings ({', '.join(differ)}); use the "
                              "same settings to resume, or another --out")
        state = previous
    elif out.exists() and any(out.iterdir()):
        raise LinkerError(f"{out} exists and is not a detector run; choose an empty or new --out folder")
    state_dir.mkdir(parents=True, exist_ok=True)

    import spacy
    from spacy import util
    from spacy.schemas import ConfigSchemaTraining
    from spacy.training.loop import train_while_improving

    from linker.mentions.tokenizer import biomedical_tokenizer

    setup.set_postfix_str("reading corpora")
    train_docs, dev_docs, stats = training_docs(config)
    if not any(d.spans for d in train_docs):
        raise LinkerError(f"{', '.join(config.corpora)}: no annotated span to learn from")
    setup.update()
    used_gpu = spacy.prefer_gpu()
    util.fix_random_seed(config.seed)
    spacy_config = _spacy_config(config)
    setup.set_postfix_str("building the pipeline")
    nlp = util.load_model_from_config(spacy_config, auto_fill=True, validate=True)
    biomedical_tokenizer(nlp)
    setup.update()
    setup.set_postfix_str("tokenizing")
    train_examples, misaligned = _examples(nlp, train_docs)
    dev_examples, _ = _examples(nlp, dev_docs)
    setup.update()
    setup.set_postfix_str("initializing")
    training = util.registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    optimizer = training["optimizer"]
    nlp.initialize(lambda: train_examples, sgd=optimizer)
    if state["step"] and (state_dir / LAST).exists():
        nlp.from_disk(state_dir / LAST)  # same architecture and labels: the weights of the last checkpoint
        for _ in range(state["step"]):
            optimizer.step_schedules()
    setup.update()
    labels = list(nlp.get_pipe("ner").labels)
    log.info("detector: %d training documents (%d spans, %d off token boundaries), %d dev documents, labels %s, "
             "%s", len(train_examples), sum(len(d.spans) for d in train_docs), misaligned, len(dev_examples),
             ", ".join(labels), "GPU" if used_gpu else "CPU")
    setup.update()
    setup.close()

    def evaluate() -> tuple[float, dict[str, Any]]:
        scores = nlp.evaluate(dev_examples)
        return float(scores.get("ents_f") or 0.0), {k: scores.get(k) for k in ("ents_p", "ents_r", "ents_f")}

    batches = _batches(train_examples, training["batcher"], config.seed)
    for _ in range(state["step"]):
        next(batches)  # replay: the resumed run sees the batches an uninterrupted one would
    if _budget_spent(config, state["step"], state["seconds"]):
        log.info("detector run in %s is complete (%d steps, %.0f s)", out, state["step"], state["seconds"])
        _finish(out, state, config, labels, stats.as_dict(), misaligned, used_gpu)
        return state
    bar = tqdm(total=config.steps, initial=state["step"], unit="step", desc="training the detector",
               disable=not config.progress_bar, smoothing=0.05)
    started, offset = time.perf_counter(), state["seconds"]
    log_file = (state_dir / LOG_FILE).open("a", encoding="utf-8")
    best, base = state["best"], state["step"]
    try:
        loop = train_while_improving(nlp, optimizer, batches, evaluate, dropout=config.dropout,
                                     eval_frequency=config.eval_every, accumulate_gradient=1, patience=0,
                                     max_steps=0, exclude=[], annotating_components=[], before_update=None)
        for _batch, info, is_best in loop:
            step = base + info["step"] + 1
            bar.update(1)
            elapsed = offset + time.perf_counter() - started
            finished = _budget_spent(config, step, elapsed)
            if is_best is None and not finished:
                continue
            if is_best is None:  # the budget ends between evaluations: evaluate once more
                score, other = evaluate()
            else:
                score, other = info["score"], info["other_scores"]
            record = {"step": step, "epoch": info["epoch"], "seconds": round(elapsed, 1), "ents_f": score, **other,
                      "loss": round(float(info["losses"].get("ner", 0.0)), 3)}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            bar.set_postfix(epoch=info["epoch"], dev_f=f"{score:.3f}")
            if best is None or score > best["ents_f"]:
                best = record
                _save_best(nlp, out)
            _write_atomically(nlp, state_dir / LAST)
            state.update(step=step, epoch=info["epoch"], seconds=round(elapsed, 1), best=best,
                         scores=state["scores"] + [record])
            write_json_atomic(state_file, state)
            if finished:
                break
    finally:
        bar.close()
        log_file.close()
    _finish(out, state, config, labels, stats.as_dict(), misaligned, used_gpu)
    return state


def _budget_spent(config: DetectorConfig, step: int, seconds: float) -> bool:
    return bool((config.steps and step >= config.steps) or (config.minutes and seconds >= 60 * config.minutes))


def _finish(out: Path, state: dict[str, Any], config: DetectorConfig, labels: list[str], stats: dict[str, int],
            misaligned: int, used_gpu: bool) -> None:
    """Record the run in the pipeline's meta.json and drop the last checkpoint (the best one is OUT)."""
    meta_file = out / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["name"] = "mention_detector"
    meta["linker_detector"] = {"labels": labels, "best": state["best"], "steps": state["step"],
                               "seconds": state["seconds"], "corpus": stats, "misaligned_spans": misaligned,
                               "device": "gpu" if used_gpu else "cpu", "settings": state["settings"]}
    write_json_atomic(meta_file, meta)
    last = out / STATE_DIR / LAST
    if last.exists():
        shutil.rmtree(last)
