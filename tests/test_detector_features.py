"""Sub-word features of the transformer detector: word shape and dictionary (lexicon) matches."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy

from linker.errors import LinkerError
from linker.mentions.features import (BEGIN, CAPS, DIGITS, INSIDE, LOWER, MIXED, OUTSIDE, PAD, SYMBOL, TITLE,
                                      FEATURES_FILE, LEXICON_FILE, TABLES_FILE, SubwordFeatures, lexicon_names,
                                      shape_ids, span_ids, word_shape)


def test_word_shapes() -> None:
    assert [word_shape(w) for w in ("fever", "Wilms", "(HFE)", "BRCA1", "mRNA", "--", "A")] == \
        [LOWER, TITLE, CAPS, DIGITS, MIXED, SYMBOL, TITLE]


def test_shape_of_each_sub_word_is_its_word_shape() -> None:
    text = "HFE gene, hemochromatosis"
    offsets = [(0, 1), (1, 3), (4, 8), (8, 9), (10, 14), (14, 25), (0, 0)]
    assert shape_ids(text, offsets) == [CAPS, CAPS, LOWER, LOWER, LOWER, LOWER, PAD]


def test_span_ids_mark_begin_and_inside() -> None:
    offsets = [(0, 3), (4, 9), (9, 12), (13, 18), (19, 22)]  # "the short stat ure was"
    assert span_ids([(4, 18)], offsets) == [OUTSIDE, BEGIN, INSIDE, INSIDE, OUTSIDE]
    assert span_ids([(0, 3), (4, 12)], offsets) == [BEGIN, BEGIN, INSIDE, OUTSIDE, OUTSIDE]


def test_lexicon_feature_follows_the_dictionary_matcher() -> None:
    features = SubwordFeatures(("lexicon",), ["short stature", "seizure"])
    text = "The boy had seizures and short stature."
    offsets = [(0, 3), (4, 7), (8, 11), (12, 20), (21, 24), (25, 30), (31, 38), (38, 39)]
    assert features.ids(text, offsets)["lexicon"] == [OUTSIDE, OUTSIDE, OUTSIDE, BEGIN, OUTSIDE, BEGIN, INSIDE,
                                                      OUTSIDE]


def test_lexicon_without_names_and_unknown_features_are_clear_errors() -> None:
    with pytest.raises(LinkerError, match="--lexicon"):
        SubwordFeatures(("lexicon",))
    with pytest.raises(LinkerError, match="unknown detector feature"):
        SubwordFeatures(("colour",))


def test_lexicon_names_from_an_index_or_an_ontology(mini_index_dir: Path, data_dir: Path) -> None:
    from_index = lexicon_names(mini_index_dir)
    from_file = lexicon_names(data_dir / "mini.obo")
    assert "Seizure" in from_index and set(from_index) == set(from_file)


@pytest.mark.slow
def test_detector_with_features_saves_them_and_predicts_the_same_after_loading(tmp_path: Path, data_dir: Path,
                                                                               mini_index_dir: Path) -> None:
    from linker.train.tagger import TaggerConfig, train_tagger

    corpus = str(data_dir / "mini_corpus.docs.jsonl")
    out = tmp_path / "tagger"
    train_tagger(out, TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=30, minutes=None,
                                   epochs=30, batch_size=4, eval_every=10, max_length=32, stride=8, lr=1e-4, threads=1,
                                   lexicon=str(mini_index_dir), progress_bar=False))
    model = out / "linker_tagger" / "model"
    assert {FEATURES_FILE, TABLES_FILE, LEXICON_FILE} <= {p.name for p in model.iterdir()}
    nlp = spacy.load(out)
    tagger = nlp.get_pipe("linker_tagger")
    text = "The boy had seizures and short stature since birth."
    found = {(e.text, e.label_) for e in nlp(text).ents}
    assert {("seizures", "Phenotype"), ("short stature", "Phenotype")} <= found
    tables = tagger._network().tables  # the torch network the exported graph came from
    assert set(tables) == {"shape", "lexicon"} and float(tables["lexicon"].weight.detach().abs().sum()) > 0  # trained
    copy = tmp_path / "copy"
    nlp.to_disk(copy)
    assert {(e.text, e.label_) for e in spacy.load(copy)(text).ents} == found


@pytest.mark.slow
def test_detector_without_features_is_a_plain_model(tmp_path: Path, data_dir: Path) -> None:
    from linker.train.tagger import TaggerConfig, train_tagger

    corpus = str(data_dir / "mini_corpus.docs.jsonl")
    out = tmp_path / "plain"
    train_tagger(out, TaggerConfig(corpora=[corpus], dev=[corpus], label="Phenotype", steps=4, minutes=None,
                                   epochs=30, batch_size=4, eval_every=2, max_length=32, stride=8, lr=1e-4, threads=1,
                                   shape=False, progress_bar=False))
    assert not (out / "linker_tagger" / "model" / FEATURES_FILE).exists()
    nlp = spacy.load(out)
    nlp("The boy had seizures.")
    assert not hasattr(nlp.get_pipe("linker_tagger")._network(), "tables")
