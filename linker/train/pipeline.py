"""One trained pipeline: the embedding recipe, the mention detector, the index, thresholds chosen on dev.

``train_pipeline(ontology, corpora, dev, out)`` runs, each stage resumable and skipped when done:

1. ``OUT/.work/embedding`` — :func:`linker.train.recipe.train` on the ontology and the corpora's mentions,
   with the settings that gave the project's best figures (:data:`RECIPE`); the index embeds with its
   phase-2 model, which tested better than phase 3's pick in every corpus run so far (docs/training.md);
2. ``OUT/.work/detector`` — the mention detector on the corpora: by default the transformer tagger
   (:func:`linker.train.tagger.train_tagger`) with the settings of the measured figures (:data:`DETECTOR`) and
   the ontology's names as its lexicon feature; ``detector_kind="cnn"`` trains spaCy's ``ner`` instead;
3. ``OUT/concept_linker/index`` — the index of the ontology under the trained model, and the mention memory
   of the corpora's gold mentions (:mod:`linker.linking.memory`; ``memory=False`` leaves it out);
4. the linker's settings (:data:`SWEEP`; ``detector_confidence`` only for the transformer detector, whose spans
   carry a confidence) and the transformer detector's ``outside_penalty`` (:data:`DETECTOR_SWEEP`) chosen on the
   dev documents, by strict mention-level F1 summed over the dev corpora, every figure of the sweep recorded;
   the detector runs once per dev corpus and detector setting;
5. ``OUT`` — a spaCy pipeline folder: tokenizer, detector, ``concept_linker``, the chosen settings in
   its ``config.cfg``, the index and the memory inside the folder. ``spacy.load(OUT)`` and ``--pipeline OUT``
   use it as is.

``detector=`` or ``model=`` reuse an already trained detector or embedding model instead of stages 1–2.

``refit=True`` (the last fit of a system whose settings were chosen): once the settings are chosen on dev, the
detector (``OUT/.work/detector-refit``, same kind, settings and budget; a given one stays) and the mention
memory are trained again on the corpora and the dev documents together, as shared-task systems are refitted
on train + dev before they meet the test set. The figures of such a pipeline on those dev documents are no longer held out.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linker.errors import LinkerError
from linker.train.annotated import mentions_path, save_pipeline_into

if TYPE_CHECKING:
    from linker.linking.memory import MentionMemory

log = logging.getLogger(__name__)

WORK, REPORT, SHIPPED_MODEL = ".work", "linker_training.json", "model"
#: the embedding recipe's settings of the best corpus figures (docs/training.md, "re-mined negatives")
RECIPE: dict[str, Any] = {"minutes": 45.0, "epochs": 2, "lr": 2e-4, "max_length": 48, "checkpoint_every": 500,
                          "remine_every": 1000, "val_fraction": 0.005, "test_fraction": 0.005,
                          "phases": ("contrastive", "distill")}
#: the transformer detector's settings of the measured figures (docs/detector.md)
DETECTOR: dict[str, Any] = {"epochs": 6, "lr": 1e-4, "eval_every": 100}
#: the linker settings tried on dev (every combination)
SWEEP: dict[str, Sequence[Any]] = {"threshold": (0.7, 0.8, 0.85, 0.9), "detector_confidence": (0.0, 0.9, 0.95, 0.97),
                                   "sources": (["upstream"], ["upstream", "dictionary"]),
                                   "discourse": (False, True)}
#: the transformer detector's settings tried on dev with each of those (:mod:`linker.mentions.transformer`)
DETECTOR_SWEEP: dict[str, Sequence[Any]] = {"outside_penalty": (0.0, 0.5, 1.0)}
#: linker settings that act on the transformer detector's span confidences alone (left out of a cnn's sweep)
CONFIDENCE_SETTINGS = ("detector_confidence",)
TAGGER = "linker_tagger"


@dataclass
class PipelineConfig:
    ontology: str
    corpora: list[str]
    dev: list[str]
    out: str
    ontology_format: str | None = None
    types: list[str] = field(default_factory=list)
    exclude_types: list[str] = field(default_factory=list)
    label: str | None = None
    alt_ids: list[str] = field(default_factory=list)
    detector: str | None = None
    model: str | None = None
    embedding_minutes: float = RECIPE["minutes"]
    detector_minutes: float = 25.0
    detector_kind: str = "transformer"
    #: the transformer detector's depth: the base model's first layers kept (None: all)
    detector_layers: int | None = None
    lexicon: bool = True
    memory: bool = True
    refit: bool = False
    seed: int = 0
    sweep: dict[str, Sequence[Any]] = field(default_factory=lambda: dict(SWEEP))
    detector_sweep: dict[str, Sequence[Any]] = field(default_factory=lambda: dict(DETECTOR_SWEEP))
    progress: bool = True


def _mention_files(corpora: Sequence[str]) -> list[str]:
    """The gold mentions the embedding recipe trains on: beside a docs JSONL, or the PubTator file itself."""
    return [str(mentions_path(Path(c))) if c.endswith(".jsonl") else c for c in corpora]


def _embedding(cfg: PipelineConfig, work: Path) -> str:
    if cfg.model is not None:
        return cfg.model
    from linker.sources import Source
    from linker.train import TrainConfig, train

    out = work / "embedding"
    types = tuple(t for t in cfg.types) or None
    config = TrainConfig(seed=cfg.seed, corpora=tuple(_mention_files(cfg.corpora)), mention_types=types,
                         **{**RECIPE, "minutes": cfg.embedding_minutes}, progress=cfg.progress)
    train([Source.open(cfg.ontology, cfg.ontology_format)], out, config)
    phase2 = out / "phase2"
    return str(phase2 if phase2.exists() else out)


def _fit_corpora(cfg: PipelineConfig, refit: bool) -> list[str]:
    """What the detector and the memory learn from: the corpora, and with ``refit`` the dev documents too."""
    return [*cfg.corpora, *(cfg.dev if refit else ())]


def _detector(cfg: PipelineConfig, work: Path, *, refit: bool = False) -> str:
    """The detector trained on :func:`_fit_corpora` (a given detector stays as it is)."""
    if cfg.detector is not None:
        return cfg.detector
    out = work / ("detector-refit" if refit else "detector")
    data = {"corpora": _fit_corpora(cfg, refit), "types": list(cfg.types), "exclude_types": list(cfg.exclude_types),
            "label": cfg.label, "seed": cfg.seed, "steps": None, "minutes": cfg.detector_minutes,
            "progress_bar": cfg.progress}
    if cfg.detector_kind == "cnn":
        from linker.train.mentions import DetectorConfig, train_detector

        train_detector(out, DetectorConfig(**data))
    elif cfg.detector_kind == "transformer":
        from linker.train.tagger import TaggerConfig, train_tagger

        train_tagger(out, TaggerConfig(**data, **DETECTOR, layers=cfg.detector_layers,
                                       lexicon=cfg.ontology if cfg.lexicon else None))
    else:
        raise LinkerError(f"detector kind {cfg.detector_kind!r}: use transformer or cnn")
    return str(out)


def _index(cfg: PipelineConfig, model: str, folder: Path) -> Path:
    """The index under the trained model, with the model copied inside it (``encoder.model_dir`` in meta.json),
    so that the pipeline folder holding the index stands alone and can be moved."""
    from linker.build import build_index
    from linker.meta import META_FILE, write_json_atomic
    from linker.sources import Source

    out = build_index(Source.open(cfg.ontology, cfg.ontology_format), folder, model=model, progress=cfg.progress)
    meta = json.loads((out / META_FILE).read_text())
    if meta["encoder"].get("model_dir") != SHIPPED_MODEL:
        target = out / SHIPPED_MODEL
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model, target, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
        meta["encoder"]["model_dir"] = SHIPPED_MODEL
        write_json_atomic(out / META_FILE, meta)
    return out


def _memory(cfg: PipelineConfig, index_dir: Path, path: Path, *, refit: bool = False) -> MentionMemory | None:
    """The mention memory of the gold mentions of :func:`_fit_corpora`, also saved in *path* for the dev sweep
    (None when ``memory`` is off)."""
    if not cfg.memory:
        return None
    from linker.defaults import open_index
    from linker.linking.memory import build_memory

    memory = build_memory(_mention_files(_fit_corpora(cfg, refit)), open_index(index_dir).termdb, alt_ids=cfg.alt_ids,
                          types=cfg.types, exclude_types=cfg.exclude_types)
    memory.save(path)
    return memory


def choose_settings(detector: str, index_dir: str | os.PathLike[str], dev: Sequence[str], *,
                    sweep: dict[str, Sequence[Any]], alt_ids: Sequence[str] = (), types: Sequence[str] = (),
                    exclude_types: Sequence[str] = (), fixed: dict[str, Any] | None = None,
                    detector_sweep: dict[str, Sequence[Any]] | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The ``concept_linker`` settings of *sweep* and the detector settings of *detector_sweep* (for a
    ``linker_tagger`` detector; spaCy's ``ner`` has none, nor span confidences for :data:`CONFIDENCE_SETTINGS`)
    with the best strict F1 summed over the *dev* corpora,
    and every row of the sweep; *fixed* linker settings hold in every row. The detector runs once per corpus
    and detector setting, each linker setting on copies of its Docs (:mod:`linker.end_to_end`); searches are
    cached across settings."""
    import spacy

    from linker.defaults import open_index
    from linker.end_to_end import annotated_documents, detect, evaluate_detected
    from linker.evaluate import index_mapper
    from linker.gold import read_mentions

    index = open_index(index_dir)
    mapper = index_mapper(index.termdb, alt_ids)
    golds = []
    for d in dev:
        gold = [m for m in read_mentions(_mention_files([d])[0], list(types) or None) if m.type not in exclude_types]
        golds.append((d, annotated_documents(d, gold), gold))
    tagger = _has_tagger(detector)
    tuning = dict(detector_sweep or {}) if tagger else {}
    if not tagger:
        sweep = {k: v for k, v in sweep.items() if k not in CONFIDENCE_SETTINGS}
    rows: list[dict[str, Any]] = []
    for detector_values in itertools.product(*tuning.values()):
        detector_settings = dict(zip(tuning, detector_values))
        nlp = spacy.load(detector, config=_detector_config(detector_settings))
        detected = {d: detect(nlp, documents) for d, documents, _ in golds}
        del nlp
        for values in itertools.product(*(sweep[k] for k in sweep)):
            settings = dict(zip(sweep, values))
            row: dict[str, Any] = {"settings": settings, "detector_settings": detector_settings,
                                   "strict_f1": {}, "document_f1": {}}
            for d, documents, gold in golds:
                result = evaluate_detected(detected[d], documents, gold, index, mapper, {**settings, **(fixed or {})},
                                           pipeline=detector)
                row["strict_f1"][d] = result["strict"]["all"]["f1"]
                row["document_f1"][d] = result["document"]["f1"]
            row["total"] = sum(row["strict_f1"].values())
            log.info("dev %s %s: strict F1 %s", detector_settings or "", settings,
                     {Path(k).parent.name: round(v, 4) for k, v in row["strict_f1"].items()})
            rows.append(row)
    best = max(rows, key=lambda r: r["total"])
    return dict(best["settings"]), dict(best["detector_settings"]), rows


