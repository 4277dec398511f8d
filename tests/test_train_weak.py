"""Weak labels: dictionary matches on unlabelled text plus the ontology's names in generated contexts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import LinkerError
from linker.train.weak import weak_corpus


def test_weak_labels_are_precise_dictionary_matches(data_dir: Path, mini_index_dir: Path) -> None:
    docs, stats = weak_corpus([data_dir / "mini_corpus.docs.jsonl"], mini_index_dir, label="Phenotype", contexts=0)
    by_id = {d.doc_id.split(":", 1)[1]: d for d in docs}
    first = by_id["c1"]
    assert [first.text[s.start:s.end] for s in first.spans] == ["seizures", "short stature"]
    assert stats.documents == 10 and stats.spans == sum(len(d.spans) for d in docs)
    fever = by_id["c2"]  # "fever" has five letters: a one-word match needs six
    assert [fever.text[s.start:s.end] for s in fever.spans] == ["fatigue"]


def test_generated_contexts_carry_other_names_at_the_right_offsets(data_dir: Path, mini_index_dir: Path) -> None:
    docs, _ = weak_corpus([data_dir / "mini_corpus.docs.jsonl"], mini_index_dir, label="Phenotype", contexts=2,
                          seed=1)
    generated = [d for d in docs if "#context" in d.doc_id]
    real = [d for d in docs if "#context" not in d.doc_id]
    assert len(generated) == 2 * sum(1 for d in real if d.spans)
    from linker.termdb import TermDB

    names = {n.lower() for n in TermDB(mini_index_dir / "terms.sqlite").term_texts()}
    for doc in generated:
        assert doc.spans and all(doc.text[s.start:s.end].lower() in names for s in doc.spans)
    again, _ = weak_corpus([data_dir / "mini_corpus.docs.jsonl"], mini_index_dir, label="Phenotype", contexts=2,
                           seed=1)
    assert again == docs  # seeded


def test_gold_annotations_are_never_read(data_dir: Path, mini_index_dir: Path) -> None:
    docs, _ = weak_corpus([data_dir / "mini_e2e.pubtator"], mini_index_dir, label="Phenotype", contexts=0)
    doc = next(d for d in docs if d.doc_id.endswith("101"))
    found = [doc.text[s.start:s.end] for s in doc.spans]
    assert "purple toes" not in found  # a gold span that is no name of the ontology
    assert "Seizures" in found


def test_weak_needs_an_index(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LinkerError, match="not an index folder"):
        weak_corpus([data_dir / "mini_corpus.docs.jsonl"], tmp_path, label="X")


def test_cli_weak_detector(data_dir: Path, mini_index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "weak"
    result = CliRunner().invoke(cli, ["-q", "train-mentions", str(data_dir / "mini_corpus.docs.jsonl"), "--weak",
                                      str(mini_index_dir), "--kind", "cnn", "--out", str(out), "--steps", "30",
                                      "--eval-every", "10", "--width", "32", "--embed-rows", "500",
                                      "--label", "Phenotype", "--weak-contexts", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 30
    meta = json.loads((out / "meta.json").read_text())
    assert meta["linker_detector"]["settings"]["weak"] == str(mini_index_dir)
    assert spacy.load(out).pipe_names == ["tok2vec", "ner"]


def _labelled(text: str, names: list[str]):
    from linker.mentions.dictionary import DictionaryMatcher
    from linker.train.weak import label_document

    return label_document("d", text, DictionaryMatcher(names, min_chars=3), label="Disease")


TEXT = "Children with spinal muscular atrophy (SMA) had fever; SMA is rare in HFE carriers."
NAMES = ["Spinal Muscular Atrophy", "SMA", "Fever", "HFE"]


def test_a_defined_short_form_is_a_mention_and_uncertain_matches_are_unknown() -> None:
    doc = _labelled(TEXT, NAMES)
    assert [TEXT[s.start:s.end] for s in doc.spans] == ["spinal muscular atrophy", "SMA", "SMA"]
    # a five-letter word and a symbol in capitals that no definition vouches for: neither mention nor outside
    assert [TEXT[start:end] for start, end in doc.unknown] == ["fever", "HFE"]
    undefined = _labelled("SMA had fever.", NAMES)
    assert not undefined.spans and [undefined.text[a:b] for a, b in undefined.unknown] == ["SMA", "fever"]


def test_generated_contexts_move_the_unknown_ranges_with_their_text() -> None:
    import random

    from linker.train.weak import _with_other_names

    doc = _labelled(TEXT, NAMES)
    copy = _with_other_names("d#context1", doc, ["Noonan syndrome", "ataxia"], random.Random(3))
    assert [copy.text[start:end] for start, end in copy.unknown] == ["fever", "HFE"]
    assert all(copy.text[s.start:s.end].lower() in {"noonan syndrome", "ataxia"} for s in copy.spans)


def test_unknown_ranges_teach_nothing_to_either_detector() -> None:
    import spacy

    from linker.mentions.tokenizer import biomedical_tokenizer
    from linker.train.mentions import _examples
    from linker.train.tagger import IGNORE, span_labels

    doc = _labelled(TEXT, NAMES)
    words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\w+", TEXT)]
    ids = {"O": 0, "B-Disease": 1, "I-Disease": 2}
    labels = dict(zip((TEXT[a:b] for a, b in words), span_labels(words, doc.spans, ids, doc.unknown)))
    assert labels["fever"] == labels["HFE"] == IGNORE
    assert (labels["spinal"], labels["atrophy"], labels["had"]) == (1, 2, 0)
    (example,), _ = _examples(biomedical_tokenizer(spacy.blank("en")), [doc])
    iob = {token.text: token.ent_iob_ for token in example.reference}
    assert iob["fever"] == iob["HFE"] == "" and iob["had"] == "O" and iob["spinal"] == "B"
