"""Bulk annotation: counts, failures recorded not dropped, interrupted-and-resumed runs equal uninterrupted ones."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import InterruptAfter, KeywordAnnotator

from linker.annotate import annotate
from linker.cli import cli
from linker.errors import LinkerError

NOTES = Path(__file__).parent / "data" / "notes"
OUTPUTS = ["out.jsonl", "out.pubtator", "out.xml", "brat/", "out.sqlite"]


def snapshot(path: Path) -> dict[str, object]:
    """Everything a run left: files byte for byte, SQLite tables row for row; not the run's lock, which names
    its last holder and the second it was taken."""
    if path.suffix == ".sqlite":
        conn = sqlite3.connect(path)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: conn.execute(f"SELECT * FROM [{t}] ORDER BY rowid").fetchall() for t in tables}
    files = sorted(path.iterdir()) if path.is_dir() else sorted(path.parent.glob(path.name + "*"))
    return {f.name: f.read_bytes() for f in files if f.suffix != ".lock"}


def run(output: Path | str, annotator: object, **options: object):  # noqa: ANN201
    return annotate(NOTES / "notes.jsonl", output, annotator=annotator, processes=1, batch_size=1,
                    progress=False, **options)


def test_counts_and_failures_recorded(tmp_path: Path) -> None:
    stats = run(tmp_path / "out.jsonl", KeywordAnnotator())
    assert (stats.read, stats.annotated, stats.failed, stats.skipped) == (9, 5, 4, 0)
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["doc_id"], e["where"], e["stage"]) for e in errors] == [
        ("bad-json", "notes.jsonl:3", "read"), ("bad-utf8", "notes.jsonl:5", "read"),
        ("no-text", "notes.jsonl:7", "read"), ("n5", "notes.jsonl:8", "annotate")]
    assert "choked on <<boom>>" in errors[3]["reason"]
    ids = [json.loads(line)["doc_id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert ids == ["n1", "n2", "n3", "n4", "n6"]
    again = run(tmp_path / "out.jsonl", KeywordAnnotator())  # nothing left to do, nothing duplicated
    assert (again.annotated, again.failed, again.skipped, again.failed_total) == (0, 0, 9, 4)


@pytest.mark.parametrize("name", OUTPUTS)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path: Path, name: str, mini_index_dir: Path) -> None:
    whole, broken = f"{tmp_path}/whole/{name}", f"{tmp_path}/broken/{name}"
    run(whole, KeywordAnnotator(), index=mini_index_dir)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C after three documents
        run(broken, InterruptAfter(3), index=mini_index_dir)
    if name == "out.jsonl":  # and a write torn by a kill
        with open(broken, "ab") as fh:
            fh.write(b'{"doc_id": "n4", "mentions": [{"sta')
    assert snapshot(Path(broken)) != snapshot(Path(whole))
    stats = run(broken, KeywordAnnotator(), index=mini_index_dir)
    assert stats.skipped > 0 and stats.annotated > 0
    assert snapshot(Path(broken)) == snapshot(Path(whole))


@pytest.mark.parametrize("name", ["out.jsonl", "brat/", "out.sqlite"])
def test_overwrite_starts_afresh(tmp_path: Path, name: str, mini_index_dir: Path) -> None:
    output = f"{tmp_path}/{name}"
    run(output, KeywordAnnotator(), index=mini_index_dir)
    first = snapshot(Path(output))
    stats = run(output, KeywordAnnotator(), index=mini_index_dir, overwrite=True)
    assert (stats.skipped, stats.annotated, stats.failed) == (0, 5, 4)
    assert snapshot(Path(output)) == first


FOREIGN = {"out.jsonl": b'{"doc_id": 5, "x": 1}\n[1, 2]\n', "out.pubtator": b"patient,visit\n1,2\n",
           "out.xml": b"<html><body>not BioC</body></html>\n", "out.sqlite": None, "brat/": None}


@pytest.mark.parametrize("name", OUTPUTS)
def test_a_file_this_package_did_not_write_is_refused_not_cut(tmp_path: Path, name: str, mini_index_dir: Path) -> None:
    from linker.errors import LinkerError

    output = tmp_path / name
    if name == "out.sqlite":
        conn = sqlite3.connect(output)
        conn.execute("CREATE TABLE patients (name TEXT)")
        conn.commit()
        conn.close()
    elif name == "brat/":
        output.mkdir()
        (output / "errors.jsonl").write_text("{}\n")
    else:
        output.write_bytes(FOREIGN[name])
    def untouched() -> dict[str, object]:  # what the run found, less the lock file the refusal leaves
        return {name: data for name, data in snapshot(output).items() if not name.endswith(".lock")}

    before = untouched()
    with pytest.raises(LinkerError, match="not (an output of|a database written by) linker annotate.*--overwrite"):
        run(output, KeywordAnnotator(), index=mini_index_dir)
    assert untouched() == before
    if name != "out.sqlite":  # an errors file that is not one is refused too
        log = tmp_path / "again" / name
        run(f"{log}/" if name.endswith("/") else log, KeywordAnnotator(), index=mini_index_dir)
        errors = log / "errors.jsonl" if log.is_dir() else Path(f"{log}.errors.jsonl")
        errors.write_text("garbage\n")
        with pytest.raises(LinkerError, match="errors.jsonl:1: a line that is not JSON"):
            run(f"{log}/" if name.endswith("/") else log, KeywordAnnotator(), index=mini_index_dir)


def test_resuming_with_other_settings_is_refused(tmp_path: Path, mini_index_dir: Path) -> None:
    from linker.errors import LinkerError

    output = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(output, InterruptAfter(2), index=mini_index_dir)
    with pytest.raises(LinkerError, match="candidates was 5, now 3.*--overwrite"):
        run(output, KeywordAnnotator(), index=mini_index_dir, candidates=3)
    assert run(output, KeywordAnnotator(), index=mini_index_dir).skipped == 2


def test_pubtator_refuses_ids_it_cannot_hold(tmp_path: Path) -> None:
    source = tmp_path / "ids.jsonl"
    source.write_text('{"id": "a|b", "text": "seizures"}\n{"id": "c", "text": "seizures"}\n')
    stats = annotate(source, tmp_path / "out.pubtator", annotator=KeywordAnnotator(), processes=1, progress=False)
    assert (stats.annotated, stats.failed) == (1, 1)
    error = json.loads((tmp_path / "out.pubtator.errors.jsonl").read_text())
    assert error["doc_id"] == "a|b" and error["stage"] == "write"


def test_output_must_not_be_the_input(tmp_path: Path) -> None:
    from linker.errors import LinkerError

    source = tmp_path / "notes.jsonl"
    source.write_bytes((NOTES / "notes.jsonl").read_bytes())
    with pytest.raises(LinkerError, match="is the input"):
        annotate(source, source, annotator=KeywordAnnotator(), processes=1, progress=False)
    assert source.read_bytes() == (NOTES / "notes.jsonl").read_bytes()


def test_two_processes_equal_one(tmp_path: Path) -> None:
    one = annotate(NOTES / "notes.jsonl", tmp_path / "one.jsonl", annotator=KeywordAnnotator(), processes=1,
                   batch_size=2, progress=False)
    two = annotate(NOTES / "notes.jsonl", tmp_path / "two.jsonl", annotator=KeywordAnnotator(), processes=2,
                   batch_size=2, progress=False)
    assert (one.annotated, one.failed) == (two.annotated, two.failed) == (5, 4)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert (tmp_path / "one.jsonl.errors.jsonl").read_bytes() == (tmp_path / "two.jsonl.errors.jsonl").read_bytes()


def test_duplicate_ids_are_recorded_once(tmp_path: Path) -> None:
    source = tmp_path / "dupes.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": "seizures"}) + "\n" for i in ["a", "b", "a", "c"]))
    for attempt in range(2):
        stats = annotate(source, tmp_path / "out.jsonl", annotator=KeywordAnnotator(), processes=1, progress=False)
        assert stats.failed_total == 1
    assert [json.loads(line)["doc_id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == ["a", "b", "c"]
    errors = (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()
    assert len(errors) == 1 and "duplicate document id" in errors[0] and "dupes.jsonl:3" in errors[0]


def test_cli_annotates_with_the_pipeline(tmp_path: Path, mini_index_dir: Path) -> None:
    out = tmp_path / "notes.sqlite"
    args = ["-q", "annotate", str(NOTES / "notes.jsonl"), "-o", str(out), "--index", str(mini_index_dir), "-p", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output  # four documents failed
    assert "read 9, annotated 6, failed 3" in result.output
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 6
    linked = {row[0] for row in conn.execute("SELECT concept_id FROM mentions")}
    assert "HP:0001250" in linked  # "seizures" -> Seizure
    negated = conn.execute("SELECT count(*) FROM mentions WHERE negated").fetchone()[0]
    assert negated >= 1  # "No short stature", "no seizures"
    assert CliRunner().invoke(cli, args).exit_code == 1  # the failures stay on record
    assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 6


def test_cli_unknown_output_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["annotate", str(NOTES / "notes.jsonl"), "-o", str(tmp_path / "out.weird")])
    assert result.exit_code == 2 and "--to" in result.output


def test_parallel_run_reads_ahead_only_a_few_batches() -> None:
    """Memory stays bounded: the input is not consumed faster than results are written."""
    from linker.annotate import AnnotateStats, _annotate_parallel, _Batch
    from linker.formats import Document, Writer

    produced = 0
    lead: list[int] = []

    def batches():  # 200 batches of 2 documents, counted as they are read
        nonlocal produced
        for b in range(200):
            produced += 2
            yield _Batch([Document(f"d{b}-{i}", "seizures", f"in:{b}") for i in range(2)])

    class CountingWriter(Writer):
        written = 0

        def write(self, doc: Document, mentions: list) -> None:
            self.written += 1
            lead.append(produced - self.written)

        def write_error(self, failure: object) -> None:
            raise AssertionError(failure)

    writer = CountingWriter()
    _annotate_parallel(batches(), writer, KeywordAnnotator(), 2, AnnotateStats(), _NullBar())
    assert writer.written == 400
    assert max(lead) <= (2 * 2 + 1) * 2  # the window: two batches per process, plus the one being written


class _NullBar:
    def update(self, n: int) -> None:
        pass


@pytest.mark.parametrize(("name", "bad_id"), [("out.bioc.xml", "nul\u0000id"), ("out.bioc.xml", "two\nlines"),
                                              ("out.pubtator", "two\nlines"), ("brat", "x" * 300)])
def test_ids_a_format_cannot_hold_are_that_documents_failure_and_resume_adds_nothing(
        tmp_path: Path, name: str, bad_id: str) -> None:
    source = tmp_path / "ids.jsonl"
    source.write_text(json.dumps({"id": bad_id, "text": "seizures"}) + "\n"
                      + json.dumps({"id": "good", "text": "seizures"}) + "\n")
    output = tmp_path / name
    fmt = "brat" if name == "brat" else None
    stats = annotate(source, output, annotator=KeywordAnnotator(), processes=1, progress=False, output_format_name=fmt)
    assert (stats.annotated, stats.failed) == (1, 1)
    again = annotate(source, output, annotator=KeywordAnnotator(), processes=1, progress=False, output_format_name=fmt)
    assert (again.annotated, again.skipped) == (0, 2)
    if name.endswith(".xml"):
        import xml.etree.ElementTree as ET

        assert [d.findtext("id") for d in ET.parse(output).getroot().iter("document")] == ["good"]


def test_a_bioc_output_without_documents_resumes_without_a_torn_tail(tmp_path: Path, caplog) -> None:
    source = tmp_path / "ids.jsonl"
    source.write_text(json.dumps({"id": "a\u0000b", "text": "seizures"}) + "\n")  # its one document fails
    output = tmp_path / "out.xml"
    annotate(source, output, annotator=KeywordAnnotator(), processes=1, progress=False)
    first = output.read_bytes()
    with caplog.at_level("WARNING"):
        again = annotate(source, output, annotator=KeywordAnnotator(), processes=1, progress=False)
    assert again.skipped == 1 and output.read_bytes() == first
    assert "torn" not in caplog.text


class _CannotLoad:
    """An annotator whose pipeline does not load (a damaged pipeline folder, say)."""

    def load(self) -> None:
        raise ValueError("config.cfg: the model weights are missing")

    def __call__(self, texts: object) -> list[list[object]]:  # pragma: no cover - never reached
        raise AssertionError("annotated without a loaded pipeline")


def test_a_pipeline_that_cannot_load_fails_the_run_once_not_every_document(tmp_path: Path) -> None:
    with pytest.raises(LinkerError, match="the pipeline could not be loaded .*model weights are missing"):
        run(tmp_path / "out.jsonl", _CannotLoad())
    assert not (tmp_path / "out.jsonl.errors.jsonl").exists()  # no document recorded as failed


@pytest.mark.parametrize("name", ["out.jsonl", "out.pubtator", "out.xml"])
def test_an_input_without_documents_leaves_an_empty_output_not_a_missing_one(tmp_path: Path, name: str) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    stats = annotate(empty, tmp_path / name, annotator=KeywordAnnotator(), processes=1, progress=False)
    assert stats.read == 0
    assert (tmp_path / name).is_file()
    again = annotate(empty, tmp_path / name, annotator=KeywordAnnotator(), processes=1, progress=False)
    assert again.read == 0  # and it resumes as an output of this linker


@pytest.mark.parametrize("setting, message", [
    ("k=-1", "k=-1: must be at least 1"),
    ("threshold=NaN", "threshold=nan: must be a finite number"),
    ("threshold=2", "threshold=2: must lie between 0 and 1"),
    ("batch_size=1.5", "batch_size=1.5: must be a whole number"),
    ("acronyms=1", "acronyms=1: must be true or false"),
    ('types="Disease"', "types='Disease': must be a list of strings"),
    ('unlinked="hide"', "unlinked='hide': use 'keep' or 'drop'"),
])
def test_a_bad_setting_value_is_one_clear_error_before_any_document(tmp_path: Path, mini_index_dir: Path,
                                                                    setting: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["annotate", str(NOTES / "notes.jsonl"), "-o", str(tmp_path / "out.jsonl"),
                                      "--index", str(mini_index_dir), "-p", "1", "--set", setting])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out.jsonl.errors.jsonl").exists()
