from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from linker.cli import cli


def run(*args: str, stdin: str | None = None):  # noqa: ANN201
    return CliRunner().invoke(cli, list(args), input=stdin)


def test_lookup_json_and_stdin(mini_index_dir: Path) -> None:
    result = run("lookup", "--index", str(mini_index_dir), "--json", "-k", "2", "Nephromegaly", "tiredness")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["query"] for line in lines] == ["Nephromegaly", "tiredness"]
    first = lines[0]["candidates"][0]
    assert first["concept_id"] == "HP:0000105" and first["name"] == "Enlarged kidney" and first["score"] == 1.0
    # "tiredness" names one concept: answered from the term dictionary alone, unless --rank asks for k
    assert [c["concept_id"] for c in lines[1]["candidates"]] == ["HP:0012378"] and lines[1]["candidates"][0]["exact"]
    ranked = run("lookup", "--index", str(mini_index_dir), "--json", "-k", "2", "--rank", "tiredness")
    assert len(json.loads(ranked.output)["candidates"]) == 2
    piped = run("lookup", "--index", str(mini_index_dir), "--json", "-k", "1", stdin="fever\n\nataxia\n")
    assert [json.loads(line)["candidates"][0]["concept_id"] for line in piped.output.splitlines()] == [
        "HP:0001945", "HP:0001251"]


def test_lookup_table(mini_index_dir: Path) -> None:
    result = run("lookup", "--index", str(mini_index_dir), "-k", "1", "Seizures")
    assert result.exit_code == 0
    assert "HP:0001250  Seizure  (via 'Seizures')" in result.output


def test_get_resolves_alt_ids(mini_index_dir: Path) -> None:
    result = run("get", "--index", str(mini_index_dir), "HP:0000008")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("HP:0000008 -> HP:0000077\nHP:0000077  Abnormality of the kidney")
    assert "parent: HP:0000118  Phenotypic abnormality" in result.output
    card = json.loads(run("get", "--index", str(mini_index_dir), "--json", "HP:0001250").output)
    assert card["name"] == "Seizure" and card["parents"] == [{"concept_id": "HP:0000118", "name": "Phenotypic abnormality"}]


def test_info(mini_index_dir: Path) -> None:
    info = json.loads(run("info", "--index", str(mini_index_dir)).output)
    assert info["counts"]["concepts"] == 21 and info["encoder"]["dimension"] == 384


def test_user_errors_are_messages_not_tracebacks(mini_index_dir: Path, tmp_path: Path) -> None:
    missing = run("get", "--index", str(mini_index_dir), "HP:7654321")
    assert missing.exit_code == 2 and "HP:7654321 is not a concept" in missing.output
    assert "Traceback" not in missing.output
    bad = tmp_path / "bad.obo"
    bad.write_text("[Term]\nid: X:1\nname: fine\nsynonym: no quotes EXACT []\n")
    built = run("build", str(bad), str(tmp_path / "out"))
    assert built.exit_code == 2 and f"{bad}:4: synonym: expected a quoted string" in built.output
    nothing = run("lookup", "--index", str(tmp_path / "nowhere"), "x")
    assert nothing.exit_code == 2 and "no meta.json" in nothing.output
    wrong = run("build", str(bad), str(tmp_path / "out"), "--sab", "MSH")
    assert wrong.exit_code == 2 and "--language/--sab applies to the umls format only" in wrong.output


def test_bad_values_are_refused_before_any_work(mini_index_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    source = str(data_dir / "mini_dictionary.tsv")
    afile = tmp_path / "afile"
    afile.write_text("x")
    into_file = run("build", source, str(afile))
    assert into_file.exit_code == 2 and "is a file, not an index folder" in into_file.output
    factory = run("build", source, str(tmp_path / "f"), "--faiss", "Nonsense,,")
    assert factory.exit_code == 2 and "neither a preset" in factory.output and not (tmp_path / "f").exists()
    for option in ("--batch-size", "--max-length"):
        zero = run("build", source, str(tmp_path / "z"), option, "0")
        assert zero.exit_code == 2 and f"Invalid value for '{option}'" in zero.output
    huge = run("lookup", "--index", str(mini_index_dir), stdin="fits " * 100_000 + "\n")
    assert huge.exit_code == 2 and "a query of 500,000 characters" in huge.output
    for result in (into_file, factory, zero, huge):
        assert "Traceback" not in result.output


def test_build_tsv_with_alt_ids(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "medic-mini"
    result = run("build", str(data_dir / "mini_dictionary.tsv"), str(out), "--alt-ids",
                 str(data_dir / "mini_alt_ids.tsv"), "--faiss", "hnsw")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "meta.json").read_text())["counts"]["alt_ids"] == 2
    got = run("get", "--index", str(out), "--json", "OMIM:114480")
    assert json.loads(got.output)["concept_id"] == "MESH:D001943"


def test_version() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"linker, version {version('concept-linker')}"


def test_a_full_disk_is_a_clear_error_not_a_traceback(mini_index_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import errno
    import sqlite3

    from linker.formats.jsonl import JsonlWriter
    from linker.formats.sqlite import SqliteWriter

    def no_space(self, *args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.jsonl"))

    def sqlite_full(self, *args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    notes = Path(__file__).parent / "data" / "notes" / "notes.jsonl"
    for writer, fault, output in ((JsonlWriter, no_space, "out.jsonl"), (SqliteWriter, sqlite_full, "out.sqlite")):
        monkeypatch.setattr(writer, "write", fault)
        result = CliRunner().invoke(cli, ["annotate", str(notes), "-o", str(tmp_path / output), "--index",
                                          str(mini_index_dir), "-p", "1"])
        assert result.exit_code == 2, result.output
        assert "the disk is full" in result.output and "run the same command again" in result.output
        assert not isinstance(result.exception, (OSError, sqlite3.Error)) and "Traceback" not in result.output


def test_spacy_log_lines_are_printed_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = ("import logging, sys\nfrom linker.cli import cli\n"
              "try:\n    cli(['-q', 'verify', '--index', 'no-such-index'])\nexcept SystemExit:\n    pass\n"
              "import spacy\nlogging.getLogger('spacy').warning('a spaCy warning')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stderr.count("a spaCy warning") == 1, result.stderr
