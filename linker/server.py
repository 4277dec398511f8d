"""The HTTP service: term lookup, text annotation and concept cards as a JSON API (OpenAPI at ``/openapi.json``).

One thread owns the model. Requests never wait on it inside the event loop: each one queues its texts
and awaits a future; the model thread takes everything queued, runs one search (lookups of concurrent
requests are searched together) or one ``nlp.pipe`` (annotations), and resolves the futures. The
tokenizer of a Hugging Face model is not safe to call from several threads at once ("Already borrowed",
huggingface/tokenizers#537, sentence-transformers#910 under FastAPI), and one batched
call is faster than many small ones, so this is both the safe and the fast shape. Concept cards and
health are answered from the read-only term dictionary in the server's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linker.errors import ConceptNotFoundError, LinkerError
from linker.serialize import candidate_to_dict, card_to_dict, mention_to_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one request may ask for; larger requests get a 4xx answer that names the limit."""

    max_body: int = 1_000_000  # bytes of a request body (413)
    max_batch: int = 256  # texts in one POST /lookup (413)
    max_text: int = 1_000  # characters of one lookup text (422)
    max_k: int = 100  # candidates per text (422)
    max_queue: int = 10_000  # texts waiting for the model before new requests get 503


# -- the model thread ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Job:
    kind: str  # lookup | annotate
    texts: list[str]
    k: int
    future: Future[Any]


