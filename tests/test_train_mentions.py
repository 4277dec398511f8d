"""The mention detector: annotated corpora in, a spaCy pipeline out; budget, resume, bounded checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import spacy
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import LinkerError
from linker.train.annotated import read_corpora, read_corpus
from linker.train.mentions import LAST, STATE_DIR, STATE_FILE, DetectorConfig, train_detector


def test_read_jsonl_corpus_pairs_docs_with_mentions(data_dir: Path) -> None:
    docs = read_corpus(data_dir / "mini_corpus.docs.jsonl")
    assert len(docs) == 10
    first = docs[0]
    assert [first.text[s.start:s.end] for s in first.spans] == ["seizures", "short stature"]
    assert {s.label for d in docs for s in d.spans} == {"Phenotype", "CompositeMention"}


def test_read_corpus_filters_and_relabels_types(data_dir: Path) -> None:
    docs, stats = read_corpora([data_dir / "mini_corpus.docs.jsonl"], types=["CompositeMention"], label="Disease")
    assert stats.spans == 1 and stats.dropped_type == 19
    assert [s.label for d in docs for s in d.spans] == ["Disease"]


def test_read_pubtator_corpus(data_dir: Path) -> None:
    docs = read_corpus(data_dir / "mini_e2e.pubtator")
    assert [d.doc_id for d in docs] == ["101", "102"]
    assert docs[1].text[docs[1].spans[1].start:docs[1].spans[1].end] == "Tiredness persisted"


def test_docs_jsonl_without_mentions_beside_is_a_clear_error(tmp_path: Path) -> None:
    lonely = tmp_path / "notes.docs.jsonl"
    lonely.write_text('{"doc_id": "1", "text": "fever"}\n')
    with pytest.raises(LinkerError, match="no mentions file"):
        read_corpus(lonely)
    other = tmp_path / "notes.jsonl"
    other.write_text('{"doc_id": "1", "text": "fever"}\n')
    with pytest.raises(LinkerError, match="NAME.docs.jsonl"):
        read_corpus(other)


def _config(data_dir: Path, **overrides: object) -> DetectorConfig:
    settings: dict[str, object] = {"corpora": [str(data_dir / "mini_corpus.docs.jsonl")],
                                   "dev": [str(data_dir / "mini_corpus.docs.jsonl")], "steps": 40, "minutes": None,
                                   "eval_every": 10, "width": 32, "embed_rows": 500, "progress_bar": False}
    settings.update(overrides)
    return DetectorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = Path(__file__).parent / "data"
    out = tmp_path_factory.mktemp("detector") / "det"
    train_detector(out, _config(data_dir, steps=60, label="Phenotype"))
    return out


def test_detector_is_a_spacy_pipeline_that_learned_its_corpus(detector: Path) -> None:
    nlp = spacy.load(detector)
    assert nlp.pipe_names == ["tok2vec", "ner"]
    found = {(e.text, e.label_) for e in nlp("The boy had seizures and short stature since birth.").ents}
    assert ("seizures", "Phenotype") in found
    meta = json.loads((detector / "meta.json").read_text())
    assert meta["linker_detector"]["labels"] == ["Phenotype"] and meta["linker_detector"]["steps"] == 60


def test_only_best_model_stays_after_training(detector: Path) -> None:
    assert not (detector / STATE_DIR / LAST).exists()
    left = sorted(p.name for p in (detector / STATE_DIR).iterdir())
    assert left == ["log.jsonl", STATE_FILE]


def test_resume_continues_to_a_larger_budget_and_a_finished_run_returns(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "det"
    first = train_detector(out, _config(data_dir, steps=20))
    assert first["step"] == 20
    again = train_detector(out, _config(data_dir, steps=20))
    assert again["step"] == 20 and len(again["scores"]) == len(first["scores"])
    more = train_detector(out, _config(data_dir, steps=30))
    assert more["step"] == 30
    steps = [r["step"] for r in more["scores"]]
    assert steps == sorted(steps) and steps[-1] == 30


def test_resume_with_other_settings_is_refused(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "det"
    train_detector(out, _config(data_dir, steps=10))
    with pytest.raises(LinkerError, match="seed"):
        train_detector(out, _config(data_dir, steps=10, seed=1))
    # the number of generated contexts matters only with weak labels: a run of annotated corpora made when its
    # default was another value resumes (a pipeline's finished detector stage is not trained again)
    assert train_detector(out, _config(data_dir, steps=10, weak_contexts=3))["step"] == 10


def test_out_folder_with_other_files_is_refused(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(LinkerError, match="not a detector run"):
        train_detector(tmp_path, _config(data_dir, steps=10))


def test_cli_train_mentions(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "det"
    result = CliRunner().invoke(cli, ["-q", "train-mentions", str(data_dir / "mini_corpus.docs.jsonl"), "--out",
                                      str(out), "--steps", "12", "--eval-every", "6", "--width", "32",
                                      "--embed-rows", "500", "--label", "Phenotype", "--kind", "cnn"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 12 and (out / "config.cfg").exists()


def test_detector_in_front_of_the_linker(detector: Path, mini_index_dir: Path) -> None:
    from linker.pipeline import doc_mentions, load_pipeline

    nlp = load_pipeline(mini_index_dir, pipeline=detector)
    assert nlp.pipe_names == ["tok2vec", "ner", "concept_linker"]
    mentions = doc_mentions(nlp("The boy had seizures and short stature since birth."))
    linked = {(m.text, m.concept_id) for m in mentions}
    assert ("seizures", "HP:0001250") in linked and ("short stature", "HP:0004322") in linked


def test_a_folder_that_is_not_a_pipeline_is_a_clear_error(tmp_path: Path, mini_index_dir: Path) -> None:
    from linker.pipeline import load_pipeline

    with pytest.raises(LinkerError, match="not a spaCy pipeline"):
        load_pipeline(mini_index_dir, pipeline=tmp_path)


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformer detector fine-tuned on the fixture corpus (the packaged MiniLM; a few seconds)."""
    from linker.train.tagger import TaggerConfig, train_tagger

    data_dir = Path(__file__).parent / "data"
    out = tmp_path_factory.mktemp("tagger") / "tagger"
    corpus = str(data_dir / "mini_corpus.docs.jsonl")
    train_tagger(out, TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=30, minutes=None,
                                   epochs=30, batch_size=4, eval_every=10, max_length=32, stride=8, lr=1e-4, threads=1,
                                   progress_bar=False))
    return out


