"""Train the transformer mention detector (:mod:`linker.mentions.transformer`): a token-classification head
(BIO over sub-words) fine-tuned with the whole transformer, on annotated documents.

The optimisation is :func:`linker.train.loop.run_phase` (AdamW, warm-up and linear decay, bf16 autocast on
CUDA and on CPUs with native bf16, resumable from ``OUT/.train/last.pt`` with optimiser and RNG state, the
batch plan drawn from the seed). Every ``eval_every`` steps the detector is scored on the dev documents
(exact character spans); the best weights are kept in ``OUT/.train/best`` and become the pipeline.
At most three copies of the weights are on disk at any time (best, last, one step checkpoint); when the run
ends only the pipeline's remains.

The output folder is a spaCy pipeline (``spacy.load(OUT)``): the biomedical tokenizer and ``linker_tagger``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.mentions.features import SubwordFeatures
from linker.train.annotated import AnnotatedDoc, DetectorData, save_pipeline_into, training_docs

log = logging.getLogger(__name__)

STATE_DIR, BEST, SETTINGS, RESULT = ".train", "best", "settings.json", "result.json"
IGNORE = -100


@dataclass
class TaggerConfig(DetectorData):
    base_model: str | None = None
    #: keep the base model's first *layers* transformer layers (None: all): a shallower detector runs faster
    layers: int | None = None
    epochs: int = 3
    steps: int | None = None
    minutes: float | None = 25.0
    batch_size: int = 16
    max_length: int = 128
    stride: int = 32
    lr: float = 5e-5
    eval_every: int = 200
    amp: str = "auto"
    device: str | None = None
    threads: int | None = None
    progress_bar: bool = True
    #: sub-word features (:mod:`linker.mentions.features`): the word's shape, and with ``lexicon`` (an index
    #: folder or an ontology file) whether a dictionary name is found there
    shape: bool = True
    lexicon: str | None = None

    def feature_kinds(self) -> tuple[str, ...]:
        return (("shape",) if self.shape else ()) + (("lexicon",) if self.lexicon else ())


def span_labels(offsets: Sequence[tuple[int, int]], spans: Sequence[Any], label_ids: dict[str, int],
                unknown: Sequence[tuple[int, int]] = ()) -> list[int]:
    """The BIO label id of each sub-word: ``B-`` at a span's first sub-word, ``I-`` inside, ``O`` outside,
    and no label (ignored by the loss) where it overlaps an *unknown* range outside every span."""
    out = [label_ids["O"]] * len(offsets)
    for begin, finish in unknown:
        for i, (start, end) in enumerate(offsets):
            if start < finish and begin < end:
                out[i] = IGNORE
    for span in spans:
        first = True
        for i, (start, end) in enumerate(offsets):
            if end <= span.start or start >= span.end or end <= start:
                continue
            out[i] = label_ids[("B-" if first else "I-") + span.label]
            first = False
    return out


Example = tuple[list[int], list[int], dict[str, list[int]]]


def _windows(docs: Sequence[AnnotatedDoc], tokenizer: Any, label_ids: dict[str, int], max_length: int,
             stride: int, features: SubwordFeatures | None) -> list[Example]:
    """(sub-word ids, BIO label ids, feature ids) of every window, special tokens included."""
    from linker.mentions.transformer import encode_text, windows

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    out = []
    for doc in docs:
        ids, offsets = encode_text(tokenizer, doc.text)
        labels = span_labels(offsets, doc.spans, label_ids, doc.unknown)
        feats = features.ids(doc.text, offsets) if features is not None else {}
        for start, end in windows(len(ids), max_length - 2, stride):
            out.append(([cls, *ids[start:end], sep], [IGNORE, *labels[start:end], IGNORE],
                        {kind: [0, *row[start:end], 0] for kind, row in feats.items()}))
    return out


def _layers(location: Any, layers: int | None) -> dict[str, int]:
    """``from_pretrained`` options that keep the first *layers* layers of the base model at *location* (transformers
    then loads only their weights); a depth the base model does not have is an error, not new random layers."""
    if layers is None:
        return {}
    from transformers import AutoConfig

    have = getattr(AutoConfig.from_pretrained(str(location)), "num_hidden_layers", None)
    if have is None:
        raise LinkerError(f"--layers {layers}: the base model {location} does not say how many layers it has; "
                          "leave --layers out")
    if not 1 <= layers <= have:
        raise LinkerError(f"--layers {layers}: the base model {location} has {have} layers; keep 1 to {have}")
    return {"num_hidden_layers": layers}


def _plan(n_windows: int, epochs: int, batch_size: int, seed: int) -> list[list[int]]:
    """Batches of window numbers for every epoch, each epoch shuffled from (seed, epoch)."""
    batches = []
    for epoch in range(epochs):
        order = list(range(n_windows))
        random.Random(seed * 7919 + epoch).shuffle(order)
        batches += [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return batches


def span_scores(predicted: Sequence[Sequence[tuple[int, int, str]]], docs: Sequence[AnnotatedDoc]) -> dict[str, float]:
    """Exact-span micro P/R/F1 (label included)."""
    tp = n_pred = n_gold = 0
    for spans, doc in zip(predicted, docs):
        pred = set(spans)
        gold = {(s.start, s.end, s.label) for s in doc.spans}
        tp += len(pred & gold)
        n_pred += len(pred)
        n_gold += len(gold)
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"ents_p": p, "ents_r": r, "ents_f": 2 * p * r / (p + r) if p + r else 0.0}


def train_tagger(out: str | os.PathLike[str], config: TaggerConfig) -> dict[str, Any]:
    """Train (or resume) the transformer detector into *out*; returns the best dev scores and the run's state."""
    from tqdm import tqdm

    if config.max_length < 16 or not 0 <= config.stride < config.max_length // 2:
        raise LinkerError(f"--max-length {config.max_length} with a stride of {config.stride}: use at least 16 "
                          "sub-words and a stride under half of them")
    out = Path(out)
    state_dir = out / STATE_DIR
    setup = tqdm(total=4, desc="setting up the detector", unit="stage", disable=not config.progress_bar)
    settings = {k: v for k, v in asdict(config).items() if k not in {"steps", "minutes", "progress_bar", "device",
                                                                   "threads", "eval_every"}}
    if (state_dir / SETTINGS).exists():
        previous = json.loads((state_dir / SETTINGS).read_text())
        differ = [k for k in settings if k not in config.unused_settings() and previous.get(k) != settings[k]]
        if differ:
            raise LinkerError(f"{out} holds a detector run with other settings ({', '.join(differ)}); use the same "
                              "settings to resume, or another --out")
    elif out.exists() and any(out.iterdir()):
        raise LinkerError(f"{out} exists and is not a detector run; choose an empty or new --out folder")
    if (state_dir / RESULT).exists():
        log.info("detector run in %s is complete", out)
        return json.loads((state_dir / RESULT).read_text())
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from linker.encoders import resolve_model
    from linker.mentions.features import feature_model, lexicon_names
    from linker.mentions.transformer import TransformerTagger, bio_labels
    from linker.train.loop import Budget, PhaseConfig, run_phase

    setup.set_postfix_str("reading corpora")
    train_docs, dev_docs, stats = training_docs(config)
    entity_labels = sorted({s.label for d in train_docs for s in d.spans})
    if not entity_labels:
        raise LinkerError(f"{', '.join(config.corpora)}: no annotated span to learn from")
    setup.update()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    setup.set_postfix_str("loading the base model")
    _, location, _ = resolve_model(config.base_model)
    labels = bio_labels(entity_labels)
    label_ids = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(str(location))
    depth = _layers(location, config.layers)
    net = AutoModelForTokenClassification.from_pretrained(
        str(location), num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_ids, **depth)
    features = None
    if config.feature_kinds():
        setup.set_postfix_str("reading the lexicon" if config.lexicon else "adding features")
        features = SubwordFeatures(config.feature_kinds(), lexicon_names(config.lexicon) if config.lexicon else ())
        net = feature_model(net, features.kinds)
    net = net.to(device)
    setup.update()
    setup.set_postfix_str("tokenizing")
    examples = _windows(train_docs, tokenizer, label_ids, config.max_length, config.stride, features)
    plan = _plan(len(examples), config.epochs, config.batch_size, config.seed)
    setup.update()
    tagger = TransformerTagger(None, max_length=config.max_length, stride=config.stride, device=device,  # type: ignore[arg-type]
                               precision=config.amp, batch_size=32)
    tagger._model, tagger._tokenizer, tagger._features = net, tokenizer, features
    tagger._labels = [net.config.id2label[i] for i in range(net.config.num_labels)]
    best_file = state_dir / "best.json"
    best: dict[str, Any] | None = json.loads(best_file.read_text()) if best_file.exists() else None
    setup.update()
    setup.close()
    log.info("detector: %d training documents (%d windows of %d sub-words, %d steps planned), %d dev documents, "
             "labels %s, %s", len(train_docs), len(examples), config.max_length, len(plan), len(dev_docs),
             ", ".join(entity_labels), device)

    def collate(batch: list[int]) -> dict[str, torch.Tensor]:
        width = max(len(examples[i][0]) for i in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        target = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        feats = {kind: torch.zeros((len(batch), width), dtype=torch.long) for kind in examples[batch[0]][2]}
        for row, i in enumerate(batch):
            window, tags, window_feats = examples[i]
            ids[row, :len(window)] = torch.tensor(window)
            target[row, :len(tags)] = torch.tensor(tags)
            mask[row, :len(window)] = 1
            for kind, values in window_feats.items():
                feats[kind][row, :len(values)] = torch.tensor(values)
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": target.to(device),
                **{f"{kind}_ids": t.to(device) for kind, t in feats.items()}}

    def loss_fn(batch: list[int]) -> torch.Tensor:
        return net(**collate(batch)).loss

    def validate() -> dict[str, Any]:
        nonlocal best
        net.eval()
        try:
            scores = span_scores(tagger.predict_spans([d.text for d in dev_docs]), dev_docs)
        finally:
            net.train()
        if best is None or scores["ents_f"] > best["ents_f"]:
            tmp = state_dir / "best.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            net.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if features is not None:
                features.save(tmp)
            if (state_dir / BEST).exists():
                shutil.rmtree(state_dir / BEST)
            tmp.rename(state_dir / BEST)
            best = {**scores}
            best_file.write_text(json.dumps(best) + "\n")
        return scores

    phase = PhaseConfig(name="detector", lr=config.lr, warmup=0.1, checkpoint_every=config.eval_every, keep=1,
                        amp=config.amp, budget=Budget(steps=config.steps, minutes=config.minutes),
                        progress_bar=config.progress_bar)
    state = run_phase(net, plan, loss_fn, config=phase, folder=state_dir / "checkpoints",
                      log_path=state_dir / "log.jsonl", device=device, validate=validate)
    result = {"best": best, "steps": state["step"], "seconds": round(state["seconds"], 1),
              "planned_steps": len(plan)}
    _write_pipeline(out, state_dir / BEST, config, best, state, stats.as_dict())
    (state_dir / RESULT).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(state_dir / "checkpoints", ignore_errors=True)  # last.pt too: the run is complete
    shutil.rmtree(state_dir / BEST, ignore_errors=True)  # copied into the pipeline
    return result


def _write_pipeline(out: Path, best_model: Path, config: TaggerConfig, best: dict[str, Any] | None,
                    state: dict[str, Any], stats: dict[str, int]) -> None:
    """OUT as a spaCy pipeline around the best weights (the checkpoints stay until this succeeds, so a crash
    here resumes)."""
    import spacy

    import linker.mentions.transformer  # noqa: F401 - registers linker_tagger
    from linker.mentions.tokenizer import biomedical_tokenizer

    nlp = biomedical_tokenizer(spacy.blank("en"))
    tagger = nlp.add_pipe("linker_tagger", config={"max_length": config.max_length, "stride": config.stride})
    tagger.model_path = str(best_model)  # copied into the pipeline folder by to_disk
    nlp.meta["name"] = "mention_detector"
    nlp.meta["linker_detector"] = {"kind": "transformer", "best": best, "steps": state["step"],
                                   "seconds": round(state["seconds"], 1), "corpus": stats,
                                   "settings": {k: v for k, v in asdict(config).items() if k != "progress_bar"}}
    save_pipeline_into(nlp, out, out / STATE_DIR / "pipeline.tmp")