class ModelWorker:
    """Runs every encoder call on one thread, batching what concurrent requests queued meanwhile."""

    def __init__(self, index: Any, annotator: Any | None = None, max_queue: int = 10_000,
                 max_texts_per_call: int = 512, pipeline: str | None = None) -> None:
        self.index = index
        self.pipeline = pipeline
        self._annotator = annotator
        self.max_queue = max_queue
        self.max_texts = max_texts_per_call
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="linker-model", daemon=True)
        self._thread.start()

    @property
    def annotator(self) -> Any:
        """The spaCy pipeline over the same index object (one encoder, used from this thread only)."""
        if self._annotator is None:
            from linker.annotate import PipelineAnnotator
            from linker.pipeline import COMPONENT

            annotator = PipelineAnnotator(str(self.index.path), pipeline=self.pipeline)
            annotator.load().get_pipe(COMPONENT).set_index(self.index)
            self._annotator = annotator
        return self._annotator

    def submit(self, kind: str, texts: list[str], k: int = 0) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._waiting + len(texts) > self.max_queue:
                raise _Busy(f"{self._waiting} texts are waiting for the model (limit {self.max_queue}); retry shortly")
            self._waiting += len(texts)
        self._queue.put(_Job(kind, texts, k, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            n_texts = len(job.texts)
            while n_texts < self.max_texts:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.append(more)
                n_texts += len(more.texts)
            with self._lock:
                self._waiting -= n_texts
            # requests whose client went away were cancelled; the rest can no longer be
            jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            for kind in ("lookup", "annotate"):
                group = [j for j in jobs if j.kind == kind]
                if group:
                    try:
                        self._serve(kind, group)
                    except BaseException as err:  # noqa: BLE001 - never let the model thread die
                        log.exception("model thread")
                        for j in group:
                            if not j.future.done():
                                j.future.set_exception(err)

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


class _Busy(Exception):
    pass


# -- request size ----------------------------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a body over *max_body* bytes gets 413, by its Content-Length or while it streams in."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._reject(send, int(declared))
            return
        seen = 0
        over = False
        answered = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    over = True
                    raise _TooLarge  # the app stops reading; whatever it answers becomes the 413 below
            return message

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal answered
            if over:
                if not answered:
                    answered = True
                    await self._reject(send, seen)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            pass
        if over and not answered:
            await self._reject(send, seen)

    async def _reject(self, send: Any, size: int) -> None:
        body = json.dumps({"detail": f"request body of {size} bytes or more is over the limit of {self.max_body} "
                                     "bytes; send fewer or shorter texts per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# -- the application -------------------------------------------------------------------------------------------
try:
    from pydantic import BaseModel, Field
except ImportError:  # pragma: no cover - pydantic comes with fastapi
    BaseModel = object  # type: ignore[assignment,misc]

    def Field(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]  # noqa: N802
        return None


class LookupRequest(BaseModel):  # type: ignore[misc,valid-type]
    """Terms to rank concepts for."""

    texts: list[str] = Field(..., min_length=1, description="terms to look up (see the batch limit)")
    k: int = Field(5, description="concepts per text")


class AnnotateRequest(BaseModel):  # type: ignore[misc,valid-type]
    """A document to annotate."""

    text: str = Field(..., description="mentions are found, linked and flagged for negation and context")


class CandidateOut(BaseModel):  # type: ignore[misc,valid-type]
    concept_id: str
    name: str
    matched_text: str = Field(description="the concept name (or synonym) that matched")
    score: float = Field(description="cosine similarity; 1.0 for an exact normalised match")
    exact: bool


class LookupResult(BaseModel):  # type: ignore[misc,valid-type]
    query: str
    confident: bool  # the best score reaches the index's NIL threshold (linker calibrate)
    nil_threshold: float
    candidates: list[CandidateOut]


class LookupResponse(BaseModel):  # type: ignore[misc,valid-type]
    results: list[LookupResult]


class RankedConcept(BaseModel):  # type: ignore[misc,valid-type]
    concept_id: str
    name: str
    score: float


class MentionOut(BaseModel):  # type: ignore[misc,valid-type]
    start: int = Field(description="character offset in the text")
    end: int
    text: str
    label: str
    concept_id: str | None = Field(description="the linked concept, when the best score passed the threshold")
    concept_ids: list[str] = Field(description="every concept linked: one per conjunct of a composite mention")
    name: str | None
    score: float | None
    candidates: list[RankedConcept]
    negated: bool
    historical: bool
    hypothetical: bool
    family: bool
    source: str = Field(description="the mention finder: upstream, dictionary, dense or abbreviation")


class AnnotateResponse(BaseModel):  # type: ignore[misc,valid-type]
    mentions: list[MentionOut]


class SynonymOut(BaseModel):  # type: ignore[misc,valid-type]
    text: str
    scope: str
    kind: str | None


class ParentOut(BaseModel):  # type: ignore[misc,valid-type]
    concept_id: str
    name: str | None


class ConceptOut(BaseModel):  # type: ignore[misc,valid-type]
    concept_id: str
    name: str
    definition: str | None
    synonyms: list[SynonymOut]
    parents: list[ParentOut]
    types: list[str]
    alt_ids: list[str]
    resolved_from: str | None = Field(None, description="the alternative or obsolete id asked for")


#: error answers shown in the OpenAPI description; every body is {"detail": "..."}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the body is not valid JSON"},
    413: {"description": "the body or the batch is over the limit"},
    422: {"description": "a field is missing, of the wrong type or out of range"},
    503: {"description": "too many texts are waiting for the model; retry after a second"},
}


class HealthOut(BaseModel):  # type: ignore[misc,valid-type]
    status: str
    index: str
    ontology: dict[str, Any]
    counts: dict[str, int]
    model: str | None
    dimension: int | None
    version: str


def create_app(index: Any, *, annotator: Any | None = None, limits: ServerLimits | None = None,
               warm_up: bool = False, pipeline: str | None = None) -> Any:
    """A FastAPI app over a loaded :class:`~linker.index.ConceptIndex` (and an annotator, else the spaCy pipeline).

    *warm_up* loads the model and the pipeline now rather than on the first requests. *pipeline* is a spaCy
    pipeline folder that ``/annotate`` runs (a trained detector or a whole trained pipeline).
    """
    from contextlib import asynccontextmanager

    from fastapi import HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi_offline import FastAPIOffline

    from linker.linking.nil import confident, read_threshold

    limits = limits or ServerLimits()
    nil_threshold = read_threshold(index.path)
    worker = ModelWorker(index, annotator, max_queue=limits.max_queue, pipeline=pipeline)
    if warm_up:
        worker.submit("lookup", ["warm up"], 1).result()
        worker.submit("annotate", ["warm up"]).result()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        worker.close()

    # FastAPIOffline serves the Swagger UI and ReDoc assets from the package itself: /docs works offline
    app = FastAPIOffline(title="concept-linker", version=_version(), lifespan=lifespan,
                  description="Biomedical concept lookup and annotation with sentence embeddings. "
                              f"Limits: body {limits.max_body} bytes, {limits.max_batch} texts per lookup, "
                              f"{limits.max_text} characters per lookup text, k up to {limits.max_k}.")
    app.state.worker = worker
    app.state.limits = limits

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(status_code=400, content={
                "detail": "the request body is not valid JSON; send e.g. {\"texts\": [\"short stature\"], \"k\": 5}",
                "errors": _plain(errors)})
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {where}", "errors": _plain(errors)})

    @app.exception_handler(_Busy)
    async def busy(request: Request, exc: _Busy) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"})

    def check_texts(texts: list[str], k: int) -> None:
        if not 1 <= k <= limits.max_k:
            raise HTTPException(422, f"k is {k}; it must be between 1 and {limits.max_k}")
        if len(texts) > limits.max_batch:
            raise HTTPException(413, f"{len(texts)} texts in one request; the limit is {limits.max_batch}, "
                                     "split them over several requests")
        for i, text in enumerate(texts):
            if len(text) > limits.max_text:
                raise HTTPException(422, f"texts[{i}] has {len(text)} characters; a lookup text may have at most "
                                         f"{limits.max_text} (annotate long text with POST /annotate)")
            if not text.strip():
                raise HTTPException(422, f"texts[{i}] is empty")
            check_unicode(text, f"texts[{i}]")

    def check_unicode(text: str, where: str) -> None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise HTTPException(422, f"{where} holds a lone surrogate (\\u{ord(text[err.start]):04x}) at character "
                                     f"{err.start}, which is not Unicode text; send valid UTF-8") from None

    async def lookup_texts(texts: list[str], k: int) -> list[dict[str, Any]]:
        check_texts(texts, k)
        results = await asyncio.wrap_future(worker.submit("lookup", texts, k))
        return [{"query": text, "confident": confident(row, nil_threshold), "nil_threshold": nil_threshold,
                 "candidates": [candidate_to_dict(c) for c in row]} for text, row in zip(texts, results)]

    @app.post("/lookup", summary="Rank concepts for each of several texts", response_model=LookupResponse,
              responses=ERRORS)
    async def lookup_post(body: LookupRequest) -> dict[str, Any]:
        return {"results": await lookup_texts(body.texts, body.k)}

    @app.get("/lookup", summary="Rank concepts for one text", response_model=LookupResult,
             responses=ERRORS)
    async def lookup_get(q: str = Query(..., description="the term"),
                         k: int = Query(5, description=f"concepts for the text (1 to {limits.max_k})")) -> dict[str, Any]:
        return (await lookup_texts([q], k))[0]

    @app.post("/annotate", summary="Find, link and flag the concept mentions of a text",
              response_model=AnnotateResponse, responses={**ERRORS, 500: {"description": "the text broke the pipeline"}})
    async def annotate(body: AnnotateRequest) -> dict[str, Any]:
        check_unicode(body.text, "text")
        future = worker.submit("annotate", [body.text])  # a full queue answers 503 from here
        try:
            mentions = (await asyncio.wrap_future(future))[0]
        except Exception as err:  # noqa: BLE001 - the text broke the pipeline; say so, keep serving
            log.exception("annotation failed")
            raise HTTPException(500, f"annotation failed: {type(err).__name__}: {err}") from None
        return {"mentions": [mention_to_dict(m) for m in mentions]}

    @app.get("/concept/{concept_id:path}", summary="The concept card (alternative and obsolete ids resolve)",
             response_model=ConceptOut, responses={404: {"description": "unknown concept id"}})
    def concept(concept_id: str) -> dict[str, Any]:
        try:
            card = card_to_dict(index.card(concept_id), index.termdb)
        except ConceptNotFoundError as err:
            raise HTTPException(404, str(err)) from None
        if card["concept_id"] != concept_id:
            card["resolved_from"] = concept_id
        return card

    @app.get("/health", summary="Index name, counts and model", response_model=HealthOut)
    def health() -> dict[str, Any]:
        info = index.info()
        return {"status": "ok", "index": Path(info["path"]).name, "ontology": info["ontology"],
                "counts": info["counts"], "model": info["encoder"].get("model"),
                "dimension": info["encoder"].get("dimension"), "version": _version()}

    return BodyLimit(app, limits.max_body) if limits.max_body else app


def _plain(errors: Any) -> list[dict[str, Any]]:
    """Validation errors as plain JSON (pydantic may put exceptions in ``ctx``)."""
    return json.loads(json.dumps(errors, default=str))


def _version() -> str:
    from linker import __version__

    return __version__


def serve(index_dir: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          limits: ServerLimits | None = None, log_level: str = "info", pipeline: str | None = None) -> None:
    """Load the index and its model, then serve until interrupted."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - a dependency of the project
        raise LinkerError("linker serve needs fastapi and uvicorn: pip install fastapi uvicorn") from None
    from linker.defaults import open_index

    if index_dir is None and pipeline is not None:
        from linker.pipeline import pipeline_index

        index_dir = pipeline_index(pipeline)
    index = open_index(index_dir)
    if host not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("serving on %s: reachable from other machines; the service has no authentication", host)
    app = create_app(index, limits=limits, warm_up=True, pipeline=pipeline)  # load model and pipeline now, not on the first request
    uvicorn.run(app, host=host, port=port, log_level=log_level)
