"""``annotate_dataframe``: link the texts of a Spark DataFrame with ``mapInPandas``, one pipeline per Python worker.

Spark hands each Python worker Arrow batches of (id, text); the worker annotates them in sub-batches of
``batch_size`` with the same code as a local run (:func:`linker.annotate.annotate_texts`), so a document
gets the same mentions whichever engine annotates it. Workers are reused across tasks and keep their
pipeline in a module-level cache, so the model loads once per worker, not once per batch or task.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from linker.annotate import Annotator, PipelineAnnotator, annotate_texts
from linker.errors import LinkerError
from linker.spark.records import COLUMNS, failure_row, mention_row, spark_schema
from linker.spark.session import require_pyspark, task_threads

log = logging.getLogger(__name__)

#: Pipelines loaded in this (worker) process, by what they were loaded from.
_LOADED: dict[str, Annotator] = {}
#: An index shipped with the job: ``SHIPPED + folder name``, found on an executor with ``SparkFiles.get``.
SHIPPED = "sparkfiles:"


def worker_annotator(annotator: Annotator, threads: int) -> Annotator:
    """*annotator* loaded in this process, once: a reused Python worker keeps a pipeline for every later task.

    Any other annotator (tests) is used as Spark handed it over."""
    from linker.encoders import set_threads

    if not isinstance(annotator, PipelineAnnotator):
        set_threads(threads)
        return annotator
    key = json.dumps([annotator.index, annotator.pipeline, annotator.config, threads], sort_keys=True, default=str)
    loaded = _LOADED.get(key)
    if loaded is None:
        set_threads(threads)  # slots x threads = cores, not cores squared
        if annotator.index is not None and annotator.index.startswith(SHIPPED):
            from pyspark import SparkFiles

            annotator = PipelineAnnotator(SparkFiles.get(annotator.index.removeprefix(SHIPPED)), annotator.config,
                                          annotator.pipeline)
        annotator.load()
        loaded = _LOADED[key] = annotator
    return loaded


def annotate_rows(ids: list[Any], texts: list[Any], annotator: Annotator, batch_size: int,
                  candidates: int | None) -> list[dict[str, Any]]:
    """Mention rows of the documents *ids*/*texts*, in order; a failure row for each document that failed."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), batch_size):
        batch = [(doc_id, text) for doc_id, text in zip(ids[start:start + batch_size], texts[start:start + batch_size])]
        usable = [(str(doc_id), text) for doc_id, text in batch if _present(doc_id) and isinstance(text, str)]
        results = iter(annotate_texts([text for _, text in usable], annotator) if usable else [])
        for doc_id, text in batch:
            if not _present(doc_id):
                rows.append(failure_row(None, "the document has no id (null)"))
                continue
            if not isinstance(text, str):
                rows.append(failure_row(str(doc_id), "the document has no text (null)"))
                continue
            result = next(results)
            if isinstance(result, str):
                rows.append(failure_row(str(doc_id), result))
            else:
                rows.extend(mention_row(str(doc_id), mention, candidates) for mention in result)
    return rows


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))  # pandas may give NaN for null


def _annotate_frames(frames: Iterator[Any], annotator: Annotator, threads: int, batch_size: int,
                     candidates: int | None) -> Iterator[Any]:
    import pyarrow as pa

    from linker.spark.records import arrow_schema

    loaded = worker_annotator(annotator, threads)
    schema = arrow_schema()
    for frame in frames:
        rows = annotate_rows(frame["doc_id"].tolist(), frame["text"].tolist(), loaded, batch_size, candidates)
        yield pa.Table.from_pylist(rows, schema=schema).to_pandas()


def annotate_dataframe(
    df: Any,
    *,
    text_col: str = "text",
    id_col: str = "doc_id",
    index: str | os.PathLike[str] | None = None,
    pipeline: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None,
    batch_size: int = 32,
    candidates: int | None = 5,
    threads: int | None = None,
    ship_index: bool = False,
) -> Any:
    """Mentions of every document of the Spark DataFrame *df*: one row per mention, lazily (a DataFrame).

    Columns: those of :data:`linker.spark.records.COLUMNS`: ``doc_id``, ``start``, ``end``, ``text``, ``label``,
    ``concept_id``, ``concept_ids``, ``name``, ``score``, the assertion flags, ``source``, ``candidates``
    (the first *candidates* ranked, None for all) and ``error``. A document that fails (no text, or the
    pipeline raised on it) gives one row whose ``error`` says why and whose other columns are null:
    ``df.where("error IS NULL")`` are the mentions, ``df.where("error IS NOT NULL")`` the failures (cache
    or write the result once to split it without annotating twice).

    *index* (an index folder on storage every executor reads, or the default HPO index) and *pipeline*
    (a spaCy pipeline folder, e.g. ``linker train-pipeline``'s) are as for :func:`linker.annotate.annotate`;
    *config* holds ``concept_linker`` settings. *threads* is the compute threads of each worker (default:
    ``spark.task.cpus``, 1 unless set). *ship_index* sends the index folder with the job (``SparkContext.addFile``)
    instead of reading it from shared storage: each executor then opens its own copy.
    """
    require_pyspark()
    missing = [name for name in (id_col, text_col) if name not in df.columns]
    if missing:
        raise LinkerError(f"the DataFrame has no column {', '.join(map(repr, missing))} (its columns: "
                          f"{', '.join(df.columns)}); name the id and text columns with id_col= and text_col=")
    if config:
        from linker.pipeline import check_settings

        check_settings(config)
    annotator = PipelineAnnotator(_shared_path(index), config, _shared_path(pipeline))
    if annotator.index is None and annotator.pipeline is not None:
        from linker.pipeline import pipeline_index

        annotator.index = pipeline_index(annotator.pipeline)
    if ship_index:
        from linker.defaults import resolve_index_dir

        folder = resolve_index_dir(annotator.index).resolve()  # the default index too; a missing one fails here
        df.sparkSession.sparkContext.addFile(str(folder), recursive=True)
        annotator.index = SHIPPED + folder.name
    from pyspark.sql import functions as F

    threads = threads or task_threads(df.sparkSession)
    selected = df.select(F.col(id_col).cast("string").alias("doc_id"), F.col(text_col).cast("string").alias("text"))
    return selected.mapInPandas(lambda frames: _annotate_frames(frames, annotator, threads, batch_size, candidates),
                                spark_schema())


def _shared_path(path: str | os.PathLike[str] | None) -> str | None:
    """*path* as executors should open it: absolute when it exists here (a local or mounted folder), else as given
    (a folder that only the executors see, or a URI)."""
    if path is None:
        return None
    local = Path(path)
    return str(local.resolve()) if local.exists() else str(path)


__all__ = ["COLUMNS", "annotate_dataframe", "annotate_rows", "worker_annotator"]
