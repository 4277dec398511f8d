"""``linker annotate --engine spark``: the bulk job with Spark tasks in place of worker processes.

1. **Stage.** The input is cut into parts once, and frozen: the project's readers stream it on the driver
   into ``input/part-N.parquet`` (contiguous runs of documents, in input order), or, for a table Spark reads
   (``--from spark:parquet``, ``spark:jdbc`` …), Spark writes it hashed by document id into ``input/_part=N``.
2. **Annotate.** One Spark task per part that has no mentions file yet; it reads its part, annotates it with
   the same code as a local run (:func:`linker.spark.dataframe.annotate_rows`) and writes its part files
   atomically. A killed job, rerun, annotates only the parts still missing.
3. **Finish.** Parquet output is the part files themselves. Any other output is written by the project's own
   writer, in input order, from the parts and the input read again, so it equals a local run's byte for byte
   and resumes as a local run's does. It is written while the tasks run: a driver thread writes each part as
   soon as it and every part before it are finished, so only the last parts are left to write at the end.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

from linker.annotate import AnnotateStats, pending, start_writing
from linker.annotate_plan import Plan, check_same_run
from linker.errors import LinkerError
from linker.formats import Document, Failure, Progress, open_writer
from linker.formats.base import DEFAULT_ID_FIELDS, DEFAULT_TEXT_FIELDS
from linker.spark.layout import JobLayout, job_dir, read_counts, write_table
from linker.spark.merge import PartWriter
from linker.spark.session import (
    SparkOptions,
    run_tasks,
    spark_session,
    task_slots,
    task_threads,
)

log = logging.getLogger(__name__)

#: Documents per part when --partitions is not given (and at least MIN_PARTS parts).
PART_DOCUMENTS = 2000
MIN_PARTS = 8
FAILURE_COLUMNS = ("doc_id", "where", "stage", "reason")
#: How the failures of a row that could not be a document begin (the rest failed in the pipeline).
READ_FAILURES = ("duplicate document id", "the document has no")


def run_spark(plan: Plan, stats: AnnotateStats, options: SparkOptions | None, progress: bool) -> None:
    """Run *plan* on Spark into its output; *stats* gets the counts. The caller holds the output's lock."""
    options = options or SparkOptions()
    layout = JobLayout(job_dir(plan.output, plan.out_kind))
    if plan.out_kind == "parquet":
        _run_into_parquet(plan, layout, stats, options, progress)
        return
    if plan.reader is None:
        raise LinkerError(f"a table read by Spark is written as Parquet (an output ending in .parquet, or --to "
                          f"parquet), not {plan.out_kind}: its rows have no input order to keep")
    writer = open_writer(plan.output, plan.out_kind, **plan.writer_options)
    try:
        done = start_writing(plan, writer, stats)
        manifest = _manifest_of(plan, layout)
        session = None
        if not manifest.get("staged"):  # the parts are cut for the task slots of the session
            session = spark_session(options.master, options.conf, progress=progress)
            manifest = _stage_reader(plan, layout, done, options, progress, slots=task_slots(session))
        with PartWriter(plan, layout, manifest, writer, done, stats, progress) as merging:
            _annotate_parts(plan, layout, manifest, options, progress, candidates=None, session=session,
                            on_part=merging.wake)
    finally:
        writer.close()
    shutil.rmtree(layout.root, ignore_errors=True)  # every part is in the output now


def _manifest_of(plan: Plan, layout: JobLayout) -> dict[str, Any]:
    """The manifest of the work folder; parts staged by a run with other settings are discarded."""
    manifest = layout.manifest()
    if manifest and manifest.get("settings") != plan.settings:
        log.info("discarding the parts in %s: they were made with other settings", layout.root)
        for folder in (layout.input_dir, layout.mentions_dir, layout.failures_dir):
            shutil.rmtree(folder, ignore_errors=True)
        return {}
    return manifest


