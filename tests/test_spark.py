"""The Spark engine against a real local Spark (``local[2]``, started here): the same mentions and outputs as a
local run, failures recorded, a killed job resumed to identical output, a Spark-built index equal to a local one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import KeywordAnnotator

from linker.annotate import annotate
from linker.cli import cli
from linker.errors import LinkerError
from linker.locking import exclusive
from linker.spark.session import SparkOptions

TESTS = Path(__file__).parent
DATA = TESTS / "data"
NOTES = DATA / "notes" / "notes.jsonl"
CORPUS = DATA / "mini_corpus.docs.jsonl"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module; its Python workers can import the test fakes."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    from linker.spark import spark_session

    session = spark_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mini.obo built as `linker build` builds (ONNX float32): the index Spark workers load."""
    from linker.build import build_index
    from linker.sources import Source

    return build_index(Source.open(DATA / "mini.obo"), tmp_path_factory.mktemp("spark") / "mini", progress=False)


def output_files(path: Path) -> dict[str, bytes]:
    """The output and its errors log, byte for byte (not the lock or run files)."""
    files = [path, path.with_name(path.name + ".errors.jsonl")]
    return {f.name: f.read_bytes() for f in files if f.exists()}


def local_mentions(path: Path) -> dict[str, list[dict]]:
    return {record["doc_id"]: record["mentions"] for record in map(json.loads, path.read_text().splitlines())}


def test_annotate_dataframe_gives_the_mentions_of_a_local_run(spark, index_dir: Path, tmp_path: Path) -> None:
    from linker.spark import annotate_dataframe

    annotate(CORPUS, tmp_path / "local.jsonl", index=index_dir, processes=1, progress=False, candidates=3)
    expected = local_mentions(tmp_path / "local.jsonl")
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines()] + [{"doc_id": "empty", "text": None}]
    df = spark.createDataFrame(rows, "doc_id string, text string").repartition(3)
    result = annotate_dataframe(df, index=index_dir, candidates=3).collect()

    failures = [row for row in result if row.error is not None]
    assert [(row.doc_id, row.error) for row in failures] == [("empty", "the document has no text (null)")]
    assert all(row.start is None and row.concept_id is None for row in failures)
    got: dict[str, list[dict]] = {}
    for row in sorted((r for r in result if r.error is None), key=lambda r: (r.doc_id, r.start, r.end)):
        got.setdefault(row.doc_id, []).append(row.asDict(recursive=True))
    assert sum(map(len, got.values())) > 5
    for doc_id, mentions in expected.items():
        mine = got.get(doc_id, [])
        assert [(m["start"], m["end"], m["text"], m["concept_id"], m["label"], m["source"], m["negated"])
                for m in mentions] == \
               [(m["start"], m["end"], m["text"], m["concept_id"], m["label"], m["source"], m["negated"])
                for m in mine]
        for theirs, ours in zip(mentions, mine):
            assert [c["concept_id"] for c in theirs["candidates"]] == [c["concept_id"] for c in ours["candidates"]]
            assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4)


def test_an_index_shipped_with_the_job_gives_the_same_mentions(spark, index_dir: Path) -> None:
    from linker.spark import annotate_dataframe

    df = spark.createDataFrame([json.loads(line) for line in CORPUS.read_text().splitlines()], "doc_id string, text string")
    key = lambda r: (r.doc_id, r.start, r.end, r.concept_id)  # noqa: E731
    shared = sorted(map(key, annotate_dataframe(df, index=index_dir).collect()))
    shipped = sorted(map(key, annotate_dataframe(df, index=index_dir, ship_index=True).collect()))
    assert shipped == shared and len(shared) > 5


