"""Bulk annotation: stream documents from a reader through the spaCy pipeline into a resumable writer.

Documents go out in input order whatever the number of processes, so the output of an interrupted run
is always a prefix of the uninterrupted output; re-running the same command reads what the output
already holds (:meth:`Writer.progress`), skips it and appends the rest. At most a few batches per
process are in flight, so memory stays bounded however large the input (the ids already written are
kept in a set, a few dozen bytes each).
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from typing import Any

from linker.annotate_plan import (
    Plan,
    check_same_run,
    errors_location,
    plan_run,
    remove_output,
)
from linker.errors import LinkerError
from linker.formats import (
    Document,
    Failure,
    Item,
    Progress,
    Writer,
    open_writer,
)
from linker.locking import exclusive
from linker.types import Mention

log = logging.getLogger(__name__)

#: texts -> mentions of each text; must be picklable to run in worker processes
Annotator = Callable[[Sequence[str]], list[list[Mention]]]
#: Where the batches run: worker processes of this machine, or Spark tasks (``linker.spark.job``).
ENGINES = ("local", "spark")


class PipelineAnnotator:
    """Annotates with :func:`linker.pipeline.load_pipeline`; the pipeline is loaded on first use in each process."""

    def __init__(self, index: str | None = None, config: dict[str, Any] | None = None,
                 pipeline: str | None = None) -> None:
        self.index = index
        self.config = dict(config or {})
        self.pipeline = pipeline
        self._nlp: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"index": self.index, "config": self.config, "pipeline": self.pipeline, "_nlp": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def load(self) -> Any:
        if self._nlp is None:
            from linker.spacy_import import import_spacy

            import_spacy(self.pipeline)
            from linker.pipeline import load_pipeline

            self._nlp = load_pipeline(self.index, pipeline=self.pipeline, **self.config)
        return self._nlp

    def __call__(self, texts: Sequence[str]) -> list[list[Mention]]:
        nlp = self.load()  # first: it decides how spaCy is imported
        from linker.extensions import pipe_texts
        from linker.pipeline import doc_mentions

        return [doc_mentions(doc) for doc in pipe_texts(nlp, texts)]


@dataclass(slots=True)
class AnnotateStats:
    """Counts of one run. ``failed_total`` includes failures recorded by earlier runs into the same output."""

    read: int = 0
    skipped: int = 0
    annotated: int = 0
    failed: int = 0
    failed_total: int = 0
    mentions: int = 0
    seconds: float = 0.0
    output: str = ""
    errors: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        rate = self.annotated / self.seconds if self.seconds else 0.0
        text = (f"read {self.read}, annotated {self.annotated}, failed {self.failed}, skipped {self.skipped} "
                f"(done before), {self.mentions} mentions in {self.seconds:.1f}s ({rate:.1f} docs/s)")
        if self.failed_total:
            text += f"; {self.failed_total} failed documents are listed in {self.errors}"
        return text


@dataclass(slots=True)
class _Batch:
    items: list[Item] = field(default_factory=list)

    @property
    def documents(self) -> list[Document]:
        return [item for item in self.items if isinstance(item, Document)]


# -- worker side -----------------------------------------------------------------------------------------------
_worker_annotator: Annotator | None = None


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent was killed (kill -9, OOM killer) would idle on forever holding the model."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(annotator: Annotator, threads: int, parent: int) -> None:
    global _worker_annotator
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _exit_with_parent(parent)
    from linker.encoders import set_threads

    set_threads(threads)  # processes x threads = cores, not cores squared
    _worker_annotator = annotator
    load_first(annotator)


def _run_batch(texts: list[str], annotator: Annotator | None = None) -> list[list[Mention] | str]:
    """Mentions per text, or the error message of a text that failed (the batch is retried one by one)."""
    annotate = annotator or _worker_annotator
    assert annotate is not None
    if not texts:
        return []
    try:
        return list(annotate(texts))
    except Exception:  # noqa: BLE001 - isolate the failing document below
        if len(texts) == 1:
            raise
    results: list[list[Mention] | str] = []
    for text in texts:
        try:
            results.append(annotate([text])[0])
        except Exception as err:  # noqa: BLE001 - recorded as a failed document
            results.append(f"{type(err).__name__}: {err}")
    return results


def _run_batch_safe(texts: list[str], annotator: Annotator | None = None) -> list[list[Mention] | str]:
    try:
        return _run_batch(texts, annotator)
    except Exception as err:  # noqa: BLE001 - a single text failed
        return [f"{type(err).__name__}: {err}"]


def annotate_texts(texts: list[str], annotator: Annotator) -> list[list[Mention] | str]:
    """Mentions of each text, or the reason it failed; one result per text, whatever the annotator did."""
    return complete_results(_run_batch_safe(texts, annotator), len(texts))


def complete_results(results: list[list[Mention] | str], n: int) -> list[list[Mention] | str]:
    """*results* of *n* texts; a short list (the whole batch failed as one text would) fails every text."""
    if len(results) == n:
        return results
    reason = results[0] if results and isinstance(results[0], str) else "annotator returned too few results"
    return [reason] * n


# -- main side -------------------------------------------------------------------------------------------------
def default_processes() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pending(items: Iterable[Item], done: Progress, stats: AnnotateStats) -> Iterator[Item]:
    """Items not yet in the output, with repeated document ids turned into failures."""
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Failure):
            stats.read += 1
            if item.where in done.failed_where:
                stats.skipped += 1
            else:
                yield item
            continue
        stats.read += 1
        if item.doc_id in seen:
            if item.where in done.failed_where:
                stats.skipped += 1
            else:
                yield Failure(item.doc_id, item.where, "duplicate document id; only its first occurrence is annotated")
            continue
        seen.add(item.doc_id)
        if item.doc_id in done.done_ids or item.where in done.failed_where:
            stats.skipped += 1
            continue
        yield item


def batched(items: Iterator[Item], size: int) -> Iterator[_Batch]:
    batch = _Batch()
    n_docs = 0
    for item in items:
        batch.items.append(item)
        if isinstance(item, Document):
            n_docs += 1
            if n_docs >= size:
                yield batch
                batch, n_docs = _Batch(), 0
    if batch.items:
        yield batch


def annotate(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    index: str | os.PathLike[str] | None = None,
    input_format: str | None = None,
    output_format_name: str | None = None,
    id_field: str | None = None,
    text_field: str | None = None,
    processes: int | None = None,
    batch_size: int = 32,
    include_text: bool = False,
    candidates: int = 5,
    progress: bool = True,
    pipeline_config: dict[str, Any] | None = None,
    annotator: Annotator | None = None,
    overwrite: bool = False,
    pipeline: str | os.PathLike[str] | None = None,
    engine: str = "local",
    spark: Any = None,
) -> AnnotateStats:
    """Annotate every document of *input_path* into *output_path*, resuming what an earlier run left.

    *pipeline* is a spaCy pipeline folder (a trained detector, or a whole trained pipeline) run instead of
    blank English + ``concept_linker``; without *index*, its own index is used.
    *annotator* replaces the spaCy pipeline (tests); it must be picklable when *processes* > 1.
    *overwrite* removes what an earlier run wrote instead of resuming it. *engine* ``spark`` runs the
    batches as Spark tasks (:mod:`linker.spark.job`; *spark* is its :class:`~linker.spark.session.SparkOptions`),
    with the same output. Returns the counts; documents that failed are in the output's errors file or table.
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise LinkerError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    plan = plan_run(input_path, output_path, index=index, input_format=input_format,
                    output_format_name=output_format_name, id_field=id_field, text_field=text_field,
                    batch_size=batch_size, include_text=include_text, candidates=candidates,
                    pipeline_config=pipeline_config, annotator=annotator, pipeline=pipeline, engine=engine)
    output = plan.output
    stats = AnnotateStats(output=str(output))
    with exclusive(output, f"the output {output}"):  # two runs into one output would interleave
        if overwrite:
            remove_output(output, plan.out_kind)
        try:
            if engine == "spark":
                from linker.spark.job import run_spark

                run_spark(plan, stats, spark, progress)
            else:
                _run_local(plan, stats, processes, progress)
        finally:
            stats.seconds = time.perf_counter() - started
            stats.errors = errors_location(output, plan.out_kind)
    log.debug("%s", stats.summary())
    return stats


