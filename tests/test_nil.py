"""The NIL decision: a threshold on the best score, chosen on dev mentions, flagged by lookup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from linker.cli import cli
from linker.errors import LinkerError
from linker.linking.nil import CALIBRATION_FILE, DEFAULT_THRESHOLD, calibrate, choose_threshold, confident, read_threshold
from linker.types import Candidate


def test_threshold_separates_right_from_wrong_answers() -> None:
    scores = [0.95, 0.9, 0.85, 0.6, 0.55, 0.5]
    right = [True, True, True, False, False, True]
    chosen = choose_threshold(scores, right)
    assert chosen["threshold"] == 0.85
    assert chosen["precision"] == 1.0 and chosen["recall"] == pytest.approx(0.75)


def test_equal_scores_are_never_split() -> None:
    chosen = choose_threshold([0.9, 0.7, 0.7], [True, True, False])
    assert chosen["threshold"] in (0.9, 0.7)
    assert chosen["confident"] in (1, 3)


def test_calibration_needs_scores() -> None:
    with pytest.raises(LinkerError):
        choose_threshold([], [])


def test_exact_names_are_always_confident() -> None:
    exact = Candidate("HP:1", "Fits", "Fits", 1.0, True)
    weak = Candidate("HP:2", "Macrocephaly", "Macrocephaly", 0.5, False)
    assert confident([exact], 0.99) and not confident([weak], 0.75) and not confident([], 0.1)


@pytest.fixture()
def calibrated_index(mini_index_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "index"
    shutil.copytree(mini_index_dir, folder)
    return folder


def test_calibrate_writes_the_threshold_beside_the_index(calibrated_index: Path, data_dir: Path) -> None:
    assert read_threshold(calibrated_index) == DEFAULT_THRESHOLD
    record = calibrate(calibrated_index, [data_dir / "mini_corpus.mentions.jsonl"])
    assert (calibrated_index / CALIBRATION_FILE).exists()
    assert read_threshold(calibrated_index) == record["threshold"]
    assert record["mentions"] == 20  # the composite mention counts once, with both ids


def test_lookup_flags_a_query_without_a_confident_concept(calibrated_index: Path) -> None:
    (calibrated_index / CALIBRATION_FILE).write_text(json.dumps({"threshold": 0.9}))
    result = CliRunner().invoke(cli, ["lookup", "--index", str(calibrated_index), "--json", "Seizure",
                                      "quarterly tax return"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["confident"] for r in rows] == [True, False]
    assert rows[1]["nil_threshold"] == 0.9 and rows[1]["candidates"]
    plain = CliRunner().invoke(cli, ["lookup", "--index", str(calibrated_index), "quarterly tax return"])
    assert "no confident concept" in plain.stdout


def test_cli_calibrate(calibrated_index: Path, data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["calibrate", str(data_dir / "mini_corpus.mentions.jsonl"), "--index",
                                      str(calibrated_index)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["threshold"] == read_threshold(calibrated_index)
