"""Writing a Spark run into one of the project's own formats: every document in input order, its mentions (or
failure) taken from the finished part files, while later parts are still being annotated.

A driver thread reads the input again with the project's reader (as a local run does, so the output equals a
local run's byte for byte and resumes as it does) and writes each part as soon as it and every part before it
are finished, so only the last parts are left to write when the tasks end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Self

from linker.annotate import AnnotateStats, batched, pending, progress_bar, write_batch
from linker.annotate_plan import Plan
from linker.errors import LinkerError
from linker.formats import Document, Progress
from linker.spark.layout import JobLayout
from linker.spark.records import COLUMNS, row_mention

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The Spark job ended without the part the writer waits for (its number)."""


class PartWriter:
    """A driver thread that writes every document into *writer* in input order, its mentions (or failure) taken
    from the parts, each part as soon as it is finished: the output grows while later parts are annotated.

    Entered before the tasks start; on a clean exit every part is finished and the thread writes the rest; when
    the tasks fail, it stops at the first part that is missing (the output holds the parts before it, which a
    rerun skips as a local run's output is resumed)."""

    def __init__(self, plan: Plan, layout: JobLayout, manifest: dict[str, Any], writer: Any, done: Progress,
                 stats: AnnotateStats, progress: bool) -> None:
        self.plan, self.layout, self.parts, self.writer = plan, layout, int(manifest["parts"]), writer
        self.done, self.stats, self.progress = done, stats, progress
        self._changed = threading.Condition()
        self._stopped = False
        self._error: BaseException | None = None
        self._missing: int | None = None
        self._thread = threading.Thread(target=self._run, name="spark-writer", daemon=True)

    def wake(self) -> None:
        """A part has finished: the writer looks again."""
        with self._changed:
            self._changed.notify_all()

    def _wait(self, part: int) -> None:
        with self._changed:
            while not self.layout.is_finished(part):
                if self._stopped:
                    raise _Stopped(part)
                self._changed.wait(0.5)  # woken by wake(); the timeout only bounds a missed wake-up

    def _run(self) -> None:
        plan = self.plan
        assert plan.reader is not None
        try:
            staged = staged_results(self.layout, self.parts, self._wait)
            total = plan.reader.estimate_total()
            remaining = None if total is None else max(0, total - len(self.done.done_ids) - len(self.done.failed_where))
            with progress_bar(remaining, self.progress, "writing") as bar:
                # one document at a time: a batch would wait for the part its last document is in
                for batch in batched(pending(plan.reader, self.done, self.stats), 1):
                    write_batch(self.writer, batch, [result_of(doc, staged) for doc in batch.documents], self.stats,
                                bar)
        except _Stopped as stop:
            self._missing = stop.args[0]
        except BaseException as err:  # noqa: BLE001 - raised on the driver's thread by __exit__
            self._error = err

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        # the tasks have ended: the thread writes what is finished and stops at the first part that is not
        # (after a failure, whose error goes through; after a clean end there is none, else it is an error)
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        ended = time.perf_counter()
        self._thread.join()
        if kind is not None:
            return
        if self._error is not None:
            raise self._error
        if self._missing is not None:
            raise LinkerError(f"part {self._missing} of {self.layout.root} was not written by its task; run the same "
                              "command again to annotate it")
        log.info("wrote %d documents into %s (%.1f s after the last part)", self.stats.annotated + self.stats.failed,
                 self.plan.output, time.perf_counter() - ended)


def result_of(doc: Document, staged: Iterator[tuple[str, list[dict[str, Any]]]]) -> Any:
    for doc_id, rows in staged:
        if doc_id == doc.doc_id:
            errors = [row["error"] for row in rows if row["error"] is not None]
            return errors[0] if errors else [row_mention(row) for row in rows]
    raise LinkerError(f"document {doc.doc_id} ({doc.where}) is not among the parts staged from the input: the input "
                      "changed since this run started; run again with --overwrite")


def staged_results(layout: JobLayout, parts: int, wait: Callable[[int], None]
                    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each staged document id in order, with its rows from the part files (none for a document without
    mentions); *wait* returns once a part's file exists."""
    import pyarrow.parquet as pq

    for part in range(parts):
        wait(part)
        ids = pq.read_table(layout.input_part(part, table=False), columns=["doc_id"]).column("doc_id").to_pylist()
        rows = pq.read_table(layout.mentions_part(part), columns=list(COLUMNS)).to_pylist()
        at = 0
        for doc_id in ids:
            mine = []
            while at < len(rows) and rows[at]["doc_id"] == doc_id:
                mine.append(rows[at])
                at += 1
            yield doc_id, mine


__all__ = ["PartWriter"]