def _run_local(plan: Plan, stats: AnnotateStats, processes: int | None, progress: bool) -> None:
    assert plan.reader is not None
    processes = max(1, processes or default_processes())
    writer = open_writer(plan.output, plan.out_kind, **plan.writer_options)
    try:
        done = start_writing(plan, writer, stats)
        total = plan.reader.estimate_total()
        remaining = None if total is None else max(0, total - len(done.done_ids) - len(done.failed_where))
        if remaining is not None and processes > 1:  # a worker per batch at most: starting one costs seconds
            processes = max(1, min(processes, -(-remaining // plan.batch_size)))
        batches = batched(pending(plan.reader, done, stats), plan.batch_size)
        log.info("annotating %s into %s with %d process(es); loading the pipeline first", plan.reader.path,
                 plan.output, processes)
        with progress_bar(remaining, progress) as bar:
            if processes == 1:
                for number, batch in enumerate(batches):
                    if number == 0:
                        load_first(plan.annotator)
                    write_batch(writer, batch, _run_batch_safe([d.text for d in batch.documents], plan.annotator), stats,
                           bar)
            else:
                _annotate_parallel(batches, writer, plan.annotator, processes, stats, bar)
    finally:
        writer.close()


def load_first(annotator: Annotator) -> None:
    """Load *annotator*'s pipeline before the first batch: one that cannot load fails the run with its reason,
    not every document one by one."""
    load = getattr(annotator, "load", None)
    if not callable(load):
        return
    try:
        load()
    except LinkerError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken pipeline folder or index: the run's error, said once
        raise LinkerError(f"the pipeline could not be loaded ({type(err).__name__}: {err}); no document was "
                          "annotated") from None


def start_writing(plan: Plan, writer: Writer, stats: AnnotateStats) -> Progress:
    """What *writer*'s output already holds, after checking that it was made by the same command."""
    done = writer.progress()
    resuming = bool(done.done_ids or done.failed_where)
    check_same_run(plan.output, plan.out_kind, plan.settings, resuming=resuming)
    if resuming:
        log.info("%s already holds %d documents and %d failures; resuming", plan.output, len(done.done_ids),
                 len(done.failed_where))
    stats.failed_total = len(done.failed_where)
    return done


def _annotate_parallel(batches: Iterator[_Batch], writer: Writer, annotator: Annotator, processes: int,
                       stats: AnnotateStats, bar: Any) -> None:
    import multiprocessing

    threads = max(1, default_processes() // processes)
    window: deque[tuple[_Batch, Future[list[list[Mention] | str]]]] = deque()
    context = multiprocessing.get_context("spawn")  # torch and forked threads do not mix
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker, initargs=(annotator, threads, os.getpid()))
    try:
        try:
            for batch in batches:
                window.append((batch, pool.submit(_run_batch_safe, [d.text for d in batch.documents])))
                while len(window) > 2 * processes:
                    head, future = window.popleft()
                    write_batch(writer, head, future.result(), stats, bar)
            while window:
                head, future = window.popleft()
                write_batch(writer, head, future.result(), stats, bar)
        except BrokenProcessPool:
            raise LinkerError("a worker process died or could not load the pipeline (out of memory? see the log "
                              "above); run the same command again to resume, with fewer --processes or a smaller "
                              "--batch-size") from None
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def write_batch(writer: Writer, batch: _Batch, results: list[list[Mention] | str], stats: AnnotateStats, bar: Any) -> None:
    documents = batch.documents
    results = complete_results(results, len(documents))
    outcome = dict(zip((id(d) for d in documents), results))
    for item in batch.items:
        bar.update(1)
        if isinstance(item, Failure):
            writer.write_error(item)
            stats.failed += 1
            stats.failed_total += 1
            log.warning("%s (%s): %s", item.where, item.doc_id, item.reason)
            continue
        result = outcome[id(item)]
        stage = "annotate"
        refused = writer.refuse(item)
        if refused and not isinstance(result, str):
            result, stage = refused, "write"
        if isinstance(result, str):
            failure = Failure(item.doc_id, item.where, result, stage=stage)
            writer.write_error(failure)
            stats.failed += 1
            stats.failed_total += 1
            log.warning("%s (%s): annotation failed: %s", item.where, item.doc_id, result)
        else:
            writer.write(item, result)
            stats.annotated += 1
            stats.mentions += len(result)


class _Bar:
    """tqdm (documents/s, ETA), started when the first batch is written so that loading the model does not
    count against the rate; without *enabled* it only counts."""

    def __init__(self, total: int | None, enabled: bool, desc: str = "annotating") -> None:
        self.total, self.enabled, self.desc = total, enabled, desc
        self._bar: Any = None

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="doc", desc=self.desc, smoothing=0.1, dynamic_ncols=True)
        self._bar.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def progress_bar(total: int | None, enabled: bool, desc: str = "annotating") -> _Bar:
    return _Bar(total, enabled, desc)