def _has_tagger(detector: str) -> bool:
    """Whether the detector folder's pipeline holds ``linker_tagger`` (the transformer detector)."""
    import spacy

    return TAGGER in spacy.util.load_config(Path(detector) / "config.cfg")["nlp"]["pipeline"]


def _detector_config(settings: dict[str, Any]) -> dict[str, Any]:
    """``spacy.load`` config overrides that give ``linker_tagger`` *settings*."""
    return {"components": {TAGGER: settings}} if settings else {}


def train_pipeline(cfg: PipelineConfig) -> Path:
    """Run every stage (see the module docstring) and return the pipeline folder."""
    import spacy

    import linker.component  # noqa: F401 - registers concept_linker

    out = Path(cfg.out)
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    if not cfg.dev:
        raise LinkerError("train-pipeline chooses its thresholds on annotated dev documents: give --dev")
    model = _embedding(cfg, work)
    detector = _detector(cfg, work)
    index_dir = _index(cfg, model, work / "index")
    memory_file = work / "index" / "memory.jsonl"
    memory = _memory(cfg, index_dir, memory_file)
    chosen, chosen_detector, rows = choose_settings(
        detector, index_dir, cfg.dev, sweep=cfg.sweep, alt_ids=cfg.alt_ids, types=cfg.types,
        exclude_types=cfg.exclude_types, fixed={"memory": str(memory_file) if memory is not None else None},
        detector_sweep=cfg.detector_sweep)
    log.info("chosen on dev: %s %s", chosen_detector or "", chosen)
    if cfg.refit:
        log.info("refit: the detector and the mention memory again, on the corpora and the dev documents")
        detector = _detector(cfg, work, refit=True)
        memory = _memory(cfg, index_dir, memory_file, refit=True)
    nlp = spacy.load(detector, config=_detector_config(chosen_detector))
    nlp.add_pipe("concept_linker", config={**chosen, "index": str(index_dir), "copy_index": True})
    component = nlp.get_pipe("concept_linker")
    component.set_memory(memory)  # saved inside the folder by to_disk, not referenced
    component.initialize()
    report = {"ontology": cfg.ontology, "corpora": cfg.corpora, "dev": cfg.dev, "embedding_model": model,
              "detector": detector, "chosen": chosen, "chosen_detector": chosen_detector, "sweep": rows, "recipe": RECIPE,
              "embedding_minutes": cfg.embedding_minutes, "detector_minutes": cfg.detector_minutes,
              "detector_kind": cfg.detector_kind if cfg.detector is None else "given",
              "detector_layers": cfg.detector_layers if cfg.detector is None else None,
              "lexicon": cfg.lexicon and cfg.detector is None, "memory": cfg.memory,
              "refit": cfg.refit}
    save_pipeline_into(nlp, out, work / "pipeline.tmp", {REPORT: json.dumps(report, indent=2) + "\n"})
    shutil.rmtree(work / "index")  # the pipeline holds its copy; the trained models stay for a rerun
    return out