def test_a_csv_table_read_by_spark_with_reader_options(spark, index_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    source = DATA / "notes" / "notes.csv"
    annotate(source, tmp_path / "local.jsonl", index=index_dir, processes=1, progress=False)
    result = CliRunner().invoke(cli, ["-q", "annotate", str(source), "--from", "spark:csv", "--read-option", "header=true",
                                      "--read-option", "multiLine=true", "--id-field", "note_id", "--text-field",
                                      "note_text", "-o", str(tmp_path / "out.parquet"), "--index", str(index_dir),
                                      "--engine", "spark"])
    assert result.exit_code in (0, 1), result.output
    local = local_mentions(tmp_path / "local.jsonl")
    assert sorted((m["doc_id"], m["start"], m["end"], m["concept_id"])
                  for m in pq.read_table(tmp_path / "out.parquet" / "mentions").to_pylist()) == \
        sorted((doc_id, m["start"], m["end"], m["concept_id"]) for doc_id, ms in local.items() for m in ms)
    bad = CliRunner().invoke(cli, ["annotate", str(source), "--from", "spark:csv", "--conf", "novalue",
                                   "-o", str(tmp_path / "x.parquet"), "--engine", "spark"])
    assert bad.exit_code == 2 and "'novalue' is not KEY=VALUE" in bad.output


def test_annotate_dataframe_names_missing_columns(spark) -> None:
    from linker.spark import annotate_dataframe

    df = spark.createDataFrame([("a", "b")], "id string, body string")
    with pytest.raises(LinkerError, match=r"no column 'doc_id', 'text' \(its columns: id, body\)"):
        annotate_dataframe(df)


@pytest.mark.parametrize("suffix", [".jsonl", ".xml"])
def test_engine_spark_writes_the_bytes_of_a_local_run(spark, index_dir: Path, tmp_path: Path, suffix: str) -> None:
    source = DATA / "notes" / "sample.pubtator" if suffix == ".xml" else CORPUS
    local, distributed = tmp_path / f"local{suffix}", tmp_path / f"spark{suffix}"
    runner = CliRunner()
    first = runner.invoke(cli, ["-q", "annotate", str(source), "-o", str(local), "--index", str(index_dir), "-p", "1"])
    assert first.exit_code in (0, 1), first.output  # 1: the PubTator sample holds a block that cannot be read
    second = runner.invoke(cli, ["-q", "annotate", str(source), "-o", str(distributed), "--index", str(index_dir),
                                 "--engine", "spark", "--partitions", "3"])
    assert second.exit_code == first.exit_code, second.output
    assert list(output_files(distributed).values()) == list(output_files(local).values())
    assert distributed.stat().st_size > 200
    assert not Path(f"{distributed}.spark").exists()  # the parts are removed once written into the output


def test_parquet_output_holds_every_mention_and_failure(spark, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    annotate(NOTES, tmp_path / "local.jsonl", annotator=KeywordAnnotator(), processes=1, progress=False)
    stats = annotate(NOTES, tmp_path / "out.parquet", annotator=KeywordAnnotator(), engine="spark",
                     spark=SparkOptions(partitions=3), progress=False)
    assert (stats.read, stats.annotated, stats.failed_total) == (9, 5, 4)

    local = local_mentions(tmp_path / "local.jsonl")
    mentions = pq.read_table(tmp_path / "out.parquet" / "mentions").to_pylist()
    assert sorted((m["doc_id"], m["start"], m["end"], m["concept_id"], m["negated"]) for m in mentions) == \
        sorted((doc_id, m["start"], m["end"], m["concept_id"], m["negated"]) for doc_id, ms in local.items() for m in ms)
    failures = pq.read_table(tmp_path / "out.parquet" / "failures").to_pylist()
    local_failures = [json.loads(line) for line in (tmp_path / "local.jsonl.errors.jsonl").read_text().splitlines()]
    key = lambda f: (f["where"], f["stage"])  # noqa: E731
    assert sorted(map(key, failures)) == sorted(map(key, local_failures))
    assert any("<<boom>>" in f["reason"] or "choked" in f["reason"] for f in failures)

    again = annotate(NOTES, tmp_path / "out.parquet", annotator=KeywordAnnotator(), engine="spark", progress=False)
    assert (again.annotated, again.skipped) == (0, 9)  # complete: nothing is annotated twice


def test_a_spark_table_is_read_and_its_duplicate_ids_fail(spark, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"note_id": "a", "body": "seizures"}, {"note_id": "b", "body": "short stature"},
            {"note_id": "a", "body": "again"}, {"note_id": "c", "body": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "notes.parquet")
    stats = annotate(tmp_path / "notes.parquet", tmp_path / "out.parquet", input_format="spark:parquet",
                     annotator=KeywordAnnotator(), engine="spark", spark=SparkOptions(partitions=2), progress=False)
    assert stats.read == 4
    mentions = pq.read_table(tmp_path / "out.parquet" / "mentions").to_pylist()
    assert [(m["doc_id"], m["concept_id"]) for m in mentions] == [("b", "HP:0004322")]
    failures = sorted((f["doc_id"], f["stage"]) for f in pq.read_table(tmp_path / "out.parquet" / "failures").to_pylist())
    assert failures == [("a", "read"), ("a", "read"), ("c", "read")]
    with pytest.raises(LinkerError, match="written as Parquet"):
        annotate(tmp_path / "notes.parquet", tmp_path / "out.jsonl", input_format="spark:parquet",
                 annotator=KeywordAnnotator(), engine="spark", progress=False)


def test_a_second_run_on_the_same_output_is_refused(spark, tmp_path: Path) -> None:
    output = tmp_path / "out.parquet"
    with exclusive(output, "held"), pytest.raises(LinkerError, match=r"in use by another run \(pid"):
        annotate(NOTES, output, annotator=KeywordAnnotator(), engine="spark", progress=False)


def test_spark_options_need_the_spark_engine(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["annotate", str(NOTES), "-o", str(tmp_path / "o.jsonl"), "--master", "local[2]"])
    assert result.exit_code == 2 and "--master only apply with --engine spark" in result.output
    result = runner.invoke(cli, ["annotate", str(NOTES), "-o", str(tmp_path / "o.jsonl"), "--engine", "spark", "-p", "2"])
    assert result.exit_code == 2 and "--processes is for the local engine" in result.output
    result = runner.invoke(cli, ["annotate", str(NOTES), "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 2 and "needs the Spark engine" in result.output


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from fakes import HoldAnnotator
from linker.annotate import annotate
from linker.spark.session import SparkOptions
annotate({source!r}, {output!r}, annotator=HoldAnnotator({release!r}), engine="spark",
         spark=SparkOptions("local[2]", partitions=4), progress=False)
"""


def test_a_killed_job_resumes_to_the_output_of_an_uninterrupted_one(spark, tmp_path: Path) -> None:
    from fakes import HoldAnnotator

    texts = [f"note {i}: seizures" if i != 5 else "note 5: <<hold>> short stature" for i in range(12)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"doc_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    release = tmp_path / "release"
    output = tmp_path / "out.jsonl"
    parts = Path(f"{output}.spark") / "mentions"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    script = KILLED_RUN.format(tests=str(TESTS), source=str(source), output=str(output), release=str(release))
    job = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        # every part but the held one (part 1: d3-d5) is finished, and part 0 is already in the output: it is
        # written while later parts are annotated
        while len(list(parts.glob("part-*.parquet"))) < 3 or not output.exists() or \
                output.read_bytes().count(b"\n") < 3:
            assert job.poll() is None, job.stderr.read().decode()[-2000:] if job.stderr else ""
            assert time.monotonic() < deadline, "the Spark job did not finish and write its other parts"
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    written = output.read_bytes()
    assert [json.loads(line)["doc_id"] for line in written.splitlines()] == ["d0", "d1", "d2"]  # not past the held part
    assert sorted(p.name for p in parts.glob("part-*.parquet")) == ["part-00000.parquet", "part-00002.parquet",
                                                                     "part-00003.parquet"]
    release.touch()
    stats = annotate(source, output, annotator=HoldAnnotator(str(release)), engine="spark",
                     spark=SparkOptions("local[2]"), progress=False)
    assert (stats.annotated, stats.skipped) == (9, 3)  # d0-d2 were in the output
    reference = tmp_path / "reference.jsonl"
    annotate(source, reference, annotator=HoldAnnotator(str(release)), processes=1, progress=False)
    assert output.read_bytes() == reference.read_bytes() and reference.read_bytes().startswith(written)


def test_a_failed_task_leaves_the_parts_before_it_in_the_output(spark, tmp_path: Path) -> None:
    """The output is written while parts are annotated; when a task fails for good, it holds the documents of
    the parts before the failed one, in order, and the same command resumes it to a local run's output."""
    from fakes import DieAnnotator

    texts = [f"note {i}: seizures" if i != 4 else "note 4: <<die>> short stature" for i in range(12)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"doc_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    output, release = tmp_path / "out.jsonl", tmp_path / "release"

    def release_once_part_0_is_written() -> None:  # part 1 (d3-d5) waits for this before its worker dies
        deadline = time.monotonic() + 240
        while (not output.exists() or output.read_bytes().count(b"\n") < 3) and time.monotonic() < deadline:
            time.sleep(0.1)
        release.touch()

    threading.Thread(target=release_once_part_0_is_written, daemon=True).start()
    with pytest.raises(LinkerError, match="failed for good"):
        annotate(source, output, annotator=DieAnnotator(str(release)), engine="spark",
                 spark=SparkOptions(partitions=4), progress=False)
    assert [json.loads(line)["doc_id"] for line in output.read_text().splitlines()] == ["d0", "d1", "d2"]
    stats = annotate(source, output, annotator=KeywordAnnotator(), engine="spark", progress=False)
    assert (stats.annotated, stats.skipped) == (9, 3)
    reference = tmp_path / "reference.jsonl"
    annotate(source, reference, annotator=KeywordAnnotator(), processes=1, progress=False)
    assert output.read_bytes() == reference.read_bytes()


def test_parts_are_cut_for_the_task_slots(spark) -> None:
    """Every slot gets work and none is left alone at the end: 9 parts on 2 slots would end with one part
    running alone (the default part count rounded up to a multiple of the slots); --partitions is kept as given."""
    from linker.spark.job import MIN_PARTS, PART_DOCUMENTS, _part_count
    from linker.spark.session import task_slots

    assert task_slots(spark) == 2  # local[2], one core a task
    assert _part_count(10, SparkOptions(), 2) == MIN_PARTS
    assert _part_count(8 * PART_DOCUMENTS + 1, SparkOptions(), 2) == 10
    assert _part_count(8 * PART_DOCUMENTS + 1, SparkOptions(), 1) == 9
    assert _part_count(100, SparkOptions(), 12) == 12
    assert _part_count(30 * PART_DOCUMENTS, SparkOptions(), 16) == 32
    assert _part_count(30 * PART_DOCUMENTS, SparkOptions(partitions=3), 16) == 3


def test_a_spark_build_equals_a_local_build(spark, tmp_path: Path) -> None:
    import faiss

    from linker.build import build_index
    from linker.sources import Source
    from linker.spark.embed import SparkChunkEmbedder

    local = build_index(Source.open(DATA / "mini.obo"), tmp_path / "local", progress=False, chunk_size=16)
    distributed = build_index(Source.open(DATA / "mini.obo"), tmp_path / "spark", progress=False, chunk_size=16,
                              embedder=SparkChunkEmbedder(), engine="spark")

    def dump(folder: Path) -> list[str]:
        return list(sqlite3.connect(folder / "terms.sqlite").iterdump())

    assert dump(distributed) == dump(local)
    ours, theirs = (faiss.read_index(str(folder / "faiss.index")) for folder in (distributed, local))
    assert ours.ntotal == theirs.ntotal > 40
    np.testing.assert_allclose(ours.reconstruct_n(0, ours.ntotal), theirs.reconstruct_n(0, theirs.ntotal), atol=1e-5)
    meta_ours, meta_theirs = (json.loads((folder / "meta.json").read_text()) for folder in (distributed, local))
    differ = {key for key in meta_ours.keys() | meta_theirs.keys() if meta_ours.get(key) != meta_theirs.get(key)}
    assert differ <= {"built_at", "build_seconds_last_run", "build_engine"}
    assert (meta_ours["build_engine"], meta_theirs["build_engine"]) == ("spark", "local")
    assert (distributed / "onnx" / "model.onnx").exists() and not (distributed / ".build").exists()