# -- staging ---------------------------------------------------------------------------------------------------
def _part_count(total: int, options: SparkOptions, slots: int) -> int:
    """--partitions, else about PART_DOCUMENTS documents a part, at least MIN_PARTS, rounded up to a multiple of
    the *slots* (tasks that run at once): every slot has work, and no part is left to run alone at the end."""
    if options.partitions:
        return max(1, options.partitions)
    parts = max(MIN_PARTS, slots, math.ceil(total / PART_DOCUMENTS))
    return -(-parts // slots) * slots


def _stage_reader(plan: Plan, layout: JobLayout, done: Progress, options: SparkOptions, progress: bool,
                  failures: list[Failure] | None = None, slots: int = 1) -> dict[str, Any]:
    """Cut the documents still to do into parts of the input, in order; read failures go to *failures*."""
    import pyarrow as pa

    assert plan.reader is not None
    total = plan.reader.estimate_total()
    if total is None:  # count first: the parts must be cut before they are annotated
        total = sum(1 for item in plan.reader if isinstance(item, Document))
    todo = max(0, total - len(done.done_ids) - len(done.failed_where))
    parts = _part_count(todo, options, slots)
    size = max(1, math.ceil(todo / parts))
    log.info("staging %s as %d parts of about %d documents in %s", plan.reader.path, parts, size, layout.input_dir)
    documents: list[int] = []
    columns: dict[str, list[str]] = {"doc_id": [], "text": [], "where": []}

    def flush() -> None:
        write_table(pa.table(columns), layout.input_part(len(documents), table=False))
        documents.append(len(columns["doc_id"]))
        for values in columns.values():
            values.clear()

    started = time.perf_counter()
    bar = tqdm(total=todo, unit="doc", desc="staging", disable=not progress)
    for item in pending(plan.reader, done, AnnotateStats()):
        if isinstance(item, Failure):
            if failures is not None:
                failures.append(item)
            continue
        columns["doc_id"].append(item.doc_id)
        columns["text"].append(item.text)
        columns["where"].append(item.where)
        bar.update(1)
        if len(columns["doc_id"]) == size:  # an input longer than its estimate gets more parts, not a huge last one
            flush()
    if columns["doc_id"] or not documents:
        flush()
    bar.close()
    manifest = {"settings": plan.settings, "staged": True, "table": False, "parts": len(documents),
                "documents": documents}
    layout.save_manifest(manifest)
    log.info("staged %d documents in %.1f s", sum(documents), time.perf_counter() - started)
    return manifest


def _stage_table(plan: Plan, layout: JobLayout, options: SparkOptions, session: Any, id_field: str | None,
                 text_field: str | None) -> dict[str, Any]:
    """Read the table with Spark and write it hashed by document id into ``input/_part=N``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    fmt = str(plan.settings["input_format"]).removeprefix("spark:")
    reader = session.read.format(fmt).options(**options.read_options)
    df = reader.load(plan.input) if plan.input not in ("", "-") else reader.load()
    id_col = _column(df.columns, id_field, DEFAULT_ID_FIELDS, "--id-field", plan.input)
    text_col = _column(df.columns, text_field, DEFAULT_TEXT_FIELDS, "--text-field", plan.input)
    docs = df.select(F.col(id_col).cast("string").alias("doc_id"), F.col(text_col).cast("string").alias("text"))
    total = docs.count()
    parts = _part_count(total, options, task_slots(session))
    copies = F.count(F.lit(1)).over(Window.partitionBy("doc_id"))
    staged = (docs.withColumn("copies", copies)
              .withColumn("where", F.concat(F.lit(f"{plan.input}#"), F.coalesce(F.col("doc_id"), F.lit("null"))))
              .withColumn("_part", F.expr(f"pmod(hash(doc_id), {parts})")))
    log.info("staging the %s table %s (%d rows) as %d parts in %s", fmt, plan.input, total, parts, layout.input_dir)
    staged.write.mode("overwrite").partitionBy("_part").parquet(str(layout.input_dir))
    manifest = {"settings": plan.settings, "staged": True, "table": True, "parts": parts, "rows": total}
    layout.save_manifest(manifest)
    return manifest


def _column(columns: list[str], wanted: str | None, defaults: tuple[str, ...], option: str, source: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise LinkerError(f"{source} has no column {wanted!r} (its columns: {', '.join(columns)}); fix {option}")
        return wanted
    for name in defaults:
        if name in columns:
            return name
    raise LinkerError(f"{source} has none of the columns {', '.join(defaults)} (its columns: {', '.join(columns)}); "
                      f"name the column with {option}")


# -- annotation --------------------------------------------------------------------------------------------------
def _annotate_parts(plan: Plan, layout: JobLayout, manifest: dict[str, Any], options: SparkOptions, progress: bool,
                    candidates: int | None, session: Any = None, on_part: Callable[[], None] | None = None) -> None:
    """Annotate every part without a mentions file, one Spark task each, with a progress bar over documents;
    *on_part* is called as each part's file appears."""
    parts = int(manifest["parts"])
    missing = [part for part in range(parts) if part not in set(layout.finished(parts))]
    if not missing:
        return
    session = session or spark_session(options.master, options.conf, progress=progress)
    threads = task_threads(session)
    task = _PartTask(str(layout.root), bool(manifest["table"]), plan.annotator, threads, plan.batch_size, candidates,
                     final=plan.out_kind == "parquet")
    sizes = manifest.get("documents")
    log.info("annotating %d of %d parts on %s with %d thread(s) per task", len(missing), parts,
             session.sparkContext.master, threads)
    started = time.perf_counter()
    unit, total = ("doc", sum(sizes[part] for part in missing)) if sizes else ("part", len(missing))
    with tqdm(total=total, unit=unit, desc="annotating", disable=not progress, dynamic_ncols=True) as bar:

        def finished(part: int) -> None:
            bar.update(sizes[part] if sizes else 1)
            if on_part is not None:
                on_part()

        # shown from the start: the first parts finish only once each worker has loaded its pipeline
        run_tasks(session, missing, task, f"concept-linker: annotate {len(missing)} parts of {plan.input}",
                  layout.is_finished, finished, "parts", tick=bar.refresh)
    log.info("annotated %d parts in %.1f s", len(missing), time.perf_counter() - started)


class _PartTask:
    """What one Spark task runs: annotate the staged part(s) it is given and write their part files."""

    def __init__(self, root: str, table: bool, annotator: Any, threads: int, batch_size: int, candidates: int | None,
                 final: bool) -> None:
        self.root, self.table, self.annotator, self.threads = root, table, annotator, threads
        self.batch_size, self.candidates, self.final = batch_size, candidates, final

    def __call__(self, parts: Iterator[int]) -> Iterator[dict[str, int]]:
        from pathlib import Path

        layout = JobLayout(Path(self.root))
        for part in parts:
            yield self.run(layout, part)

    def run(self, layout: JobLayout, part: int) -> dict[str, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from linker.spark.dataframe import annotate_rows, worker_annotator
        from linker.spark.records import arrow_schema, failure_row

        target = layout.mentions_part(part)
        if target.exists():  # a task attempt run twice (speculation, a retried stage)
            return read_counts(target)
        source = layout.input_part(part, self.table)
        if source.exists():
            staged = pq.read_table(source, columns=["doc_id", "text", "where"] + (["copies"] if self.table else []))
            if self.table:
                staged = staged.sort_by([("doc_id", "ascending"), ("text", "ascending")])
        else:  # a hashed part no row fell into
            staged = pa.table({"doc_id": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                               "where": pa.array([], pa.string())})
        ids, texts = staged.column("doc_id").to_pylist(), staged.column("text").to_pylist()
        copies = staged.column("copies").to_pylist() if "copies" in staged.column_names else [1] * len(ids)
        rows: list[dict[str, Any]] = []
        duplicates = {i for i, n in enumerate(copies) if n and n > 1 and ids[i] is not None}
        keep = [i for i in range(len(ids)) if i not in duplicates]
        annotated = annotate_rows([ids[i] for i in keep], [texts[i] for i in keep],
                                  worker_annotator(self.annotator, self.threads), self.batch_size, self.candidates)
        rows.extend(annotated)
        for i in sorted(duplicates):
            rows.append(failure_row(ids[i], f"duplicate document id ({copies[i]} rows have it); none is annotated"))
        failed = [row for row in rows if row["error"] is not None]
        counts = {"part": part, "documents": len(ids), "failed": len(failed), "mentions": len(rows) - len(failed)}
        if not self.final:
            write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), target, counts)
            return counts
        where = dict(zip(ids, staged.column("where").to_pylist()))
        failures = [{"doc_id": row["doc_id"], "where": where.get(row["doc_id"]) or str(row["doc_id"]),
                     "stage": "read" if row["error"].startswith(READ_FAILURES) else "annotate", "reason": row["error"]}
                    for row in failed]
        write_table(_failures_table(failures), layout.failures_part(part))
        mentions = pa.Table.from_pylist([row for row in rows if row["error"] is None], schema=arrow_schema())
        write_table(mentions.drop_columns(["error"]), target, counts)
        return counts


