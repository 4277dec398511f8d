"""HTML views of linked documents (displaCy's entity style): each span shows its concept id and name."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc

from linker.errors import LinkerError
from linker.extensions import pipe_texts

#: Colours per mention state, for displaCy's ``options["colors"]``.
COLORS = {"LINKED": "#9be7a6", "NEGATED": "#f4b6b6", "UNLINKED": "#dddddd"}


def _entry(doc: Doc, title: str | None) -> dict[str, Any]:
    ents = []
    for ent in doc.ents:
        data = ent._.get("linker_data") if ent.has_extension("linker_data") else None
        names = {row[0]: row[1] for row in data["c"]} if data else {}
        if ent.kb_id_:
            label = f"{ent.kb_id_} {names.get(ent.kb_id_, '')}".strip()
        else:
            label = f"{ent.label_} (unlinked)"
        if data and data.get("negated"):
            label = f"NOT {label}"
        ents.append({"start": ent.start_char, "end": ent.end_char, "label": label})
    return {"text": doc.text, "ents": ents, "title": title}


def render_html(docs: Doc | Iterable[Doc], *, titles: Iterable[str | None] | None = None, page: bool = True) -> str:
    """displaCy HTML of *docs* with every entity labelled ``<concept id> <concept name>`` (``NOT …`` when
    negated, ``… (unlinked)`` when no concept passed the threshold)."""
    doc_list = [docs] if isinstance(docs, Doc) else list(docs)
    title_list = list(titles) if titles is not None else [None] * len(doc_list)
    entries = [_entry(doc, html.escape(t) if t else None) for doc, t in zip(doc_list, title_list)]
    colors: dict[str, str] = {}
    for entry in entries:
        for ent in entry["ents"]:
            label = ent["label"]
            colors[label] = COLORS["NEGATED"] if label.startswith("NOT ") else \
                COLORS["UNLINKED"] if label.endswith("(unlinked)") else COLORS["LINKED"]
    return displacy.render(entries, style="ent", manual=True, page=page, minify=True,
                           options={"colors": colors})


def render_docs(nlp: Language, documents: Sequence[tuple[str | None, str]]) -> list[Doc]:
    """Run *nlp* over (title, text) *documents* for one page each; a text longer than spaCy takes
    (``nlp.max_length``) is refused, naming it, before any is run."""
    for number, (title, text) in enumerate(documents, start=1):
        if len(text) > nlp.max_length:
            raise LinkerError(f"{title or f'text {number}'}: {len(text):,} characters, more than a page holds "
                              f"({nlp.max_length:,}); split it, or annotate it with linker annotate")
    return list(pipe_texts(nlp, (text for _, text in documents)))


def write_html(path: str | os.PathLike[str], docs: Doc | Iterable[Doc], **options: Any) -> Path:
    """Write :func:`render_html` of *docs* to *path* (UTF-8) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(docs, **options), encoding="utf-8")
    return out
