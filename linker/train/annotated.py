"""Annotated documents for training a mention detector: text plus typed character spans.

Reads the docs + mentions JSONL pair of ``../shared/data`` (``NAME.docs.jsonl`` with ``NAME.mentions.jsonl``
beside it), PubTator and BioC XML. Spans are kept when their type is wanted (``types``) and renamed to one
``label`` when asked; overlapping spans keep the longest (spaCy's ``ner`` predicts flat spans).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.meta import move_entries

log = logging.getLogger(__name__)

DOCS_SUFFIX, MENTIONS_SUFFIX = ".docs.jsonl", ".mentions.jsonl"


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    label: str


@dataclass(frozen=True, slots=True)
class AnnotatedDoc:
    doc_id: str
    text: str
    spans: tuple[Span, ...]
    #: character ranges whose labels are not known (weak labels: a dictionary match too uncertain to be a
    #: mention or not one); detectors learn nothing there, neither a mention nor its absence
    unknown: tuple[tuple[int, int], ...] = ()


@dataclass
class CorpusStats:
    documents: int = 0
    spans: int = 0
    dropped_type: int = 0
    dropped_overlap: int = 0
    dropped_bad_offsets: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def mentions_path(docs: Path) -> Path:
    """The mentions file that goes with a ``NAME.docs.jsonl`` documents file."""
    name = docs.name
    if not name.endswith(DOCS_SUFFIX):
        raise LinkerError(f"{docs}: a JSONL corpus is a NAME{DOCS_SUFFIX} documents file with NAME{MENTIONS_SUFFIX} "
                          "beside it; rename the files, or give the corpus as PubTator or BioC XML")
    found = docs.with_name(name[: -len(DOCS_SUFFIX)] + MENTIONS_SUFFIX)
    if not found.exists():
        raise LinkerError(f"{docs}: no mentions file {found} beside it; the detector learns from annotated "
                          "documents (for text without annotations, see linker train-mentions --weak)")
    return found


def _raw_spans(path: Path) -> tuple[list[tuple[str, str]], dict[str, list[tuple[int, int, str, str]]]]:
    """(doc_id, text) in file order and ``doc_id -> [(start, end, type, text)]``."""
    from linker.gold import read_documents, read_mentions

    documents = read_documents(path)
    spans: dict[str, list[tuple[int, int, str, str]]] = {}
    if path.name.endswith(".jsonl"):
        for m in read_mentions(mentions_path(path)):
            spans.setdefault(m.doc_id, []).append((m.start, m.end, m.type, m.text))
    else:
        for d in documents:
            spans[str(d.doc_id)] = [(a.start, a.end, a.label, a.text) for a in d.annotations]
    return [(str(d.doc_id), d.text) for d in documents], spans


def read_corpus(path: str | os.PathLike[str], *, types: Iterable[str] = (), exclude_types: Iterable[str] = (),
                label: str | None = None, stats: CorpusStats | None = None) -> list[AnnotatedDoc]:
    """Annotated documents of one corpus file (see the module docstring); types are kept or left out
    before they are renamed to *label*."""
    path = Path(path)
    wanted, banned = frozenset(types), frozenset(exclude_types)
    stats = stats if stats is not None else CorpusStats()
    documents, raw = _raw_spans(path)
    known = {doc_id for doc_id, _ in documents}
    orphans = sorted(set(raw) - known)
    if orphans:
        raise LinkerError(f"{path}: {len(orphans)} annotated document(s) are not in the documents (e.g. "
                          f"{orphans[0]}); give the documents file that goes with the mentions")
    out: list[AnnotatedDoc] = []
    for doc_id, text in documents:
        kept: list[Span] = []
        for start, end, kind, surface in raw.get(doc_id, ()):
            if (wanted and kind not in wanted) or kind in banned:
                stats.dropped_type += 1
                continue
            if not 0 <= start < end <= len(text) or (surface and text[start:end] != surface):
                stats.dropped_bad_offsets += 1
                continue
            kept.append(Span(start, end, label or kind or "ENTITY"))
        flat = flatten(kept)
        stats.dropped_overlap += len(kept) - len(flat)
        stats.documents += 1
        stats.spans += len(flat)
        out.append(AnnotatedDoc(doc_id, text, tuple(flat)))
    if wanted and not any(d.spans for d in out):
        raise LinkerError(f"{path}: no span of type {', '.join(sorted(wanted))}; check --type against the corpus")
    return out


def flatten(spans: Sequence[Span]) -> list[Span]:
    """Non-overlapping spans, longest first, in text order."""
    taken: list[Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= t.start or t.end <= span.start for t in taken):
            taken.append(span)
    return sorted(taken, key=lambda s: s.start)


def read_corpora(paths: Sequence[str | os.PathLike[str]], *, types: Iterable[str] = (),
                 exclude_types: Iterable[str] = (), label: str | None = None) -> tuple[list[AnnotatedDoc], CorpusStats]:
    """All documents of several corpora; a document id seen twice in files of one name (one file, or the
    same split of two corpora) is an error."""
    stats = CorpusStats()
    docs: list[AnnotatedDoc] = []
    seen: set[tuple[str, str]] = set()
    types, exclude_types = tuple(types), tuple(exclude_types)
    for path in paths:
        for doc in read_corpus(path, types=types, exclude_types=exclude_types, label=label, stats=stats):
            key = (Path(path).name, doc.doc_id)
            if key in seen:
                raise LinkerError(f"{path}: document {doc.doc_id} appears twice; each document once per corpus")
            seen.add(key)
            docs.append(doc)
    if stats.dropped_bad_offsets:
        log.warning("%d span(s) whose offsets do not match their text were left out", stats.dropped_bad_offsets)
    return docs, stats


@dataclass
class DetectorData:
    """What a detector learns from; both detectors' settings start with these fields.

    ``corpora`` are annotated documents, or, with ``weak`` (an index folder), unlabelled documents in any
    input format of ``linker annotate``, labelled by :func:`linker.train.weak.weak_corpus`. Without ``dev``
    documents, ``dev_fraction`` of the training documents are held out (seeded) to choose the checkpoint.
    """

    corpora: list[str]
    dev: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    exclude_types: list[str] = field(default_factory=list)
    label: str | None = None
    seed: int = 0
    dev_fraction: float = 0.1
    weak: str | None = None
    #: generated contexts per weakly labelled document; none by default: on NCBI-disease and BC5CDR dev a
    #: detector trained with one scored 1.4 / 2.8 strict F1 points below one trained without (docs/detector.md)
    weak_contexts: int = 0

    def unused_settings(self) -> set[str]:
        """Settings that do not change what this run trains on (the weak-label ones without ``weak``): left out
        when a resumed run's settings are compared with those it started with."""
        return set() if self.weak else {"weak_contexts"}


