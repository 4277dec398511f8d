"""Evaluation metrics on hand-made cases (answers worked out by hand) and the ``linker evaluate`` verb."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import LinkerError
from linker.evaluate import (
    IdMapper,
    exact_ranker,
    first_match_rank,
    index_mapper,
    score_normalization,
)
from linker.gold import GoldMention, read_mentions
from linker.similarity import average_ranks, pearson, read_pairs, spearman


def _m(*ids: str, text: str = "x", type: str = "T") -> GoldMention:
    return GoldMention("d", 0, len(text), text, tuple(ids), type)


def test_acc_at_k_and_mrr_by_hand() -> None:
    mentions = [_m("A"), _m("B"), _m("C"), _m("D")]
    predictions = [["A", "B"], ["A", "C", "B"], ["A", "B"], ["X", "Y", "Z", "W", "V", "D"]]
    # ranks 1, 3, none, 6 -> acc@1 1/4, acc@5 2/4, MRR (1 + 1/3 + 0 + 1/6) / 4 = 0.375
    result = score_normalization(mentions, predictions, IdMapper())
    metrics = result["metrics"]
    assert metrics["acc@1"] == pytest.approx(0.25)
    assert metrics["acc@5"] == pytest.approx(0.5)
    assert metrics["mrr"] == pytest.approx(0.375)
    assert result["counts"]["scored"] == 4


def test_composite_mention_correct_when_any_gold_id_is_predicted() -> None:
    mapper = IdMapper()
    assert first_match_rank(["B"], ["A", "B"], mapper) == 1
    assert first_match_rank(["C", "A"], ["A", "B"], mapper) == 2
    assert first_match_rank(["C"], ["A", "B"], mapper) is None
    result = score_normalization([_m("A", "B"), _m("A")], [["B"], ["B"]], mapper)
    assert result["composite"] == {"n": 1, "acc@1": 1.0, "acc@5": 1.0, "mrr": 1.0}
    assert result["metrics"]["acc@1"] == pytest.approx(0.5)


def test_alt_ids_map_gold_and_predictions_both_ways_and_through_chains() -> None:
    mapper = IdMapper({"OLD": ["NEW"], "OLDER": ["OLD"]})
    assert first_match_rank(["NEW"], ["OLD"], mapper) == 1  # gold is an alt id
    assert first_match_rank(["OLD"], ["NEW"], mapper) == 1  # prediction is an alt id
    assert first_match_rank(["X", "NEW"], ["OLDER"], mapper) == 2  # two hops
    assert first_match_rank(["OTHER"], ["OLD"], mapper) is None


def test_absent_gold_ids_are_counted_apart_and_as_misses_in_acc1_all() -> None:
    in_index = {"A", "B", "NEW"}
    mapper = IdMapper({"OLD": ["NEW"]}, lambda ids: {i for i in ids if i in in_index})
    mentions = [_m("A"), _m("OLD"), _m("GONE"), _m("GONE", "B"), _m()]
    predictions = [["A"], ["NEW"], ["A"], ["A"], ["A"]]
    result = score_normalization(mentions, predictions, mapper)
    counts = result["counts"]
    assert counts["mentions"] == 5
    assert counts["no_gold_id"] == 1
    assert counts["with_gold_id"] == 4
    assert counts["absent"] == 1  # only GONE alone; GONE|B still has B in the index
    assert counts["scored"] == 3
    assert counts["mapped_or_partly_absent"] == 2  # OLD (mapped) and GONE|B (partly absent)
    assert result["metrics"]["acc@1"] == pytest.approx(2 / 3)
    assert result["metrics"]["acc@1_all"] == pytest.approx(2 / 4)
    assert result["absent_gold_ids"] == {"GONE": 1}


def test_average_ranks_share_ties() -> None:
    assert list(average_ranks([10, 20, 20, 20, 5])) == [2.0, 4.0, 4.0, 4.0, 1.0]


def test_spearman_with_ties_by_hand() -> None:
    # ranks x = 1, 2.5, 2.5, 4 ; ranks y = 1, 3, 2, 4 -> rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert spearman([1, 2, 2, 3], [10, 30, 20, 40]) == pytest.approx(math.sqrt(0.9))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    with pytest.raises(LinkerError):
        pearson([1.0], [2.0])


def test_read_pairs_skips_header_and_names_bad_lines(tmp_path: Path, data_dir: Path) -> None:
    pairs = read_pairs(data_dir / "mini_pairs.tsv")
    assert pairs[0] == ("Seizure", "Epileptic seizure", 4.0) and len(pairs) == 4
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\t1\nc\td\tlots\n")
    with pytest.raises(LinkerError, match=r"bad.tsv:2: score 'lots'"):
        read_pairs(bad)


def test_read_mentions_filters_types_and_names_bad_lines(tmp_path: Path, data_dir: Path) -> None:
    mentions = read_mentions(data_dir / "mini_mentions.jsonl")
    assert len(mentions) == 8 and mentions[4].ids == ("HP:0001945", "HP:0012378")
    assert [m.text for m in read_mentions(data_dir / "mini_mentions.jsonl", ["Composite"])] == ["Pyrexia and tiredness"]
    with pytest.raises(LinkerError, match="types Composite, Phenotype"):
        read_mentions(data_dir / "mini_mentions.jsonl", ["Disease"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"doc_id": "1", "text": "a", "ids": []}\n{"doc_id": "1", "text": "b"}\n')
    with pytest.raises(LinkerError, match=r"bad.jsonl:2: missing"):
        read_mentions(bad)


def test_exact_baseline_on_the_mini_index(mini_index, data_dir: Path) -> None:
    mentions = read_mentions(data_dir / "mini_mentions.jsonl")
    mapper = index_mapper(mini_index.termdb, [data_dir / "mini_eval_alt_ids.tsv"])
    predictions = exact_ranker(mini_index.termdb)([m.text for m in mentions])
    assert predictions[1] == ["HP:0001250"]  # "Fits" is a synonym of Seizure
    result = score_normalization(mentions, predictions, mapper)
    # exact hits: Seizures, Fits (gold is alt id HP:0001275), Small stature, Breast cancer (via the alt-id file);
    # misses: bladder anomaly (obsolete HP:0000009 -> HP:0000077), the composite; purple toes absent; Anaemia no id
    assert result["counts"] | {} == {"mentions": 8, "with_gold_id": 7, "no_gold_id": 1, "scored": 6, "absent": 1,
                                     "mapped_or_partly_absent": 3, "composite_scored": 1}
    assert result["metrics"]["acc@1"] == pytest.approx(4 / 6)
    assert result["metrics"]["acc@1_all"] == pytest.approx(4 / 7)
    assert result["metrics"]["mrr"] == pytest.approx(4 / 6)


def test_cli_evaluate_matches_an_independent_lookup_count(mini_index, mini_index_dir: Path, data_dir: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["evaluate", str(data_dir / "mini_mentions.jsonl"), "--index", str(mini_index_dir),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "acc@1" in result.output and "absent from index: 2" in result.output
    record = json.loads(out.read_text())
    assert record["model"] == mini_index.meta["encoder"]["model"]
    assert record["normalization"]["counts"]["scored"] == 5
    # independent count: top-1 of the index search, gold ids resolved by hand
    gold = {"Seizures": {"HP:0001250"}, "Fits": {"HP:0001250"}, "Small stature": {"HP:0004322"},
            "bladder anomaly": {"HP:0000077"}, "Pyrexia and tiredness": {"HP:0001945", "HP:0012378"}}
    top = {text: mini_index.search([text], 1)[0][0].concept_id for text in gold}
    expected = sum(top[text] in ids for text, ids in gold.items()) / len(gold)
    assert record["normalization"]["metrics"]["acc@1"] == pytest.approx(expected)
    assert set(record) >= {"model", "index", "dataset", "normalization", "seconds", "conventions"}


def test_cli_evaluate_alt_ids_file_and_exact_flag(mini_index_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(cli, ["evaluate", str(data_dir / "mini_mentions.jsonl"), "--index", str(mini_index_dir),
                                      "--alt-ids", str(data_dir / "mini_eval_alt_ids.tsv"), "--exact",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["model"] == "exact normalised string match"
    assert record["normalization"]["counts"]["absent"] == 1
    assert record["normalization"]["metrics"]["acc@1"] == pytest.approx(4 / 6)


def test_cli_evaluate_similarity(mini_index_dir: Path, data_dir: Path, encoder, tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(cli, ["evaluate", "--pairs", str(data_dir / "mini_pairs.tsv"),
                                      "--index", str(mini_index_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    pairs = read_pairs(data_dir / "mini_pairs.tsv")
    left, right = encoder.encode([p[0] for p in pairs]), encoder.encode([p[1] for p in pairs])
    cosines = [float(a @ b) for a, b in zip(left, right)]
    assert record["similarity"]["metrics"]["spearman"] == pytest.approx(spearman(cosines, [p[2] for p in pairs]))
    assert record["similarity"]["counts"]["pairs"] == 4


@pytest.mark.parametrize(("content", "message"), [("{not json\n", "m.jsonl:1: not valid JSON"),
                                                  ("\n", "m.jsonl: no gold mention to score")])
def test_cli_evaluate_reports_bad_input_as_an_error(mini_index_dir: Path, tmp_path: Path, content: str,
                                                    message: str) -> None:
    bad = tmp_path / "m.jsonl"
    bad.write_text(content)
    result = CliRunner().invoke(cli, ["evaluate", str(bad), "--index", str(mini_index_dir)])
    assert result.exit_code == 2
    assert message in result.output


def test_pubtator_ids_follow_the_shared_jsonl_convention() -> None:
    from linker.gold import _pubtator_ids

    assert _pubtator_ids(["D012345+C000123", "-1", "OMIM:114480", " D001943"]) == (
        "MESH:D012345", "MESH:C000123", "OMIM:114480", "MESH:D001943")


def test_cli_evaluate_pubtator_end_to_end_by_hand(mini_index_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    """mini_e2e.pubtator: 6 gold mentions with ids (one has a wrong id on purpose: fever -> Diarrhea; one spans
    "Tiredness persisted"), 1 without id. The dictionary finds Seizures, fever, short stature, anaemia, Fatigue,
    Tiredness and the unannotated autism: 7 predictions. Strict: 4 right -> P 4/7, R 4/6.
    Overlap: Tiredness also meets "Tiredness persisted" -> P 5/7, R 5/6."""
    pubtator = data_dir / "mini_e2e.pubtator"
    out = tmp_path / "e2e.json"
    result = CliRunner().invoke(cli, ["evaluate", str(pubtator), "--docs", str(pubtator), "--index",
                                      str(mini_index_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["normalization"]["counts"]["no_gold_id"] == 1
    e2e = record["end_to_end"]
    assert (e2e["gold"], e2e["predicted"]) == (6, 7)
    assert e2e["strict"]["all"]["precision"] == pytest.approx(4 / 7)
    assert e2e["strict"]["all"]["recall"] == pytest.approx(4 / 6)
    assert e2e["overlap"]["all"]["precision"] == pytest.approx(5 / 7)
    assert e2e["overlap"]["all"]["recall"] == pytest.approx(5 / 6)
    assert e2e["strict"]["Phenotype"]["precision"] is None  # predictions carry no type
    assert "strict" in result.output and "overlap" in result.output


def test_end_to_end_needs_the_documents_of_the_mentions(mini_index_dir: Path, data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate", str(data_dir / "mini_mentions.jsonl"), "--docs",
                                      str(data_dir / "mini_e2e.pubtator"), "--index", str(mini_index_dir)])
    assert result.exit_code == 2
    assert "document(s) of the gold mentions are missing" in result.output
