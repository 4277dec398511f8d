"""Weak labels for a mention detector when no annotated corpus exists (an ontology and unlabelled text only,
the common case for HPO phenotypes in clinical notes), in the manner of PhenoTagger's distant supervision:

1. **dictionary matches** on the user's unlabelled documents, kept only where the matcher is precise: names
   of two or more words, or single words of at least ``min_chars`` letters that are not written in capitals
   (acronyms are left to the text's own definitions); a one-word match that is a common English word
   (spaCy's stop words and :data:`linker.mentions.dictionary.GENERIC`) never counts;
2. **names in generated contexts**: each document with matches is copied ``contexts`` times with every
   match replaced by a name or synonym of a concept drawn at random from the ontology (seeded), so the
   detector sees the whole vocabulary in real sentences, not only the names the documents happen to use.

The gold annotations of the documents, if any, are never read.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from linker.errors import LinkerError
from linker.train.annotated import AnnotatedDoc, CorpusStats, Span

log = logging.getLogger(__name__)

MIN_CHARS = 6
MAX_NAME_WORDS = 6


def _documents(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    from linker.formats import Failure, open_reader

    out, failed = [], 0
    for path in paths:
        for item in open_reader(Path(path)):
            if isinstance(item, Failure):
                failed += 1
                log.warning("%s: %s (left out of the weak corpus)", item.where, item.reason)
                continue
            out.append((f"{Path(path).name}:{item.doc_id}", item.text))
    if not out:
        raise LinkerError(f"{', '.join(map(str, paths))}: no readable document to label")
    if failed:
        log.warning("%d document(s) could not be read and were left out", failed)
    return out


def _precise(surface: str, min_chars: int) -> bool:
    words = surface.split()
    if len(words) >= 2:
        return True
    letters = [ch for ch in surface if ch.isalpha()]
    return len(letters) >= min_chars and not all(ch.isupper() for ch in letters)


def _substitutes(names: Sequence[str]) -> list[str]:
    """Names worth placing in a context: 1-6 words, natural order, no acronym-only names."""
    from linker.mentions.dictionary import _uninvert

    out = []
    for name in names:
        natural = _uninvert(name) or name
        words = natural.split()
        letters = [ch for ch in natural if ch.isalpha()]
        if not 1 <= len(words) <= MAX_NAME_WORDS or len(letters) < 3 or all(ch.isupper() for ch in letters):
            continue
        out.append(natural)
    return sorted(set(out))


def weak_corpus(paths: Sequence[str | os.PathLike[str]], index_dir: str | os.PathLike[str], *, label: str,
                contexts: int = 1, seed: int = 0, min_chars: int = MIN_CHARS) -> tuple[list[AnnotatedDoc], CorpusStats]:
    """Weakly labelled documents (the real ones, then the generated contexts) and their counts."""
    from linker.mentions.dictionary import DictionaryMatcher
    from linker.meta import TERMS_FILE
    from linker.termdb import TermDB

    terms_file = Path(index_dir) / TERMS_FILE
    if not terms_file.exists():
        raise LinkerError(f"--weak {index_dir}: not an index folder (no {TERMS_FILE}); build one with linker build")
    names = TermDB(terms_file).term_texts()
    matcher = DictionaryMatcher(names, acronyms=False, min_chars=min_chars)
    pool = _substitutes(names)
    rng = random.Random(seed)
    stats = CorpusStats()
    real: list[AnnotatedDoc] = []
    generated: list[AnnotatedDoc] = []
    for doc_id, text in _documents(paths):
        spans = tuple(Span(p.start, p.end, label) for p in matcher.find(text) if _precise(text[p.start:p.end], min_chars))
        real.append(AnnotatedDoc(doc_id, text, spans))
        stats.documents += 1
        stats.spans += len(spans)
        for n in range(contexts if spans else 0):
            generated.append(_with_other_names(f"{doc_id}#context{n + 1}", text, spans, pool, rng))
    stats.documents += len(generated)
    stats.spans += sum(len(d.spans) for d in generated)
    log.info("weak labels: %d documents with %d dictionary matches, %d generated contexts", len(real),
             sum(len(d.spans) for d in real), len(generated))
    return real + generated, stats


def _with_other_names(doc_id: str, text: str, spans: Sequence[Span], pool: Sequence[str],
                      rng: random.Random) -> AnnotatedDoc:
    """*text* with every span replaced by a name drawn from *pool* (lower-cased where the span was)."""
    pieces, new_spans, cursor, length = [], [], 0, 0
    for span in spans:
        before = text[cursor:span.start]
        pieces.append(before)
        length += len(before)
        name = rng.choice(pool)
        if text[span.start:span.end].islower():
            name = name.lower()
        pieces.append(name)
        new_spans.append(Span(length, length + len(name), span.label))
        length += len(name)
        cursor = span.end
    pieces.append(text[cursor:])
    return AnnotatedDoc(doc_id, "".join(pieces), tuple(new_spans))
