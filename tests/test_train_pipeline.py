"""linker train-pipeline with a given detector and embedding model: index, dev sweep, one spaCy folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy
from click.testing import CliRunner

from linker.cli import cli
from linker.encoders import default_model_path
from linker.train.mentions import DetectorConfig, train_detector


@pytest.mark.slow
def test_train_pipeline_writes_a_standalone_pipeline(data_dir: Path, tmp_path: Path) -> None:
    corpus = str(data_dir / "mini_corpus.docs.jsonl")
    detector = tmp_path / "detector"
    train_detector(detector, DetectorConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=60,
                                            minutes=None, eval_every=20, width=32, embed_rows=500,
                                            progress_bar=False))
    out = tmp_path / "pipe"
    result = CliRunner().invoke(cli, ["-q", "train-pipeline", str(data_dir / "mini.obo"), "--corpus", corpus,
                                      "--dev", corpus, "--out", str(out), "--detector", str(detector),
                                      "--model", str(default_model_path())])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "linker_training.json").read_text())
    assert len(report["sweep"]) == 16 and report["chosen"] in [row["settings"] for row in report["sweep"]]
    # spaCy's ner gives its spans no confidence: detector_confidence is not swept for it
    assert all("detector_confidence" not in row["settings"] for row in report["sweep"])
    assert not (out / ".work" / "index").exists()
    moved = tmp_path / "moved"
    out.rename(moved)  # the index and its model live inside the folder
    nlp = spacy.load(moved)
    assert nlp.pipe_names == ["tok2vec", "ner", "concept_linker"]
    linker = nlp.get_pipe("concept_linker")
    assert linker.threshold == report["chosen"]["threshold"] and linker.sources == report["chosen"]["sources"]
    assert linker.discourse == report["chosen"]["discourse"]
    doc = nlp("The boy had seizures and short stature since birth.")
    assert ("seizures", "HP:0001250") in {(e.text, e.kb_id_) for e in doc.ents}
    assert report["memory"] and linker.memory is not None  # the corpus's mentions, inside the moved folder
    assert linker.memory.lookup("short stature") == ("HP:0004322",)
    assert Path(linker.memory_path).parent == moved / "concept_linker"


@pytest.mark.parametrize(("lexicon", "kind", "layers"), [(True, "transformer", None), (False, "transformer", 3),
                                                      (True, "cnn", None)])
def test_pipeline_trains_the_measured_detector(data_dir: Path, tmp_path: Path, monkeypatch, lexicon: bool,
                                               kind: str, layers: int | None) -> None:
    """Without --detector the pipeline trains the transformer tagger with the settings of the measured figures
    and the ontology as its lexicon (or spaCy's ner with --detector-kind cnn)."""
    import linker.train.mentions as cnn_module
    import linker.train.tagger as tagger_module
    from linker.train.pipeline import DETECTOR, PipelineConfig, _detector

    seen: list[object] = []
    monkeypatch.setattr(tagger_module, "train_tagger", lambda out, config: seen.append(config))
    monkeypatch.setattr(cnn_module, "train_detector", lambda out, config: seen.append(config))
    corpus = str(data_dir / "mini_corpus.docs.jsonl")
    ontology = str(data_dir / "mini.obo")
    cfg = PipelineConfig(ontology=ontology, corpora=[corpus], dev=[corpus], out=str(tmp_path), label="Phenotype",
                         detector_kind=kind, lexicon=lexicon, detector_minutes=7.0, detector_layers=layers,
                         progress=False)
    assert _detector(cfg, tmp_path) == str(tmp_path / "detector")
    (config,) = seen
    assert config.corpora == [corpus] and config.label == "Phenotype" and config.minutes == 7.0
    if kind == "transformer":
        assert isinstance(config, tagger_module.TaggerConfig)
        assert {k: getattr(config, k) for k in DETECTOR} == DETECTOR
        assert config.lexicon == (ontology if lexicon else None) and config.shape and config.layers == layers
    else:
        assert isinstance(config, cnn_module.DetectorConfig)


@pytest.mark.slow
def test_refit_trains_the_final_detector_and_memory_on_the_dev_documents_too(data_dir: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """The sweep runs with the detector and memory of the corpora alone; with refit the folder holds a detector
    trained again on corpora + dev, and a memory that knows the dev documents' mentions."""
    import dataclasses

    import linker.train.mentions as cnn_module
    from linker.train.pipeline import PipelineConfig, train_pipeline

    def split(kind: str) -> tuple[str, str]:
        rows = (data_dir / f"mini_corpus.{kind}.jsonl").read_text().splitlines(keepends=True)
        first = {"c1", "c2", "c3", "c4", "c5"}
        paths = []
        for name, in_first in (("train", True), ("dev", False)):
            path = tmp_path / f"{name}.{kind}.jsonl"
            path.write_text("".join(r for r in rows if (json.loads(r)["doc_id"] in first) == in_first))
            paths.append(str(path))
        return paths[0], paths[1]

    (train, dev), _ = split("docs"), split("mentions")
    real, seen = cnn_module.train_detector, []

    def small(out: Path, config: DetectorConfig) -> object:
        seen.append((Path(out).name, list(config.corpora)))
        return real(out, dataclasses.replace(config, dev=config.corpora[:1], steps=40, minutes=None, eval_every=20,
                                             width=32, embed_rows=500))

    monkeypatch.setattr(cnn_module, "train_detector", small)
    sweeps: list[str | None] = []
    import linker.train.pipeline as pipeline_module
    choose = pipeline_module.choose_settings

    def spy(*args, **kwargs):  # the memory the sweep runs with: the corpora's alone
        from linker.linking.memory import MentionMemory
        sweeps.append(MentionMemory.load(kwargs["fixed"]["memory"]).lookup("tiredness"))
        return choose(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "choose_settings", spy)
    cfg = PipelineConfig(ontology=str(data_dir / "mini.obo"), corpora=[train], dev=[dev], out=str(tmp_path / "pipe"),
                         label="Phenotype", detector_kind="cnn", model=str(default_model_path()), refit=True,
                         sweep={"threshold": (0.8,), "sources": (["upstream"],), "discourse": (False,)}, progress=False)
    out = train_pipeline(cfg)
    assert seen == [("detector", [train]), ("detector-refit", [train, dev])]
    assert sweeps == [None]
    report = json.loads((out / "linker_training.json").read_text())
    assert report["refit"] and report["detector"] == str(out / ".work" / "detector-refit")
    linker = spacy.load(out).get_pipe("concept_linker")
    assert linker.memory.lookup("tiredness") == ("HP:0012378",) and linker.memory.lookup("fever") == ("HP:0001945",)


@pytest.mark.slow
def test_the_sweep_detects_once_and_scores_each_setting_as_the_whole_pipeline(data_dir: Path, tmp_path: Path,
                                                                            mini_index_dir: Path,
                                                                            monkeypatch) -> None:
    """choose_settings runs the detector once per corpus and detector setting and each linker setting on copies
    of its Docs; every row's figures are those of the whole pipeline with those settings, run from text."""
    import linker.end_to_end as e2e
    from linker.defaults import open_index
    from linker.evaluate import index_mapper
    from linker.gold import read_mentions
    from linker.train.pipeline import choose_settings
    from linker.train.tagger import TaggerConfig, train_tagger

    corpus = str(data_dir / "mini_corpus.docs.jsonl")
    tagger = tmp_path / "tagger"
    train_tagger(tagger, TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=12, minutes=None,
                                      epochs=30, batch_size=4, eval_every=6, max_length=32, stride=8, lr=1e-4,
                                      threads=1, progress_bar=False))
    detections: list[str] = []
    detect = e2e.detect
    monkeypatch.setattr(e2e, "detect", lambda nlp, documents: detections.append("x") or detect(nlp, documents))
    sweep = {"threshold": (0.5, 0.9), "sources": (["upstream"], ["upstream", "dictionary"])}
    chosen, chosen_detector, rows = choose_settings(str(tagger), mini_index_dir, [corpus], sweep=sweep,
                                                    detector_sweep={"outside_penalty": (0.0, 3.0)})
    assert len(detections) == 2 and len(rows) == 8
    assert (chosen, chosen_detector) in [(r["settings"], r["detector_settings"]) for r in rows]
    index = open_index(mini_index_dir)
    mapper = index_mapper(index.termdb)
    gold = read_mentions(str(data_dir / "mini_corpus.mentions.jsonl"))
    for penalty in (0.0, 3.0):
        folder = tmp_path / f"penalty-{penalty}"
        spacy.load(tagger, config={"components": {"linker_tagger": {"outside_penalty": penalty}}}).to_disk(folder)
        for row in (r for r in rows if r["detector_settings"] == {"outside_penalty": penalty}):
            whole = e2e.evaluate_end_to_end(corpus, gold, index, mapper, row["settings"], pipeline=folder)
            assert row["strict_f1"][corpus] == whole["strict"]["all"]["f1"]
            assert row["document_f1"][corpus] == whole["document"]["f1"]
