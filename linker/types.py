"""Small frozen value types that cross module borders."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Synonym scopes as OBO names them; LABEL marks the concept's own name.
SCOPES = ("LABEL", "EXACT", "RELATED", "BROAD", "NARROW")


@dataclass(frozen=True, slots=True)
class Concept:
    """A linkable concept and its metadata."""

    concept_id: str
    name: str
    definition: str | None = None
    types: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Term:
    """One name of one concept."""

    concept_id: str
    text: str
    scope: str = "EXACT"
    #: free-form synonym type, e.g. OBO ``layperson`` or a UMLS term type
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class AltId:
    """An identifier that resolves to a current concept (merged, obsolete, secondary)."""

    alt_id: str
    concept_id: str
    kind: str = "alt_id"


@dataclass(frozen=True, slots=True)
class ConceptInfo:
    """Metadata read apart from the concept itself (UMLS MRDEF/MRSTY rows); merged when the dictionary is finished."""

    concept_id: str
    field: str  # "definition" | "type" | "parent"
    value: str


#: What an ontology reader yields, in any order.
Record = Concept | Term | AltId | ConceptInfo


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked concept for a query text."""

    concept_id: str
    name: str
    matched_text: str
    score: float
    exact: bool = False


@dataclass(frozen=True, slots=True)
class ConceptCard:
    """Everything the dictionary knows about one concept."""

    concept: Concept
    synonyms: tuple[Term, ...] = field(default_factory=tuple)
    alt_ids: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Mention:
    """A linked span of a document, as bulk annotation and the HTTP service report it."""

    start: int
    end: int
    text: str
    #: ranked candidates; the first is the link when ``concept_id`` is set
    candidates: tuple[Candidate, ...] = ()
    #: best concept when its score passed the threshold, else None
    concept_id: str | None = None
    source: str = ""  # which mention finder proposed the span: upstream | dictionary | dense | abbreviation
    negated: bool = False
    historical: bool = False
    hypothetical: bool = False
    family: bool = False
    label: str = "CONCEPT"
    #: a composite mention ("breast and ovarian cancer") links one concept per conjunct: all of them, in
    #: order (the first is ``concept_id``); empty for a mention of one concept
    conjunct_ids: tuple[str, ...] = ()

    @property
    def concept_ids(self) -> tuple[str, ...]:
        """Every concept the mention links: its conjuncts' for a composite, else ``(concept_id,)`` or ``()``."""
        if self.conjunct_ids:
            return self.conjunct_ids
        return (self.concept_id,) if self.concept_id else ()
