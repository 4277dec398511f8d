from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from linker.cli import cli
from linker.pipeline import load_pipeline
from linker.render import render_html, write_html


def test_render_html_labels_spans_with_concept_id_and_name(mini_index_dir: Path, tmp_path: Path) -> None:
    nlp = load_pipeline(mini_index_dir)
    docs = list(nlp.pipe(["Seizures and no fever.", ""]))
    page = render_html(docs, titles=["note <1>", None])
    assert "HP:0001250 Seizure" in page and "NOT HP:0001945 Fever" in page
    assert "note &lt;1&gt;" in page and page.startswith("<!DOCTYPE html>")
    out = write_html(tmp_path / "sub" / "page.html", docs[0])
    assert "HP:0001250" in out.read_text(encoding="utf-8")


def test_linker_render_writes_a_page(mini_index_dir: Path, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Enlarged kidneys.", encoding="utf-8")
    out = tmp_path / "linked.html"
    result = CliRunner().invoke(cli, ["-q", "render", "Seizures.", "--file", str(note), "--index",
                                      str(mini_index_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "HP:0001250 Seizure" in page and "HP:0000105 Enlarged kidney" in page and "note.txt" in page


def test_linker_render_reports_a_missing_index(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "x", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no meta.json" in result.output


def test_linker_render_refuses_a_text_longer_than_a_page(mini_index_dir: Path, tmp_path: Path) -> None:
    note = tmp_path / "long.txt"
    note.write_text("fits " * 250_000)
    result = CliRunner().invoke(cli, ["render", "--file", str(note), "--index", str(mini_index_dir),
                                      "-o", str(tmp_path / "p.html")])
    assert result.exit_code == 2 and "long.txt: 1,250,000 characters" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "p.html").exists()
