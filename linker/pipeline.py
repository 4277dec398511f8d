"""A ready pipeline and plain values out of it: the entry points bulk annotation and scripts build on."""

from __future__ import annotations

import os
from typing import Any

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from linker.types import Candidate, Mention

COMPONENT = "concept_linker"


def load_pipeline(index: str | os.PathLike[str] | None = None, **config: Any) -> Language:
    """A blank English pipeline with ``concept_linker`` (default settings unless *config* says otherwise),
    its index opened. *index* is an index folder; None means the default HPO index."""
    import linker.component  # noqa: F401 - registers the factory even when the entry point is not installed

    settings = dict(config)
    if index is not None:
        settings["index"] = str(index)
    nlp = spacy.blank("en")
    nlp.add_pipe(COMPONENT, config=settings)
    nlp.initialize()
    return nlp


def doc_mentions(doc: Doc) -> list[Mention]:
    """The entities of a processed Doc as :class:`~linker.types.Mention` values, in text order.

    Entities the linker did not touch (e.g. from an upstream NER, unlinked) come with no candidates
    and source ``"upstream"``.
    """
    out: list[Mention] = []
    for ent in doc.ents:
        data = ent._.get("linker_data") if ent.has_extension("linker_data") else None
        if data is None:
            out.append(Mention(ent.start_char, ent.end_char, ent.text, (), ent.kb_id_ or None, "upstream",
                               label=ent.label_))
            continue
        candidates = tuple(Candidate(r[0], r[1], r[2], float(r[3]), bool(r[4])) for r in data["c"])
        out.append(Mention(ent.start_char, ent.end_char, ent.text, candidates, ent.kb_id_ or None, data["s"],
                           negated=bool(data.get("negated")), historical=bool(data.get("historical")),
                           hypothetical=bool(data.get("hypothetical")), family=bool(data.get("family")),
                           label=ent.label_))
    return out
