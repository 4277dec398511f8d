"""The HTTP service: term lookup, text annotation and concept cards as a JSON API (OpenAPI at ``/openapi.json``).

The model is owned by the lanes of :mod:`linker.serving.worker` (lookups and annotations apart, so a long
annotation never holds a lookup); the JSON shapes are in :mod:`linker.serving.schemas`; what reading one
request may cost is bounded by :mod:`linker.serving.middleware`. Here: the limits, the routes, and waiting
for an answer while watching the client (one that disconnects is cancelled, its work skipped). Concept cards
and health are answered from the read-only term dictionary in the server's thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import (
    Request,  # at module level: the routes' annotations are resolved from these globals
)

from linker.errors import ConceptNotFoundError, LinkerError
from linker.serialize import candidate_to_dict, card_to_dict, mention_to_dict
from linker.serving.middleware import BodyGuard
from linker.serving.schemas import (
    ERRORS,
    AnnotateRequest,
    AnnotateResponse,
    ConceptOut,
    HealthOut,
    LookupRequest,
    LookupResponse,
    LookupResult,
)
from linker.serving.worker import Busy, ModelWorker

__all__ = ["ModelWorker", "ServerLimits", "create_app", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one request may ask for; larger requests get a 4xx answer that names the limit."""

    max_body: int = 1_000_000  # bytes of a request body (413)
    max_batch: int = 256  # texts in one POST /lookup (413)
    max_text: int = 1_000  # characters of one lookup text (422)
    max_k: int = 100  # candidates per text (422)
    max_queue: int = 10_000  # texts waiting in a lane before new requests get 503
    max_annotate: int = 100_000  # characters of one text to annotate (413): about 2 s of work on one core
    read_timeout: float = 15.0  # seconds the whole body may take to arrive (408)


class _ClientGone(Exception):
    """The client disconnected while its request waited; nobody reads the answer."""


async def answer(request: Request, future: Future[Any], poll: float = 0.2) -> Any:
    """The result of *future*, watching the client meanwhile: when it disconnects the future is cancelled, so a
    lane that has not started on it skips it."""
    waiting = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=poll)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            future.cancel()
            raise _ClientGone


def create_app(index: Any, *, annotator: Any | None = None, limits: ServerLimits | None = None,
               warm_up: bool = False, pipeline: str | None = None) -> Any:
    """A FastAPI app over a loaded :class:`~linker.index.ConceptIndex` (and an annotator, else the spaCy pipeline).

    *warm_up* loads the model and the pipeline now rather than on the first requests. *pipeline* is a spaCy
    pipeline folder that ``/annotate`` runs (a trained detector or a whole trained pipeline).
    """
    from contextlib import asynccontextmanager

    from fastapi import HTTPException, Query
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
                                     f"Limits: body {limits.max_body} bytes, arriving within {limits.read_timeout:g} s; "
                                     f"{limits.max_batch} texts per lookup, {limits.max_text} characters per lookup "
                                     f"text, k up to {limits.max_k}; {limits.max_annotate} characters per text to "
                                     "annotate.")
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

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "1"})

    @app.exception_handler(_ClientGone)
    async def gone(request: Request, exc: _ClientGone) -> JSONResponse:
        return JSONResponse(status_code=499, content={"detail": "the client closed the connection"})

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

    async def lookup_texts(request: Request, texts: list[str], k: int) -> list[dict[str, Any]]:
        check_texts(texts, k)
        results = await answer(request, worker.submit("lookup", texts, k))
        return [{"query": text, "confident": confident(row, nil_threshold), "nil_threshold": nil_threshold,
                 "candidates": [candidate_to_dict(c) for c in row]} for text, row in zip(texts, results)]

    @app.post("/lookup", summary="Rank concepts for each of several texts", response_model=LookupResponse,
              responses=ERRORS)
    async def lookup_post(request: Request, body: LookupRequest) -> dict[str, Any]:
        return {"results": await lookup_texts(request, body.texts, body.k)}

    @app.get("/lookup", summary="Rank concepts for one text", response_model=LookupResult,
             responses=ERRORS)
    async def lookup_get(request: Request, q: str = Query(..., description="the term"),
                         k: int = Query(5, description=f"concepts for the text (1 to {limits.max_k})")) -> dict[str, Any]:
        return (await lookup_texts(request, [q], k))[0]

    @app.post("/annotate", summary="Find, link and flag the concept mentions of a text",
              response_model=AnnotateResponse, responses={**ERRORS, 500: {"description": "the text broke the pipeline"}})
    async def annotate(request: Request, body: AnnotateRequest) -> dict[str, Any]:
        if len(body.text) > limits.max_annotate:
            raise HTTPException(413, f"the text has {len(body.text)} characters; one request may annotate at most "
                                     f"{limits.max_annotate}: split the document (linker annotate does collections)")
        check_unicode(body.text, "text")
        future = worker.submit("annotate", [body.text])  # a full lane answers 503 from here
        try:
            mentions = (await answer(request, future))[0]
        except _ClientGone:
            raise
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

    return BodyGuard(app, limits.max_body, limits.read_timeout)


def _plain(value: Any) -> Any:
    """Validation errors as strict JSON: pydantic may put exceptions in ``ctx``, and the offending input (NaN,
    Infinity) in ``input``, which JSON cannot hold."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


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
