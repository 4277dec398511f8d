"""The value every mention finder returns, and the finder of spans an upstream component already set."""

from __future__ import annotations

from dataclasses import dataclass

from spacy.tokens import Doc

from linker.extensions import CONFIDENCE_ATTR

UPSTREAM, DICTIONARY, DENSE, ABBREVIATION = "upstream", "dictionary", "dense", "abbreviation"
#: the sources a ``concept_linker`` can be told to use (short forms follow the sources that find names)
SOURCES = (UPSTREAM, DICTIONARY, DENSE)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A span proposed for linking and the text to search for it."""

    start: int
    end: int
    source: str
    query: str
    #: the upstream entity label, when the span came from doc.ents
    label: str | None = None
    #: for a short form, the character span of its long form (the short form borrows the long form's link)
    anchor: tuple[int, int] | None = None
    #: for an upstream span, the detector's confidence in it (``span._.linker_confidence``), when it gave one
    confidence: float | None = None


def upstream_proposals(doc: Doc) -> list[Proposal]:
    return [Proposal(ent.start_char, ent.end_char, UPSTREAM, ent.text, ent.label_,
                     confidence=ent._.get(CONFIDENCE_ATTR) if ent.has_extension(CONFIDENCE_ATTR) else None)
            for ent in doc.ents]


def bar(prop: Proposal, threshold: float, min_confidence: float) -> float:
    """The score *prop*'s best candidate needs to be linked: *threshold*, or 1.0 (an exact name of the index or
    the mention memory) for a detected span whose detector's confidence is under *min_confidence*."""
    unsure = prop.confidence is not None and prop.confidence < min_confidence
    return 1.0 if unsure else threshold


