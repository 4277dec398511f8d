"""Training pairs, the concept hold-out and batch planning (no model needed)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from linker.errors import LinkerError, SourceFormatError
from linker.normalize import normalize
from linker.sources import Source
from linker.train.batching import plan_batches
from linker.train.pairs import build_pairs, describe, read_mentions, split_of

DATA = Path(__file__).parent / "data"


def _pairs(**options):
    return build_pairs([Source.open(DATA / "mini.obo")], val_fraction=0.0, test_fraction=0.0, **options)


def test_pairs_of_one_concept_by_hand() -> None:
    pairset = _pairs()
    seizure = {(p.anchor, p.positive, p.kind) for p in pairset.pairs if p.concept_id == "HP:0001250"}
    definition = ("A seizure is an intermittent abnormality of nervous system physiology characterised by a "
                  "transient occurrence of signs due to abnormal neuronal activity in the brain.")
    assert seizure == {
        ("Seizure", "Epileptic seizure", "synonym"),
        ("Seizure", "Seizures", "synonym"),
        ("Seizure", definition, "definition"),
        ("Epileptic seizure", definition, "definition"),
        ("Epileptic seizure", "Seizure: a kind of Phenotypic abnormality", "description"),
    }  # "Fits" is RELATED: not an EXACT synonym, so no pair by default


def test_concept_without_synonyms_gets_a_nameless_description() -> None:
    pairs = [p for p in _pairs().pairs if p.concept_id == "HP:0003003"]
    assert [(p.anchor, p.positive, p.kind) for p in pairs] == [("Colon cancer", "a kind of Phenotypic abnormality",
                                                                "description")]


def test_root_and_obsolete_terms_give_no_pairs() -> None:
    ids = {p.concept_id for p in _pairs().pairs}
    assert "HP:0000001" not in ids  # no synonym, definition or parent
    assert not ids & {"HP:0006785", "HP:0000009", "HP:0000010"}


def test_more_scopes_add_related_synonyms() -> None:
    pairs = _pairs(scopes=("EXACT", "RELATED")).pairs
    assert any(p.anchor == "Seizure" and p.positive == "Fits" for p in pairs)


def test_ctd_source_pairs_name_definition_and_parents() -> None:
    pairset = build_pairs([Source.open(DATA / "mini_ctd.tsv", "ctd")], val_fraction=0.0, test_fraction=0.0)
    got = {(p.anchor, p.positive, p.kind) for p in pairset.pairs if p.concept_id == "MESH:D012878"}
    assert got == {
        ("Skin Neoplasms", "Skin Tumors", "synonym"),
        ("Skin Neoplasms", "Skin Cancer", "synonym"),
        ("Skin Neoplasms", "Tumors or cancer of the SKIN.", "definition"),
        ("Skin Tumors", "Tumors or cancer of the SKIN.", "definition"),
        ("Skin Tumors", "Skin Neoplasms: a kind of Neoplasms", "description"),
    }


def test_mentions_resolve_alt_ids_and_drop_duplicates_composites_and_unknown_ids() -> None:
    pairset = _pairs(corpora=[DATA / "mini.mentions.jsonl"], mention_val_fraction=0.0)
    mentions = {(p.anchor, p.positive) for p in pairset.pairs if p.kind == "mention"}
    # "Seizures" repeats the (Seizure, Seizures) synonym pair; "seizure" is the name itself; the composite
    # and the chemical (unknown id) are skipped; HP:0001275 is an alt id of Seizure
    assert mentions == {("a fit", "Seizure"), ("high temperature", "Fever")}
    assert pairset.counts["dropped_duplicate"] == 1
    assert pairset.counts["dropped_same_text"] == 1


def test_held_out_mention_texts_are_validation_only() -> None:
    pairset = _pairs(corpora=[DATA / "mini.mentions.jsonl"], mention_val_fraction=1.0)
    # every single-concept mention text seen once is held out, once per (normalised text, concept)
    assert sorted(pairset.val_mentions) == [("Seizures", "HP:0001250"), ("a fit", "HP:0001250"),
                                           ("high temperature", "HP:0001945"), ("seizure", "HP:0001250")]
    assert not [p for p in pairset.pairs if p.kind == "mention"]
    assert pairset.counts["mentions_val"] == 4
    # a held-out text that is a dictionary name keeps its dictionary pairs: the index holds the name anyway
    assert ("Seizure", "Seizures") in {(p.anchor, p.positive) for p in pairset.pairs if p.kind == "synonym"}


def test_only_mention_texts_seen_once_are_held_out(tmp_path: Path) -> None:
    corpus = tmp_path / "two.mentions.jsonl"
    rows = [("a fit", "HP:0001250"), ("A fit", "HP:0001250"), ("high temperature", "HP:0001945")]
    corpus.write_text("".join(json.dumps({"text": t, "ids": [i]}) + "\n" for t, i in rows))
    pairset = _pairs(corpora=[corpus], mention_val_fraction=1.0)
    assert pairset.val_mentions == [("high temperature", "HP:0001945")]
    assert [(p.anchor, p.positive) for p in pairset.pairs if p.kind == "mention"] == [("a fit", "Seizure")]


def test_pairs_are_unique_ignoring_order() -> None:
    keys = Counter(frozenset((normalize(p.anchor), normalize(p.positive))) for p in _pairs().pairs)
    assert keys and max(keys.values()) == 1


def test_split_is_seeded_and_deterministic() -> None:
    ids = [f"HP:{i:07d}" for i in range(2000)]
    first = [split_of(cid, seed=3, val_fraction=0.1, test_fraction=0.1) for cid in ids]
    assert first == [split_of(cid, seed=3, val_fraction=0.1, test_fraction=0.1) for cid in ids]
    assert first != [split_of(cid, seed=4, val_fraction=0.1, test_fraction=0.1) for cid in ids]
    counts = Counter(first)
    assert 150 < counts["val"] < 250 and 150 < counts["test"] < 250


def test_held_out_concepts_never_reach_training_pairs() -> None:
    pairset = build_pairs([Source.open(DATA / "mini.obo")], seed=1, val_fraction=0.25, test_fraction=0.25)
    held = set(pairset.held_out("val")) | set(pairset.held_out("test"))
    assert held and pairset.pairs
    held_texts = {normalize(t) for cid in held for t in pairset.concepts[cid].names(("EXACT", "RELATED", "BROAD", "NARROW"))}
    held_names = {pairset.concepts[cid].name for cid in held}
    for pair in pairset.pairs:
        assert pair.concept_id not in held
        assert normalize(pair.anchor) not in held_texts and normalize(pair.positive) not in held_texts
        if pair.kind == "description":  # held-out parents are left out of the verbalised graph
            parents = pair.positive.split("a kind of ", 1)[1].split(" and of ")
            assert not set(parents) & held_names


def test_extra_sources_are_trained_whole_but_keep_out_held_out_texts() -> None:
    # a seed that holds out HPO "Colon cancer", which MEDIC's Colonic Neoplasms has as a synonym
    seed = next(s for s in range(100) if split_of("HP:0003003", s, 0.25, 0.25) != "train")
    pairset = build_pairs([Source.open(DATA / "mini.obo")], extra_sources=[Source.open(DATA / "mini_ctd.tsv", "ctd")],
                          seed=seed, val_fraction=0.25, test_fraction=0.25)
    medic = {cid for cid in pairset.concepts if cid.startswith("MESH:")}
    assert medic and all(pairset.split[cid] == "train" for cid in medic)
    assert pairset.counts["concepts_extra"] == len(medic)
    assert any(p.concept_id.startswith("HP:") for p in pairset.pairs)
    skin = {(p.anchor, p.positive) for p in pairset.pairs if p.concept_id == "MESH:D012878"}
    assert ("Skin Neoplasms", "Skin Tumors") in skin
    colon = {(p.anchor, p.positive) for p in pairset.pairs if p.concept_id == "MESH:D003110"}
    assert ("Colonic Neoplasms", "Colonic Tumors") in colon
    assert not any("colon cancer" in (normalize(a), normalize(b)) for a, b in colon)
    alone = build_pairs([Source.open(DATA / "mini_ctd.tsv", "ctd")], val_fraction=0.0, test_fraction=0.0)
    assert ("Colonic Neoplasms", "Colon Cancer") in {(p.anchor, p.positive) for p in alone.pairs}


def test_describe() -> None:
    assert describe("X", ["Y", "Z"]) == "X: a kind of Y and of Z"
    assert describe("X", []) is None


def test_bad_mentions_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mentions.jsonl"
    bad.write_text('{"text": "a", "ids": []}\n{"text": "b"}\n')
    with pytest.raises(SourceFormatError, match=r"bad.mentions.jsonl:2"):
        list(read_mentions(bad))


def test_batches_never_repeat_a_concept_and_are_deterministic() -> None:
    pairs = _pairs(scopes=("EXACT", "RELATED", "BROAD", "NARROW")).pairs
    plan = plan_batches(pairs, 4, seed=7, keys=lambda p: (p.concept_id,), length=lambda p: len(p.positive))
    assert plan == plan_batches(pairs, 4, seed=7, keys=lambda p: (p.concept_id,), length=lambda p: len(p.positive))
    for batch in plan:
        assert 2 <= len(batch) <= 4
        assert len({pairs[i].concept_id for i in batch}) == len(batch)
    used = [i for batch in plan for i in batch]
    assert len(used) == len(set(used)) and len(used) >= len(pairs) - 1


def test_batches_are_length_bucketed() -> None:
    items = [("c%d" % i, "x" * (i % 50 + 1)) for i in range(400)]
    plan = plan_batches(items, 8, seed=0, keys=lambda it: (it[0],), length=lambda it: len(it[1]), bucket_batches=50)
    spread = [max(len(items[i][1]) for i in b) - min(len(items[i][1]) for i in b) for b in plan]
    assert sum(spread) / len(spread) < 5  # random batches would spread about 35 characters


def test_kinds_select_pair_kinds_and_unknown_kinds_are_refused() -> None:
    only = _pairs(kinds=("synonym", "description")).pairs
    assert only and {p.kind for p in only} == {"synonym", "description"}
    assert len(only) == sum(p.kind in {"synonym", "description"} for p in _pairs().pairs)
    with pytest.raises(LinkerError, match="unknown pair kind.*defintion"):
        _pairs(kinds=("defintion",))
