"""A ready pipeline and plain values out of it: the entry points bulk annotation and scripts build on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import spacy
from spacy.language import Language
from spacy.tokens import Doc

from linker.errors import LinkerError
from linker.types import Candidate, Mention

COMPONENT = "concept_linker"
_SAVED: Any = object()


def check_settings(config: dict[str, Any]) -> None:
    """Refuse a ``concept_linker`` setting that does not exist, naming it and the settings that do, and a value
    of the wrong type or out of range (:func:`linker.settings.check_values`)."""
    from linker.component import DEFAULT_CONFIG  # registers the factory even when the entry point is not installed
    from linker.settings import check_values

    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise LinkerError(f"unknown concept_linker setting(s) {', '.join(unknown)}; the settings are "
                          f"{', '.join(DEFAULT_CONFIG)} (docs/pipeline.md)")
    check_values(config, DEFAULT_CONFIG)


def load_pipeline(index: str | os.PathLike[str] | None = None, *, pipeline: str | os.PathLike[str] | None = None,
                  **config: Any) -> Language:
    """A pipeline whose last component is ``concept_linker``, its index opened.

    Without *pipeline*: blank English + ``concept_linker`` (default settings unless *config* says otherwise).
    With *pipeline* (a spaCy pipeline folder, e.g. a trained mention detector or a whole trained pipeline):
    that pipeline as saved, with ``concept_linker`` added when it has none; its saved settings stay unless
    *config* or *index* name others. *index* is an index folder; None means the pipeline's own index, else
    the default HPO index.
    """
    check_settings(config)
    settings = dict(config)
    if index is not None:
        settings["index"] = str(index)
    if pipeline is None:
        nlp = spacy.blank("en")
        nlp.add_pipe(COMPONENT, config=settings)
        nlp.initialize()
        return nlp
    folder = Path(pipeline)
    if not (folder / "config.cfg").is_file():
        raise LinkerError(f"--pipeline {folder}: not a spaCy pipeline folder (no config.cfg); train one with "
                          "linker train-mentions or linker train-pipeline")
    saved = spacy.util.load_config(folder / "config.cfg")
    if COMPONENT not in saved["nlp"]["pipeline"]:
        nlp = spacy.load(folder)
        nlp.add_pipe(COMPONENT, config=settings)
        nlp.get_pipe(COMPONENT).initialize()
        return nlp
    index_path = settings.pop("index", None)
    memory = settings.pop("memory", _SAVED)  # like the index, the saved memory stays unless config names another
    nlp = spacy.load(folder, config={"components": {COMPONENT: settings}} if settings else {})
    component = nlp.get_pipe(COMPONENT)
    if index_path is not None:
        component.index_path = index_path
        component.set_index(None)
    if memory is not _SAVED:
        component.set_memory(memory)
    component.initialize()
    return nlp


def pipeline_fingerprint(pipeline: str | os.PathLike[str]) -> str:
    """A short digest of a pipeline folder's settings and weights' sizes and times (what a resumed run checks)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(pipeline).rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(pipeline).parts):
            stat = path.stat()
            digest.update(f"{path.relative_to(pipeline)}\0{stat.st_size}\0{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def pipeline_index(pipeline: str | os.PathLike[str]) -> str | None:
    """The index folder a saved pipeline's ``concept_linker`` uses (None: it has no linker, or uses the default)."""
    from linker.component_folder import saved_index

    folder = Path(pipeline) / COMPONENT
    return saved_index(folder)[1] if folder.is_dir() else None


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
                           label=ent.label_, conjunct_ids=tuple(data.get("j", ()))))
    return out
