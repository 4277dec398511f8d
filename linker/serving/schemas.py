"""The JSON shapes of the HTTP service (pydantic models, shown in the OpenAPI description) and its error answers."""

from __future__ import annotations

from typing import Any

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
    408: {"description": "the body did not arrive within the read timeout"},
    413: {"description": "the body, the batch or the text to annotate is over the limit"},
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