@pytest.mark.slow
def test_transformer_detector_learns_its_corpus_and_cleans_up(tagger: Path) -> None:
    from linker.train.tagger import STATE_DIR as TAGGER_STATE

    nlp = spacy.load(tagger)
    assert nlp.pipe_names == ["linker_tagger"]
    found = {(e.text, e.label_) for e in nlp("The boy had seizures and short stature since birth.").ents}
    assert {("seizures", "Phenotype"), ("short stature", "Phenotype")} <= found
    assert sorted(p.name for p in (tagger / TAGGER_STATE).iterdir()) == ["best.json", "log.jsonl", "result.json",
                                                                         "settings.json"]


@pytest.mark.slow
def test_transformer_detector_finished_run_returns_its_result(tagger: Path) -> None:
    from linker.train.tagger import TaggerConfig, train_tagger

    corpus = str(Path(__file__).parent / "data" / "mini_corpus.docs.jsonl")
    result = train_tagger(tagger, TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=30,
                                               minutes=None, epochs=30, batch_size=4, eval_every=10, max_length=32, stride=8,
                                               lr=1e-4, threads=1, progress_bar=False))
    assert result["steps"] == 30
    again = train_tagger(tagger, TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=30,
                                              minutes=None, epochs=30, batch_size=4, eval_every=10, max_length=32,
                                              stride=8, lr=1e-4, threads=1, progress_bar=False, weak_contexts=2))
    assert again == result  # weak_contexts does not matter without weak labels


