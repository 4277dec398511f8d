"""Dense span proposal: candidate spans to embed when no name of the dictionary is written out."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from spacy.tokens import Doc

from linker.mentions.dictionary import STOP, stem
from linker.normalize import normalize

log = logging.getLogger(__name__)

#: Words that end a dense n-gram window: conjunctions, relative pronouns, most prepositions.
CLAUSE_WORDS = frozenset((
    "and", "or", "but", "nor", "which", "that", "who", "whom", "whose", "where", "when", "because", "since",
    "while", "whereas", "although", "though", "if", "than", "as", "with", "without", "within", "in", "on", "at",
    "by", "for", "from", "to", "into", "onto", "after", "before", "during", "among", "between", "through",
    "via", "versus", "vs", "we", "our", "us", "i", "you", "they", "it", "its", "this", "these", "those",
    "there", "here", "also", "then", "thus", "however", "therefore", "both", "either", "neither",
))


def _segments(doc: Doc) -> Iterator[list[int]]:
    """Runs of token indices between punctuation, line breaks and clause words."""
    run: list[int] = []
    for token in doc:
        if token.is_punct or token.is_space or token.like_url or token.lower_ in CLAUSE_WORDS or \
                (token.is_bracket or token.is_quote):
            if run:
                yield run
            run = []
            continue
        run.append(token.i)
    if run:
        yield run


def _content(token_text: str) -> bool:
    lower = token_text.lower()
    return lower not in STOP and any(ch.isalpha() for ch in lower) and len(lower) > 1


def dense_spans(doc: Doc, *, max_words: int = 5, vocabulary: frozenset[str] | None = None,
                limit: int | None = None) -> list[tuple[int, int]]:
    """Character spans to embed: noun chunks when *doc* is parsed, else n-grams of up to *max_words*
    tokens inside :func:`_segments` that start and end on a content word and, when *vocabulary* is
    given, hold at least one word of it (stemmed). At most *limit* spans (the first ones)."""
    spans: list[tuple[int, int]] = []
    if doc.has_annotation("DEP"):
        for chunk in doc.noun_chunks:
            tokens = [t for t in chunk if not (t.is_stop or t.is_punct or t.like_num)]
            if tokens:
                spans.append((tokens[0].idx, tokens[-1].idx + len(tokens[-1])))
        return spans[:limit] if limit else spans
    for run in _segments(doc):
        keys = [stem(normalize(doc[i].text).replace(" ", "")) for i in run]
        content = [_content(doc[i].text) for i in run]
        known = [vocabulary is None or key in vocabulary for key in keys]
        for a in range(len(run)):
            if not content[a]:
                continue
            for b in range(a, min(len(run), a + max_words)):
                if not content[b] or not any(known[a:b + 1]):
                    continue
                first, last = doc[run[a]], doc[run[b]]
                spans.append((first.idx, last.idx + len(last)))
                if limit is not None and len(spans) >= limit:
                    log.warning("dense proposal stopped at %d spans in a document of %d characters; "
                                "raise dense_limit or use the dictionary source for long documents",
                                limit, len(doc.text))
                    return spans
    return spans
