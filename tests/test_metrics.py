from __future__ import annotations

import pytest

from linker.errors import LinkerError
from linker.metrics import Annotation, annotation, evaluate, map_ids, score, score_by_type


def test_strict_needs_equal_offsets_and_a_shared_concept() -> None:
    gold = [annotation("d", 0, 5, "A"), annotation("d", 10, 20, "B")]
    pred = [annotation("d", 0, 5, "A"), annotation("d", 10, 15, "B"), annotation("d", 30, 35, "C")]
    prf = score(pred, gold, match="strict")
    assert (prf.tp_pred, prf.n_pred, prf.tp_gold, prf.n_gold) == (1, 3, 1, 2)
    assert prf.precision == pytest.approx(1 / 3) and prf.recall == pytest.approx(0.5)
    assert prf.f1 == pytest.approx(0.4)


def test_overlap_accepts_shared_characters_only() -> None:
    gold = [annotation("d", 10, 20, "B")]
    assert score([annotation("d", 15, 25, "B")], gold, match="overlap").f1 == 1.0
    assert score([annotation("d", 20, 25, "B")], gold, match="overlap").f1 == 0.0  # touching is not overlapping
    assert score([annotation("d", 15, 25, "X")], gold, match="overlap").f1 == 0.0  # wrong concept


def test_composite_gold_matches_any_of_its_ids() -> None:
    gold = [annotation("d", 0, 26, ["MESH:D001943", "MESH:D010051"])]
    assert score([annotation("d", 0, 26, "MESH:D010051")], gold).recall == 1.0
    assert score([annotation("d", 0, 26, "MESH:D000001")], gold).recall == 0.0


def test_id_map_resolves_alternative_ids_on_both_sides() -> None:
    gold = [annotation("d", 0, 4, "OMIM:310200")]
    pred = [annotation("d", 0, 4, "MESH:D020388")]
    assert score(pred, gold).f1 == 0.0
    assert score(pred, gold, id_map={"OMIM:310200": "MESH:D020388"}).f1 == 1.0
    assert map_ids(["A", "B"], {"A": ["X", "Y"]}) == {"X", "Y", "B"}
    assert map_ids(["A"], lambda i: [i.lower()]) == {"a"}


def test_predictions_without_concept_are_ignored_but_count_as_spans_without_concepts() -> None:
    gold = [annotation("d", 0, 4, "A")]
    pred = [annotation("d", 0, 4, None), annotation("d", 5, 9, ())]
    linked = score(pred, gold)
    assert (linked.n_pred, linked.tp_gold) == (0, 0)
    spans = score(pred, gold, concepts=False)
    assert (spans.tp_pred, spans.n_pred, spans.tp_gold) == (1, 2, 1)


def test_duplicates_count_once_and_documents_stay_apart() -> None:
    gold = [annotation("d1", 0, 4, "A")]
    pred = [annotation("d1", 0, 4, "A"), annotation("d1", 0, 4, "A"), annotation("d2", 0, 4, "A")]
    prf = score(pred, gold)
    assert (prf.tp_pred, prf.n_pred) == (1, 2)


def test_per_type_recall_and_typed_precision() -> None:
    gold = [annotation("d", 0, 4, "A", "Disease"), annotation("d", 10, 14, "B", "Chemical")]
    pred = [annotation("d", 0, 4, "A", "Disease"), annotation("d", 10, 14, "X", "Chemical")]
    result = score_by_type(pred, gold)
    assert result["Disease"] is not None and result["Disease"].f1 == 1.0
    assert result["Chemical"] is not None and result["Chemical"].recall == 0.0
    assert result["all"] is not None and result["all"].recall == 0.5


def test_evaluate_gives_both_modes_as_dicts() -> None:
    gold = [Annotation("d", 0, 10, ("A",))]
    out = evaluate([Annotation("d", 2, 10, ("A",))], gold, by_type=False)
    assert out["strict"]["f1"] == 0.0 and out["overlap"]["f1"] == 1.0
    assert set(out["strict"]) >= {"precision", "recall", "f1", "tp_pred", "n_gold"}


def test_empty_inputs_score_zero_without_dividing_by_zero() -> None:
    prf = score([], [])
    assert (prf.precision, prf.recall, prf.f1) == (0.0, 0.0, 0.0)


def test_bad_input_is_reported() -> None:
    with pytest.raises(LinkerError, match="match must be one of"):
        score([], [], match="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(LinkerError, match="ends before it starts"):
        score([annotation("d", 5, 2, "A")], [])


def test_document_level_concepts_are_sets_per_document() -> None:
    from linker.metrics import annotation, score_documents

    gold = [annotation("d1", 0, 5, "A"), annotation("d1", 10, 15, "A"), annotation("d1", 20, 40, ["B", "C"]),
            annotation("d2", 0, 5, "D")]
    pred = [annotation("d1", 0, 5, "A"), annotation("d1", 50, 55, "B"), annotation("d1", 60, 65, "E"),
            annotation("d2", 7, 9, "D"), annotation("d2", 10, 12, "D")]
    prf = score_documents(pred, gold)
    # d1: gold {A, B, C}, predicted {A, B, E}: 2 right; d2: gold {D}, predicted {D}
    assert (prf.tp_pred, prf.n_pred, prf.n_gold) == (3, 4, 4)
    assert prf.precision == 0.75 and prf.recall == 0.75


def test_document_level_concepts_merge_ids_the_map_joins() -> None:
    from linker.metrics import annotation, score_documents

    gold = [annotation("d1", 0, 5, "MESH:D1")]
    pred = [annotation("d1", 0, 5, "OLD:1"), annotation("d1", 9, 12, "MESH:D1")]
    prf = score_documents(pred, gold, id_map={"OLD:1": "MESH:D1"})
    assert (prf.tp_pred, prf.n_pred, prf.n_gold) == (1, 1, 1)


def test_evaluate_reports_the_document_measure() -> None:
    from linker.metrics import annotation, evaluate

    out = evaluate([annotation("d", 0, 3, "A")], [annotation("d", 5, 8, "A")])
    assert out["strict"]["f1"] == 0.0 and out["document"]["f1"] == 1.0
