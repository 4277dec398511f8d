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
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.formats import (
    Document,
    Failure,
    Item,
    Progress,
    Writer,
    open_reader,
    open_writer,
    output_format,
)
from linker.locking import exclusive
from linker.types import Mention

log = logging.getLogger(__name__)

#: texts -> mentions of each text; must be picklable to run in worker processes
Annotator = Callable[[Sequence[str]], list[list[Mention]]]


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
            from linker.pipeline import load_pipeline

            self._nlp = load_pipeline(self.index, pipeline=self.pipeline, **self.config)
        return self._nlp

    def __call__(self, texts: Sequence[str]) -> list[list[Mention]]:
        from linker.pipeline import doc_mentions

        nlp = self.load()
        return [doc_mentions(doc) for doc in nlp.pipe(texts)]


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
    load = getattr(annotator, "load", None)
    if callable(load):
        load()


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


# -- main side -------------------------------------------------------------------------------------------------
def default_processes() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _todo(items: Iterable[Item], done: Progress, stats: AnnotateStats) -> Iterator[Item]:
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


def _batches(items: Iterator[Item], size: int) -> Iterator[_Batch]:
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
) -> AnnotateStats:
    """Annotate every document of *input_path* into *output_path*, resuming what an earlier run left.

    *pipeline* is a spaCy pipeline folder (a trained detector, or a whole trained pipeline) run instead of
    blank English + ``concept_linker``; without *index*, its own index is used.
    *annotator* replaces the spaCy pipeline (tests); it must be picklable when *processes* > 1.
    *overwrite* removes what an earlier run wrote instead of resuming it. Returns the counts; documents that failed are in the output's errors file or table.
    """
    started = time.perf_counter()
    out_kind = output_format(output_path, output_format_name)
    output = Path(output_path)
    if output.resolve() == Path(input_path).resolve():
        raise LinkerError(f"the output {output} is the input; write the annotations to another file")
    reader = open_reader(input_path, input_format, id_field=id_field, text_field=text_field)
    if annotator is None and pipeline_config:
        from linker.pipeline import check_settings

        check_settings(pipeline_config)
    pipeline_arg = str(Path(pipeline).resolve()) if pipeline is not None else None
    if index is None and pipeline_arg is not None:
        from linker.pipeline import pipeline_index

        index = pipeline_index(pipeline_arg)
    index_arg = str(index) if index is not None else None
    options: dict[str, Any] = {"include_text": include_text, "candidates": candidates}
    if out_kind == "sqlite":
        options["concepts"] = _concept_lookup(index_arg)
    index_id: str | None = None
    if annotator is None or index_arg is not None:
        index_id = _index_identity(index_arg)  # a missing index fails here, clearly, not inside every worker
    if annotator is None:
        annotator = PipelineAnnotator(index_arg, pipeline_config, pipeline_arg)
    processes = max(1, processes or default_processes())
    stats = AnnotateStats(output=str(output))
    with exclusive(output, f"the output {output}"):  # two runs into one output would interleave
        if overwrite:
            remove_output(output, out_kind)
        writer = open_writer(output, out_kind, **options)
        try:
            done = writer.progress()
            settings = {"input": str(Path(input_path).resolve()), "input_format": reader.format, "output_format": out_kind,
                        "index": index_id, "id_field": id_field, "text_field": text_field, "include_text": include_text,
                        "candidates": candidates, "pipeline_config": pipeline_config or {}}
            if pipeline_arg is not None:
                settings["pipeline"] = _pipeline_identity(pipeline_arg)
            _check_same_run(output, out_kind, settings, resuming=bool(done.done_ids or done.failed_where))
            if done.done_ids or done.failed_where:
                log.info("%s already holds %d documents and %d failures; resuming", output, len(done.done_ids),
                         len(done.failed_where))
            stats.failed_total = len(done.failed_where)
            total = reader.estimate_total()
            remaining = None if total is None else max(0, total - len(done.done_ids) - len(done.failed_where))
            if remaining is not None and processes > 1:  # a worker per batch at most: starting one costs seconds
                processes = max(1, min(processes, -(-remaining // batch_size)))
            batches = _batches(_todo(reader, done, stats), batch_size)
            log.info("annotating %s into %s with %d process(es); loading the pipeline first", reader.path, output,
                     processes)
            with _progress_bar(remaining, progress) as bar:
                if processes == 1:
                    for batch in batches:
                        _write(writer, batch, _run_batch_safe([d.text for d in batch.documents], annotator), stats, bar)
                else:
                    _annotate_parallel(batches, writer, annotator, processes, stats, bar)
        finally:
            writer.close()
            stats.seconds = time.perf_counter() - started
            stats.errors = _errors_location(output, out_kind)
    log.debug("%s", stats.summary())
    return stats


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
                    _write(writer, head, future.result(), stats, bar)
            while window:
                head, future = window.popleft()
                _write(writer, head, future.result(), stats, bar)
        except BrokenProcessPool:
            raise LinkerError("a worker process died or could not load the pipeline (out of memory? see the log "
                              "above); run the same command again to resume, with fewer --processes or a smaller "
                              "--batch-size") from None
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _write(writer: Writer, batch: _Batch, results: list[list[Mention] | str], stats: AnnotateStats, bar: Any) -> None:
    documents = batch.documents
    if len(results) != len(documents):  # the whole batch failed as one text would
        results = [results[0] if results and isinstance(results[0], str) else "annotator returned too few results"] \
            * len(documents)
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

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar: Any = None

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="doc", desc="annotating", smoothing=0.1, dynamic_ncols=True)
        self._bar.update(n)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _progress_bar(total: int | None, enabled: bool) -> _Bar:
    return _Bar(total, enabled)


def run_file(output: Path, kind: str) -> Path:
    """Where the settings of the run that writes *output* are kept, to refuse resuming with other settings."""
    return output / ".run.json" if kind == "brat" else Path(f"{output}.run.json")


def _check_same_run(output: Path, kind: str, settings: dict[str, Any], resuming: bool) -> None:
    import json

    from linker.meta import write_json_atomic

    path = run_file(output, kind)
    if resuming and path.exists():
        before = json.loads(path.read_text())
        changed = [f"{key} was {before.get(key)!r}, now {value!r}" for key, value in settings.items()
                   if before.get(key) != value]
        if changed:
            raise LinkerError(f"{output} holds the output of another command ({'; '.join(changed)}); run that "
                              "command again to resume it, or add --overwrite to start afresh")
    write_json_atomic(path, settings)


def _index_identity(index: str | None) -> str:
    from linker.defaults import resolve_index_dir
    from linker.meta import read_meta

    folder = resolve_index_dir(index)
    meta = read_meta(folder)
    ontology = meta.get("ontology", {})
    return (f"{folder.resolve()} ({ontology.get('name')} {ontology.get('release') or ''}, "
            f"{meta.get('encoder', {}).get('model')}, built {meta.get('built_at')})")


def _pipeline_identity(pipeline: str) -> str:
    from linker.pipeline import pipeline_fingerprint

    return f"{pipeline} ({pipeline_fingerprint(pipeline)})"


def remove_output(output: Path, kind: str) -> None:
    """Delete what a run into *output* wrote (a BRAT folder loses only its .txt/.ann files and errors log)."""
    from linker.formats.base import errors_path_for

    if kind == "brat":
        if output.is_dir():
            for file in output.iterdir():
                if file.suffix in {".ann", ".txt", ".tmp"} or file.name in {"errors.jsonl", ".run.json"}:
                    file.unlink()
        return
    for path in (output, errors_path_for(output), run_file(output, kind), Path(f"{output}-wal"), Path(f"{output}-shm")):
        path.unlink(missing_ok=True)


def _concept_lookup(index: str | None) -> Callable[[str], Any]:
    """Concept metadata (name, parents) straight from the index's term dictionary, without loading the model."""
    from linker.defaults import resolve_index_dir
    from linker.meta import TERMS_FILE
    from linker.termdb import TermDB

    termdb = TermDB(resolve_index_dir(index) / TERMS_FILE)
    return termdb.concept


def _errors_location(output: Path, kind: str) -> str:
    from linker.formats.base import errors_path_for

    if kind == "sqlite":
        return f"the errors table of {output}"
    if kind == "brat":
        return str(output / "errors.jsonl")
    return str(errors_path_for(output))
