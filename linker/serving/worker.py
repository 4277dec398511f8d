"""The threads that own the model: one lane for lookups, one for annotations, each batching what queued meanwhile.

Requests never wait on the model inside the event loop: each one queues its texts and awaits a future. A lane
takes everything its queue holds (up to a bound), runs one batched call — ``index.search`` for lookups of
concurrent requests together, ``nlp.pipe`` for annotations — and resolves the futures. Two lanes, so a long
annotation never holds a lookup behind it; both share one index, whose encoder calls take turns
(:meth:`linker.index.ConceptIndex.embed`), since a Hugging Face tokenizer is not safe under concurrent calls.
A request whose client has gone is cancelled while it waits and never computed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("lookup", "annotate")


class Busy(Exception):
    """Too many texts are waiting for a lane (answered 503 with Retry-After)."""


@dataclass(slots=True)
class _Job:
    texts: list[str]
    k: int
    future: Future[Any]


class _Lane:
    """One thread and its queue."""

    def __init__(self, name: str, serve: Callable[[list[_Job]], None], max_queue: int, max_texts: int) -> None:
        self.name, self.serve, self.max_queue, self.max_texts = name, serve, max_queue, max_texts
        self.queue: queue.Queue[_Job | None] = queue.Queue()
        self.waiting = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"linker-{name}", daemon=True)
        self.thread.start()

    def submit(self, texts: list[str], k: int) -> Future[Any]:
        future: Future[Any] = Future()
        with self.lock:
            if self.waiting + len(texts) > self.max_queue:
                raise Busy(f"{self.waiting} texts are waiting for the {self.name} lane (limit {self.max_queue}); "
                           "retry shortly")
            self.waiting += len(texts)
        self.queue.put(_Job(texts, k, future))
        return future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            jobs = [job]
            n_texts = len(job.texts)
            while n_texts < self.max_texts:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                jobs.append(more)
                n_texts += len(more.texts)
            with self.lock:
                self.waiting -= n_texts
            # requests whose client went away were cancelled; the rest can no longer be
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            try:
                self.serve(jobs)
            except BaseException as err:  # noqa: BLE001 - never let a lane die
                log.exception("%s lane", self.name)
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(err)


class ModelWorker:
    """The lookup and annotation lanes over one index (and an annotator, else the spaCy pipeline over it)."""

    def __init__(self, index: Any, annotator: Any | None = None, max_queue: int = 10_000,
                 max_texts_per_call: int = 512, pipeline: str | None = None, max_annotate_per_call: int = 16) -> None:
        self.index = index
        self.pipeline = pipeline
        self._annotator = annotator
        self._annotator_lock = threading.Lock()
        self.lanes = {"lookup": _Lane("lookup", lambda jobs: self._serve("lookup", jobs), max_queue, max_texts_per_call),
                      "annotate": _Lane("annotate", lambda jobs: self._serve("annotate", jobs), max_queue,
                                        max_annotate_per_call)}

    @property
    def waiting(self) -> int:
        """Texts queued in every lane, not yet taken by its thread."""
        return sum(lane.waiting for lane in self.lanes.values())

    @property
    def annotator(self) -> Any:
        """The spaCy pipeline over the same index object, loaded on first use."""
        with self._annotator_lock:
            if self._annotator is None:
                from linker.annotate import PipelineAnnotator
                from linker.pipeline import COMPONENT

                annotator = PipelineAnnotator(str(self.index.path), pipeline=self.pipeline)
                annotator.load().get_pipe(COMPONENT).set_index(self.index)
                self._annotator = annotator
        return self._annotator

    def submit(self, kind: str, texts: list[str], k: int = 0) -> Future[Any]:
        return self.lanes[kind].submit(texts, k)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()

    def _serve(self, kind: str, jobs: list[_Job]) -> None:
        texts = [text for job in jobs for text in job.texts]
        try:
            if kind == "lookup":
                results = self.index.search(texts, max(job.k for job in jobs))
            else:
                results = self.annotator(texts)
        except Exception as err:  # noqa: BLE001 - handed to the waiting requests
            if len(jobs) > 1:  # find the request that failed; the others still get their answer
                for job in jobs:
                    self._serve(kind, [job])
                return
            for job in jobs:
                job.future.set_exception(err)
            return
        start = 0
        for job in jobs:
            part = results[start:start + len(job.texts)]
            start += len(job.texts)
            if kind == "lookup":
                part = [row[:job.k] for row in part]
            job.future.set_result(part)
