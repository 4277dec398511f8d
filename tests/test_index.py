from __future__ import annotations

import pytest

from linker.errors import ConceptNotFoundError, LinkerError
from linker.index import ConceptIndex


def test_exact_normalised_match_ranks_first(mini_index: ConceptIndex) -> None:
    top = mini_index.search(["  SHORT-stature "], k=3)[0]
    assert top[0].concept_id == "HP:0004322" and top[0].exact and top[0].score == 1.0
    assert [c.exact for c in top[1:]] == [False, False]


def test_synonyms_find_their_concept_by_meaning(mini_index: ConceptIndex) -> None:
    results = mini_index.search(["enlarged kidneys", "high temperature fever", "tired all the time"], k=3)
    assert results[0][0].concept_id == "HP:0000105"
    assert results[1][0].concept_id == "HP:0001945"
    assert results[2][0].concept_id == "HP:0012378"


def test_results_are_concepts_not_names(mini_index: ConceptIndex) -> None:
    candidates = mini_index.search(["seizures"], k=10)[0]
    ids = [c.concept_id for c in candidates]
    assert len(ids) == len(set(ids)) == 10
    assert ids[0] == "HP:0001250"
    assert candidates[0].name == "Seizure" and candidates[0].matched_text == "Seizures"
    assert all(a.score >= b.score for a, b in zip(candidates[1:], candidates[2:]))


def test_ambiguous_exact_name_gives_both_concepts(mini_index: ConceptIndex) -> None:
    top = mini_index.search(["developmental delay"], k=3)[0]
    assert {c.concept_id for c in top[:2]} == {"HP:0001263", "HP:0001249"}
    assert all(c.exact for c in top[:2])


def test_batch_and_edge_cases(mini_index: ConceptIndex) -> None:
    assert mini_index.search([], k=5) == []
    assert len(mini_index.search(["fever"], k=100)[0]) == 21  # never more concepts than the index has
    batch = mini_index.search(["fever", "fever", "ataxia"], k=2)
    assert batch[0] == batch[1] and batch[2][0].concept_id == "HP:0001251"
    with pytest.raises(LinkerError, match="k must be at least 1"):
        mini_index.search(["fever"], k=0)


def test_concept_cards_resolve_alt_ids(mini_index: ConceptIndex) -> None:
    card = mini_index.card("HP:0001275")
    assert card.concept.concept_id == "HP:0001250"
    assert {t.text for t in card.synonyms} == {"Epileptic seizure", "Seizures", "Fits"}
    assert card.alt_ids == ("HP:0001275",)
    with pytest.raises(ConceptNotFoundError, match="HP:7777777"):
        mini_index.card("HP:7777777")


def test_an_index_can_ship_its_model_inside_and_be_moved(mini_index_dir, tmp_path) -> None:
    import json
    import shutil

    from linker.encoders import default_model_path
    from linker.index import ConceptIndex

    folder = tmp_path / "with-model"
    shutil.copytree(mini_index_dir, folder)
    shutil.copytree(default_model_path(), folder / "model")
    meta = json.loads((folder / "meta.json").read_text())
    meta["encoder"]["model"] = str(tmp_path / "gone")  # where it was trained: not there any more
    meta["encoder"]["model_dir"] = "model"
    (folder / "meta.json").write_text(json.dumps(meta))
    moved = tmp_path / "moved"
    folder.rename(moved)
    index = ConceptIndex.load(moved)
    assert index.search(["big kidneys"], k=1)[0][0].concept_id == "HP:0000105"
