"""Weak labels for a mention detector when no annotated corpus exists (an ontology and unlabelled text only,
the common case for HPO phenotypes in clinical notes), in the manner of PhenoTagger's distant supervision:

1. **dictionary matches** on the user's unlabelled documents, kept as mentions only where the matcher is
   precise: names of two or more words, or single words of at least ``min_chars`` letters that are not written
   in capitals; a one-word match that is a common English word (spaCy's stop words and
   :data:`linker.mentions.dictionary.GENERIC`) never counts;
2. **short forms** the text defines for such a mention ("spinal muscular atrophy (SMA)"): every occurrence of
   the short form is a mention too, as the linker treats it;
3. the **other matches** (short words, names in capitals that no definition vouches for: often gene symbols)
   are *unknown*: the detector learns neither that they are mentions nor that they are not (AutoNER's
   "unknown" tokens, Shang et al. 2018) — labelling them as outside taught the detector that "pain" or a
   defined acronym is never a mention;
4. **names in generated contexts** (``contexts``, none by default): each document with mentions is copied
   ``contexts`` times with every mention replaced by a name or synonym of a concept drawn at random from the
   ontology (seeded), so the detector sees the whole vocabulary in real sentences, not only the names the
   documents happen to use. On NCBI-disease and BC5CDR dev (MEDIC) one copy cost 1.4 / 2.8 strict F1 points.

The gold annotations of the documents, if any, are never read.
"""

from __future__ import annotations

import bisect
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from linker.errors import LinkerError
from linker.mentions.dictionary import DictionaryMatcher
from linker.train.annotated import AnnotatedDoc, CorpusStats, DetectorData, Span, flatten

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
                contexts: int = DetectorData.weak_contexts, seed: int = 0,
                min_chars: int = MIN_CHARS) -> tuple[list[AnnotatedDoc], CorpusStats]:
    """Weakly labelled documents (the real ones, then the generated contexts) and their counts."""
    from linker.meta import TERMS_FILE
    from linker.termdb import TermDB

    terms_file = Path(index_dir) / TERMS_FILE
    if not terms_file.exists():
        raise LinkerError(f"--weak {index_dir}: not an index folder (no {TERMS_FILE}); build one with linker build")
    names = TermDB(terms_file).term_texts()
    matcher = DictionaryMatcher(names, min_chars=3)
    pool = _substitutes(names)
    rng = random.Random(seed)
    stats = CorpusStats()
    real: list[AnnotatedDoc] = []
    generated: list[AnnotatedDoc] = []
    for doc_id, text in _documents(paths):
        doc = label_document(doc_id, text, matcher, label=label, min_chars=min_chars)
        real.append(doc)
        stats.documents += 1
        stats.spans += len(doc.spans)
        for n in range(contexts if doc.spans else 0):
            generated.append(_with_other_names(f"{doc_id}#context{n + 1}", doc, pool, rng))
    stats.documents += len(generated)
    stats.spans += sum(len(d.spans) for d in generated)
    log.info("weak labels: %d documents with %d mentions (%d unknown ranges), %d generated contexts", len(real),
             sum(len(d.spans) for d in real), sum(len(d.unknown) for d in real), len(generated))
    return real + generated, stats


def label_document(doc_id: str, text: str, matcher: DictionaryMatcher, *, label: str,
                   min_chars: int = MIN_CHARS) -> AnnotatedDoc:
    """*text* with its weak mentions and unknown ranges (see the module docstring); *matcher* matches every
    name, short ones and those in capitals included."""
    from linker.abbreviations import find_abbreviations

    matches = [(p.start, p.end) for p in matcher.find(text)]
    mentions = {m for m in matches if _precise(text[m[0]:m[1]], min_chars)}
    for short in find_abbreviations(text):
        if any(end == short.long_end for _, end in mentions):  # a mention ends the long form
            mentions.add((short.start, short.end))
    spans = flatten([Span(start, end, label) for start, end in mentions])
    unknown = tuple((start, end) for start, end in matches if not any(start < s.end and s.start < end for s in spans))
    return AnnotatedDoc(doc_id, text, tuple(spans), unknown)


def _with_other_names(doc_id: str, doc: AnnotatedDoc, pool: Sequence[str], rng: random.Random) -> AnnotatedDoc:
    """*doc* with every mention replaced by a name drawn from *pool* (lower-cased where the mention was); its
    unknown ranges (which overlap no mention) move with the text around them."""
    text, pieces, new_spans, cursor = doc.text, [], [], 0
    ends, shifts = [], []  # after each mention's end, the text is shifted by the growth so far
    for span in doc.spans:
        pieces.append(text[cursor:span.start])
        name = rng.choice(pool)
        if text[span.start:span.end].islower():
            name = name.lower()
        pieces.append(name)
        start = span.start + (shifts[-1] if shifts else 0)
        new_spans.append(Span(start, start + len(name), span.label))
        ends.append(span.end)
        shifts.append(start + len(name) - span.end)
        cursor = span.end
    pieces.append(text[cursor:])

    def moved(offset: int) -> int:
        before = bisect.bisect_right(ends, offset)
        return offset + (shifts[before - 1] if before else 0)

    unknown = tuple((moved(start), moved(end)) for start, end in doc.unknown)
    return AnnotatedDoc(doc_id, "".join(pieces), tuple(new_spans), unknown)