def split_docs(docs: list[AnnotatedDoc], fraction: float, seed: int) -> tuple[list[AnnotatedDoc], list[AnnotatedDoc]]:
    """(train, held out): a seeded *fraction* of the documents, at least one when there are two or more."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    held = set(order[:max(1, round(len(docs) * fraction))]) if len(docs) > 1 else set()
    return [d for i, d in enumerate(docs) if i not in held], [d for i, d in enumerate(docs) if i in held]


def training_docs(data: DetectorData) -> tuple[list[AnnotatedDoc], list[AnnotatedDoc], CorpusStats]:
    """(train, dev, statistics of the training corpora) as *data* describes them."""
    if data.weak is not None:
        from linker.train.weak import weak_corpus

        docs, stats = weak_corpus(data.corpora, data.weak, label=data.label or "ENTITY", contexts=data.weak_contexts,
                                  seed=data.seed)
    else:
        docs, stats = read_corpora(data.corpora, types=data.types, exclude_types=data.exclude_types,
                                   label=data.label)
    if data.dev:
        dev_docs, _ = read_corpora(data.dev, types=data.types, exclude_types=data.exclude_types, label=data.label)
        return docs, dev_docs, stats
    train, dev = split_docs(docs, data.dev_fraction, data.seed)
    return train, dev, stats


def save_pipeline_into(nlp: Any, out: Path, staging: Path, extra: dict[str, str] | None = None) -> None:
    """Write the spaCy pipeline *nlp* into *out* (files of *extra*, name → text, beside it): saved whole into
    *staging* first, then each entry moved into place, so *out*'s other files (a ``.train`` state) stay."""
    if staging.exists():
        shutil.rmtree(staging)
    nlp.to_disk(staging)
    for name, text in (extra or {}).items():
        (staging / name).write_text(text)
    move_entries(staging, out)