def _failures_table(failures: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(failures, schema=pa.schema([(name, pa.string()) for name in FAILURE_COLUMNS]))


# -- Parquet output ----------------------------------------------------------------------------------------------
def _run_into_parquet(plan: Plan, layout: JobLayout, stats: AnnotateStats, options: SparkOptions,
                      progress: bool) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    manifest = layout.manifest()
    check_same_run(plan.output, plan.out_kind, plan.settings, resuming=bool(manifest))
    if manifest.get("complete"):
        log.info("%s is complete; nothing to do (add --overwrite to annotate again)", plan.output)
        stats.skipped = stats.read = int(manifest["read"])
        stats.failed_total = int(manifest["failed"])
        return
    session = None
    if not manifest.get("staged"):
        session = spark_session(options.master, options.conf, progress=progress)
        if plan.reader is None:
            manifest = _stage_table(plan, layout, options, session, plan.settings["id_field"],
                                    plan.settings["text_field"])
        else:
            read_failures: list[Failure] = []
            manifest = _stage_reader(plan, layout, Progress(), options, progress, read_failures, task_slots(session))
            write_table(_failures_table([f.to_dict() for f in read_failures]), layout.failures_part("read"))
            manifest["read_failures"] = len(read_failures)
            layout.save_manifest(manifest)
    parts = int(manifest["parts"])
    before = set(layout.finished(parts))
    _annotate_parts(plan, layout, manifest, options, progress, candidates=plan.candidates, session=session)
    counts = [read_counts(layout.mentions_part(part)) for part in range(parts)]
    read_failures_count = int(manifest.get("read_failures", 0))
    documents = sum(c["documents"] for c in counts)
    stats.read = documents + read_failures_count
    stats.skipped = sum(c["documents"] for c in counts if c["part"] in before)
    stats.failed = sum(c["failed"] for c in counts if c["part"] not in before) + (0 if before else read_failures_count)
    stats.failed_total = sum(c["failed"] for c in counts) + read_failures_count
    stats.annotated = sum(c["documents"] - c["failed"] for c in counts if c["part"] not in before)
    stats.mentions = sum(c["mentions"] for c in counts if c["part"] not in before)
    manifest.update(complete=True, read=stats.read, failed=stats.failed_total,
                    mentions=sum(c["mentions"] for c in counts))
    layout.save_manifest(manifest)
    shutil.rmtree(layout.input_dir, ignore_errors=True)  # a copy of the input, no longer needed


__all__ = ["run_spark"]
