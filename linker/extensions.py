"""The Span attributes the linker writes: one plain-data extension (``span._.linker_data``, kept in
``doc.user_data`` so that Docs survive ``doc.to_bytes()`` and ``nlp.pipe(..., n_process=2)``) and getters over
it: ``kb_ents`` (scispaCy's shape), ``concepts``, ``mention_source`` and the assertion flags; and the trained
detector's confidence in each span it sets (``span._.linker_confidence``, 0-1, None for spans of other NERs)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from spacy.tokens import Doc, Span

from linker.assertion import FLAGS
from linker.types import Candidate

log = logging.getLogger(__name__)

DATA_ATTR = "linker_data"
#: the detector's confidence in an entity it set (:mod:`linker.mentions.transformer`)
CONFIDENCE_ATTR = "linker_confidence"
#: ``doc.user_data`` key of the text a Doc was made from (:func:`pipe_texts`).
TEXT_KEY = "linker_text"


def pipe_texts(nlp: Any, texts: Iterable[str], **options: Any) -> Iterator[Doc]:
    """``nlp.pipe(texts)``, each Doc keeping the text it was made from, which :func:`doc_text` then reads.

    spaCy keeps no copy of a Doc's text: ``doc.text`` joins its tokens again on every read (in a profile of the
    default pipeline over abstracts, about a seventh of its time). Its tokenizer never changes the characters,
    so the input text is the Doc's text."""
    def made() -> Iterator[Doc]:
        for text in texts:
            doc = nlp.make_doc(text)
            doc.user_data[TEXT_KEY] = text
            yield doc
    return nlp.pipe(made(), **options)


def doc_text(doc: Doc) -> str:
    """The text of *doc*: the one it was made from by :func:`pipe_texts`, else spaCy's ``doc.text`` (also when
    the kept text no longer ends where the Doc's last token does: a component that made a Doc of another text)."""
    text = doc.user_data.get(TEXT_KEY)
    if isinstance(text, str) and len(text) == (doc[-1].idx + len(doc[-1].text_with_ws) if len(doc) else 0):
        return text
    return doc.text


def _data(span: Span) -> dict[str, Any] | None:
    return span._.get(DATA_ATTR)


def _kb_ents(span: Span) -> list[tuple[str, float]]:
    data = _data(span)
    return [(row[0], float(row[3])) for row in data["c"]] if data else []


def _concepts(span: Span) -> list[Candidate]:
    data = _data(span)
    return [Candidate(row[0], row[1], row[2], float(row[3]), bool(row[4])) for row in data["c"]] if data else []


def _flag(name: str) -> Callable[[Span], bool]:
    def getter(span: Span) -> bool:
        data = _data(span)
        return bool(data and data.get(name))
    return getter


def _source(span: Span) -> str | None:
    data = _data(span)
    return data["s"] if data else None


def register_extensions() -> None:
    """Declare the Span attributes (once; an attribute another package already declared is left alone)."""
    for name in (DATA_ATTR, CONFIDENCE_ATTR):
        if not Span.has_extension(name):
            Span.set_extension(name, default=None)
    getters: dict[str, Callable[[Span], Any]] = {"kb_ents": _kb_ents, "concepts": _concepts,
                                                 "mention_source": _source}
    getters.update({flag: _flag(flag) for flag in FLAGS})
    for name, getter in getters.items():
        if not Span.has_extension(name):
            Span.set_extension(name, getter=getter)
        elif Span.get_extension(name)[2] is not getter and name in {"kb_ents", "negated"}:
            log.debug("span._.%s is already declared by another package; kept theirs", name)