@pytest.mark.slow
def test_transformer_detector_resumes_after_a_crash_and_refuses_other_settings(tmp_path: Path, monkeypatch) -> None:
    import linker.train.tagger as tagger_module
    from linker.train.tagger import TaggerConfig, train_tagger

    corpus = str(Path(__file__).parent / "data" / "mini_corpus.docs.jsonl")
    config = TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=20, minutes=None, epochs=30,
                          batch_size=4, eval_every=5, max_length=32, stride=8, lr=1e-4, threads=1, progress_bar=False)
    real, calls = tagger_module.span_scores, []

    def crash_on_second(*args: object) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while validating step 10: the last checkpoint is step 5
        return real(*args)

    monkeypatch.setattr(tagger_module, "span_scores", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        train_tagger(tmp_path / "t", config)
    monkeypatch.setattr(tagger_module, "span_scores", real)
    with pytest.raises(LinkerError, match="seed"):
        train_tagger(tmp_path / "t", TaggerConfig(**{**config.__dict__, "seed": 3}))
    result = train_tagger(tmp_path / "t", config)
    assert result["steps"] == 20
    logged = [json.loads(line)["step"] for line in (tmp_path / "t" / ".train" / "log.jsonl").read_text().splitlines()]
    assert logged == [5, 10, 15, 20]
    assert spacy.load(tmp_path / "t").pipe_names == ["linker_tagger"]


def test_window_plan_covers_every_sub_word() -> None:
    from linker.mentions.transformer import decode_spans, windows

    assert windows(10, 20, 4) == [(0, 10)]
    spans = windows(25, 10, 4)
    assert spans[0] == (0, 10) and spans[-1][1] == 25
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # consecutive windows overlap
    tags = ["O", "B-D", "I-D", "O", "I-D", "B-D", "B-X"]
    offsets = [(0, 3), (4, 8), (8, 12), (13, 15), (16, 20), (21, 25), (26, 28)]
    assert decode_spans(tags, offsets) == [(4, 12, "D"), (16, 20, "D"), (21, 25, "D"), (26, 28, "X")]


def test_sentence_windows_end_where_sentences_do_and_share_nothing() -> None:
    from linker.mentions.transformer import TransformerTagger, sentence_ends, windows

    text = "Fever began. The boy had e.g. fits and seizures! Then rest. ok"
    offsets = [(m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]
    ends = sentence_ends(text, offsets)
    assert [text[offsets[i - 1][0]:offsets[i][1]] for i in ends] == [". The", "! Then"]  # not "e.g. fits" nor ". ok"
    plan = windows(40, 12, 4, [7, 11, 20, 30, 38])
    assert plan == [(0, 11), (11, 20), (20, 30), (30, 40)]  # each ends at the last sentence end it reaches
    assert windows(40, 12, 4, [2, 39]) == windows(40, 12, 4)  # no end in reach past half a window: as before
    with pytest.raises(LinkerError, match="windows='lines'"):
        TransformerTagger(spacy.blank("en"), windows="lines")


def test_a_long_text_is_encoded_without_the_tokenizer_s_length_warning(capfd: pytest.CaptureFixture[str]) -> None:
    """The detector reads a long text in windows: the tokenizer's "longer than the maximum" warning is noise."""
    from transformers import AutoTokenizer

    from linker.encoders import default_model_path
    from linker.mentions.transformer import encode_text

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    capfd.readouterr()
    ids, offsets = encode_text(tokenizer, "fever " * 700)
    assert len(ids) == len(offsets) == 700
    assert "sequence length" not in "".join(capfd.readouterr())


def test_excluded_types_are_left_out_before_the_label_renames_them(data_dir: Path) -> None:
    docs, stats = read_corpora([data_dir / "mini_corpus.docs.jsonl"], exclude_types=["CompositeMention"],
                               label="Disease")
    assert stats.spans == 19 and stats.dropped_type == 1
    assert all(s.label == "Disease" for d in docs for s in d.spans)


def test_annotate_and_evaluate_with_a_detector_pipeline(detector: Path, mini_index_dir: Path, data_dir: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    corpus = data_dir / "mini_corpus.docs.jsonl"
    result = CliRunner().invoke(cli, ["-q", "annotate", str(corpus), "-o", str(out), "--pipeline", str(detector),
                                      "--index", str(mini_index_dir), "-p", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10
    first = next(r for r in rows if r["doc_id"] == "c1")
    assert ("seizures", "HP:0001250") in {(m["text"], m["concept_id"]) for m in first["mentions"]}
    settings = json.loads(out.with_name(out.name + ".run.json").read_text())
    assert str(detector.resolve()) in settings["pipeline"]
    record = tmp_path / "e2e.json"
    result = CliRunner().invoke(cli, ["evaluate", str(data_dir / "mini_corpus.mentions.jsonl"), "--docs", str(corpus),
                                      "--pipeline", str(detector), "--index", str(mini_index_dir), "--json",
                                      str(record)])
    assert result.exit_code == 0, result.output
    e2e = json.loads(record.read_text())["end_to_end"]
    assert e2e["pipeline"] == str(detector) and e2e["strict"]["all"]["f1"] > 0.5
    assert 0.0 < e2e["document"]["f1"] <= 1.0 and "document concepts" in result.stdout


def test_viterbi_never_opens_a_span_with_inside() -> None:
    import numpy as np

    from linker.mentions.transformer import viterbi_tags

    labels = ["O", "B-D", "I-D", "B-X", "I-X"]
    # each row's own best: O, I-D (after O), I-D, I-X (after I-D), O
    logits = np.log(np.array([[0.9, 0.02, 0.04, 0.02, 0.02],
                              [0.3, 0.25, 0.35, 0.05, 0.05],
                              [0.1, 0.05, 0.8, 0.03, 0.02],
                              [0.1, 0.05, 0.35, 0.05, 0.45],
                              [0.9, 0.02, 0.04, 0.02, 0.02]]))
    assert list(logits.argmax(-1)) == [0, 2, 2, 4, 0]
    path = viterbi_tags(logits, labels)
    assert path == [0, 1, 2, 2, 0]  # B-D opens the span; I-X cannot follow I-D, so the span stays D
    assert viterbi_tags(np.zeros((0, 5)), labels) == []
    assert viterbi_tags(np.log(np.array([[0.1, 0.15, 0.55, 0.1, 0.1]])), labels) == [1]  # never I- first


@pytest.mark.slow
def test_onnx_backends_tag_as_torch_does(tagger: Path, tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    from linker.mentions.tagger_onnx import GRAPH

    monkeypatch.setenv("LINKER_CACHE", str(tmp_path / "cache"))
    texts = ["The boy had seizures and short stature since birth.", "Her fever resolved, but fatigue persisted."]

    def loaded(backend: str) -> Any:
        settings = {"backend": backend, "precision": "off"}  # torch in float32, as the export is
        component = spacy.load(tagger, config={"components": {"linker_tagger": settings}}).get_pipe("linker_tagger")
        component.initialize()
        return component

    torch_tagger, float_tagger, int8_tagger = loaded("torch"), loaded("onnx-float32"), loaded("onnx-int8")
    assert float_tagger.backend == "onnx-float32" and float_tagger._model is None  # no torch network kept

    def logits(component: Any, *batch: str) -> list[Any]:
        from linker.mentions.transformer import encode_text

        batch = batch or tuple(texts)
        encoded = [encode_text(component._tokenizer, t) for t in batch]
        features = [component._features.ids(t, offsets) if component._features is not None else {}
                    for t, (_, offsets) in zip(batch, encoded)]
        return component._logits([ids for ids, _ in encoded], features)

    for a, b in zip(logits(torch_tagger), logits(float_tagger)):
        assert np.allclose(a, b, atol=1e-3)
    assert int8_tagger.predict_spans(texts) == torch_tagger.predict_spans(texts)
    graphs = sorted((tmp_path / "cache" / "onnx").glob(f"tagger-*/{GRAPH}"))
    assert len(graphs) == 2  # one export per precision, reused by the next load
    stamp = [g.stat().st_mtime_ns for g in graphs]
    loaded("onnx-int8").predict_spans(texts[:1])
    assert [g.stat().st_mtime_ns for g in graphs] == stamp
    import torch

    assert loaded("auto").backend == ("torch" if torch.cuda.is_available() else "onnx-int8")
    one_by_one = [float_tagger.predict_spans([t])[0] for t in texts]
    assert float_tagger.predict_spans(texts) == one_by_one  # float32: a text's spans do not depend on its batch
    # int8: dynamic quantisation scales by the whole input, so each window runs alone and its logits are the
    # same bit for bit whatever it is batched (and padded) with
    for together, alone in zip(logits(int8_tagger), [logits(int8_tagger, t)[0] for t in texts]):
        assert np.array_equal(together, alone)
    with pytest.raises(LinkerError, match="backend='tpu'"):
        loaded("tpu")


def test_the_detector_s_tokenizer_is_read_without_transformers_and_splits_as_it() -> None:
    from transformers import AutoTokenizer

    from linker.encoders import default_model_path
    from linker.mentions.subwords import Subwords
    from linker.mentions.transformer import encode_text

    hf, fast = AutoTokenizer.from_pretrained(str(default_model_path())), Subwords.load(default_model_path())
    assert fast is not None
    assert (fast.cls_token_id, fast.sep_token_id, fast.pad_token_id) == (hf.cls_token_id, hf.sep_token_id,
                                                                         hf.pad_token_id)
    texts = ["Ménière’s disease, ﬁbrosis — naïve ½ α-thalassemia (HbH)", "", "IgA-nephropathy/ALS 4", "fever " * 700]
    for text in texts:
        assert encode_text(fast, text) == encode_text(hf, text)


@pytest.mark.slow
def test_a_detector_on_onnx_loads_without_torch_or_transformers(tagger: Path) -> None:
    import json
    import subprocess
    import sys

    texts = ["The boy had seizures and short stature since birth.", "Her fever resolved, but fatigue persisted."]
    settings = {"components": {"linker_tagger": {"backend": "onnx-float32"}}}
    here = spacy.load(tagger, config=settings).get_pipe("linker_tagger").predict_spans(texts)  # exports the graph
    script = f"""
import json, sys
from linker.spacy_import import import_spacy
import_spacy({str(tagger)!r})
import spacy
spans = spacy.load({str(tagger)!r}, config={settings!r}).get_pipe("linker_tagger").predict_spans({texts!r})
print(json.dumps({{"spans": spans, "modules": [m for m in ("torch", "transformers") if m in sys.modules]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["modules"] == [] and record["spans"] == [[list(span) for span in spans] for spans in here]


def test_an_unwritable_export_cache_is_a_clear_error(tmp_path: Path) -> None:
    from linker.mentions.tagger_onnx import ensure_tagger_export

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LinkerError, match="LINKER_CACHE to a writable folder"):
        ensure_tagger_export(tmp_path, lambda: object(), (), precision="int8", cache_dir=blocker / "cache")


@pytest.mark.slow
def test_outside_penalty_proposes_more_of_the_text_as_mentions(tagger: Path) -> None:
    """Taking nats from the O tag before decoding widens what the detector proposes (recall for precision);
    0 is the detector as trained."""
    text = "The boy had seizures and short stature since birth, and his sister was tired all the time."

    def covered(penalty: float) -> int:
        nlp = spacy.load(tagger, config={"components": {"linker_tagger": {"outside_penalty": penalty}}})
        assert nlp.get_pipe("linker_tagger").outside_penalty == penalty
        return sum(len(e.text) for e in nlp(text).ents)

    plain, wider, widest = covered(0.0), covered(2.0), covered(20.0)
    assert plain <= wider <= widest and plain < widest
    assert covered(0.0) == sum(len(e.text) for e in spacy.load(tagger)(text).ents)


@pytest.mark.slow
def test_each_detected_span_carries_the_detector_s_confidence(tagger: Path) -> None:
    """A span's confidence is the least probability, over its sub-words, that the sub-word is inside a mention
    (by the model, whatever the outside_penalty); the entities carry it for the linker."""
    import numpy as np

    from linker.mentions.transformer import encode_text

    text = "The boy had seizures and short stature since birth, and his sister was tired all the time."
    for penalty in (0.0, 3.0):
        nlp = spacy.load(tagger, config={"components": {"linker_tagger": {"outside_penalty": penalty}}})
        component = nlp.get_pipe("linker_tagger")
        (spans,) = component.predict([text])
        assert spans and [s[:3] for s in spans] == component.predict_spans([text])[0]
        ids, offsets = encode_text(component._tokenizer, text)
        (logits,) = component._logits([ids], [component._features.ids(text, offsets)] if component._features else [{}])
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        inside = 1.0 - probs[:, component.tags().index("O")]
        for start, end, _, confidence in spans:
            within = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and start < e]
            assert confidence == pytest.approx(float(inside[within].min()), abs=1e-5) and 0.0 <= confidence <= 1.0
        doc = nlp(text)
        widened = {(span.start, span.end): c for s, e, _, c in spans
                   if (span := doc.char_span(s, e, alignment_mode="expand")) is not None}
        assert doc.ents and all(e._.linker_confidence == widened[e.start, e.end] for e in doc.ents)


def test_outside_penalty_out_of_range_is_a_clear_error() -> None:
    from linker.mentions.transformer import TransformerTagger

    with pytest.raises(LinkerError, match="outside_penalty=-1"):
        TransformerTagger(spacy.blank("en"), outside_penalty=-1.0)


@pytest.mark.slow
def test_a_shallower_detector_keeps_the_base_model_s_first_layers(tmp_path: Path) -> None:
    from safetensors import safe_open

    from linker.train.tagger import TaggerConfig, train_tagger

    corpus = str(Path(__file__).parent / "data" / "mini_corpus.docs.jsonl")
    config = TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=4, minutes=None, epochs=30,
                          batch_size=4, eval_every=2, max_length=32, stride=8, lr=1e-4, threads=1, progress_bar=False,
                          layers=2)
    train_tagger(tmp_path / "t", config)
    model = tmp_path / "t" / "linker_tagger" / "model"
    assert json.loads((model / "config.json").read_text())["num_hidden_layers"] == 2
    with safe_open(str(model / "model.safetensors"), "pt") as weights:
        layers = {key.split("encoder.layer.")[1].split(".")[0] for key in weights.keys() if "encoder.layer." in key}
    assert layers == {"0", "1"}  # the base model's first two layers, nothing of the other four
    spans = spacy.load(tmp_path / "t").get_pipe("linker_tagger").predict(["The boy had seizures since birth."])
    assert len(spans) == 1 and all(0 <= s < e for s, e, _, _ in spans[0])  # the 2-layer network runs (ONNX)
    with pytest.raises(LinkerError, match="--layers 7: the base model .* has 6 layers"):
        train_tagger(tmp_path / "u", TaggerConfig(**{**config.__dict__, "layers": 7}))
