"""Mention memory: what the training corpus's annotations link a text to, in the linker and in a saved pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import spacy
from spacy.language import Language

from linker.errors import SourceFormatError
from linker.linking.memory import MentionMemory, build_memory
from linker.pipeline import doc_mentions, load_pipeline

ROWS = [("fits", ["HP:0001250"], "Phenotype")] * 3 + [("Fits", ["HP:0001945"], "Phenotype"),
        ("tiredness", ["HP:0012378"], "Phenotype"), ("tiredness", ["HP:0001945"], "Phenotype"),
        ("seizure attack", ["HP:0001275"], "Phenotype"),  # an alt id of Seizure
        ("odd spell", ["HP:9999999"], "Phenotype"),  # not in the index
        ("breast and colon cancer", ["HP:0003002", "HP:0003003"], "Phenotype"),
        ("xylophone", ["HP:0004322"], "Phenotype"), ("aspirin", ["HP:0001945"], "Chemical"),
        ("XYL", ["HP:0004322"], "Phenotype")]


@pytest.fixture()
def mentions_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.mentions.jsonl"
    path.write_text("".join(json.dumps({"doc_id": "d", "start": 0, "end": len(t), "text": t, "ids": ids, "type": kind})
                            + "\n" for t, ids, kind in ROWS))
    return path


@pytest.fixture()
def memory(mentions_file: Path, mini_index: Any) -> MentionMemory:
    return build_memory([mentions_file], mini_index.termdb, exclude_types=["Chemical"])


def test_the_majority_concept_is_remembered_and_ambiguity_is_not(memory: MentionMemory) -> None:
    assert memory.lookup("FITS") == ("HP:0001250",)  # 3 of 4, case and spacing normalised
    assert memory.lookup("tiredness") is None  # one each: left to the search
    assert memory.lookup("seizure attack") == ("HP:0001250",)  # the alt id resolved through the index
    assert memory.lookup("odd spell") is None and memory.lookup("aspirin") is None
    assert memory.lookup("breast and colon cancer") == ("HP:0003002", "HP:0003003")


def test_saved_and_loaded_unchanged(memory: MentionMemory, tmp_path: Path) -> None:
    memory.save(tmp_path / "memory.jsonl")
    again = MentionMemory.load(tmp_path / "memory.jsonl")
    assert again.counts == memory.counts


def test_a_bad_memory_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "memory.jsonl"
    path.write_text('{"text": "fits", "ids": ["HP:0001250"], "count": 2}\n{"text": "fits", "ids": "HP:1"}\n')
    with pytest.raises(SourceFormatError, match=r"memory.jsonl:2: expected a JSON object"):
        MentionMemory.load(path)


def _detector_and_linker(index_dir: Path, patterns: list[str], **config: Any) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PHENOTYPE", "pattern": p} for p in patterns])
    nlp.add_pipe("concept_linker", config={"index": str(index_dir), "sources": ["upstream"], **config})
    return nlp


TEXT = "He had fits, a xylophone and breast and colon cancer."
PATTERNS = ["fits", "xylophone", "breast and colon cancer"]


def test_the_linker_links_remembered_texts_first(mini_index_dir: Path, memory: MentionMemory) -> None:
    plain = _detector_and_linker(mini_index_dir, PATTERNS)
    assert {e.text: e.kb_id_ for e in plain(TEXT).ents}["xylophone"] == ""  # no concept near it
    nlp = _detector_and_linker(mini_index_dir, PATTERNS)
    nlp.get_pipe("concept_linker").set_memory(memory)
    doc = nlp(TEXT)
    assert {e.text: e.kb_id_ for e in doc.ents} == {"fits": "HP:0001250", "xylophone": "HP:0004322",
                                                    "breast and colon cancer": "HP:0003002"}
    mentions = {m.text: m for m in doc_mentions(doc)}
    assert mentions["xylophone"].candidates[0].score == 1.0
    assert mentions["breast and colon cancer"].conjunct_ids == ("HP:0003002", "HP:0003003")


def test_a_remembered_short_form_keeps_its_own_link_when_its_long_form_is_not_one(
        mini_index_dir: Path, memory: MentionMemory) -> None:
    texts = ["The xylophone stature gene (XYL) was cloned. Every XYL patient was short.",
             "A xylophone (XYL) was played. The XYL was loud."]
    plain = _detector_and_linker(mini_index_dir, ["XYL"])
    assert [e.kb_id_ for text in texts for e in plain(text).ents] == [""] * 4  # short forms follow long forms
    nlp = _detector_and_linker(mini_index_dir, ["XYL"])
    nlp.get_pipe("concept_linker").set_memory(memory)
    doc, other = nlp(texts[0]), nlp(texts[1])
    # as the annotators linked it, where its long form shares a word with the concept's name (Short stature)
    assert [(e.text, e.kb_id_) for e in doc.ents] == [("XYL", "HP:0004322")] * 2
    assert [e.kb_id_ for e in other.ents] == ["", ""]  # not where they have nothing in common
    assert {m.source for m in doc_mentions(doc)} == {"upstream"}


def test_a_memory_given_as_an_object_survives_pickling(mini_index_dir: Path, memory: MentionMemory) -> None:
    import pickle

    nlp = _detector_and_linker(mini_index_dir, PATTERNS)
    nlp.get_pipe("concept_linker").set_memory(memory)  # as nlp.pipe(n_process=2) sends it to a worker
    copy = pickle.loads(pickle.dumps(nlp.get_pipe("concept_linker")))
    assert copy.memory is not None and copy.memory.lookup("xylophone") == ("HP:0004322",)


def test_a_saved_pipeline_carries_its_memory(mini_index_dir: Path, memory: MentionMemory, tmp_path: Path) -> None:
    nlp = _detector_and_linker(mini_index_dir, PATTERNS, copy_index=True)
    nlp.get_pipe("concept_linker").set_memory(memory)
    nlp.to_disk(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "concept_linker" / "memory.jsonl").is_file()
    loaded = spacy.load(tmp_path / "pipe")
    assert [(e.text, e.kb_id_) for e in loaded(TEXT).ents] == [(e.text, e.kb_id_) for e in nlp(TEXT).ents]
    without = load_pipeline(pipeline=tmp_path / "pipe", memory=None)  # switched off for a comparison
    assert {e.text: e.kb_id_ for e in without(TEXT).ents}["xylophone"] == ""


GDD = "Global developmental delay (GDD) was diagnosed; GDD is common."


def test_short_forms_follow_a_detected_long_form(mini_index_dir: Path) -> None:
    doc = _detector_and_linker(mini_index_dir, ["Global developmental delay"])(GDD)
    assert [(e.text, e.label_, e.kb_id_) for e in doc.ents] == [
        ("Global developmental delay", "PHENOTYPE", "HP:0001263"), ("GDD", "PHENOTYPE", "HP:0001263"),
        ("GDD", "PHENOTYPE", "HP:0001263")]


def test_a_detected_short_form_whose_long_form_is_not_a_mention_is_not_linked(mini_index_dir: Path) -> None:
    text = "The global developmental delay (GDD) gene study; GDD was sequenced."
    nlp = _detector_and_linker(mini_index_dir, ["GDD"])  # without the rule both would link through the long form
    assert [(e.text, e.kb_id_) for e in nlp(text).ents] == [("GDD", ""), ("GDD", "")]
