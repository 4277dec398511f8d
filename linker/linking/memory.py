"""Mention memory: the concepts an annotated training corpus gave each mention text.

A span whose text was annotated in the training corpus is linked to the concept(s) most of its training
mentions carry, before and instead of an embedding search — as the dictionary of training names in TaggerOne
and DNorm, or the "exact match against the training set" sieve of D'Souza & Ng. On the NCBI-disease and
BC5CDR dev splits two thirds of the gold mentions have a text seen in train, and for those the memory's
concept is right 96% of the time, more often than the trained embedding model's first answer.

The memory is keyed by :func:`linker.normalize.normalize`; a text is remembered only when one set of concept
ids holds more than ``min_share`` of its training mentions (ambiguous texts are left to the search). A
composite mention ("breast and ovarian cancer") remembers its several ids, one per conjunct. Saved as JSON
lines, one per (text, ids) with its count, so a memory is readable and merges by concatenation.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from linker.errors import SourceFormatError
from linker.mentions.proposal import ABBREVIATION, UPSTREAM, Proposal
from linker.normalize import normalize
from linker.types import Candidate

log = logging.getLogger(__name__)

#: a text is remembered when one set of ids holds more than this share of its training mentions
MIN_SHARE = 0.5
_SHAPE = 'a JSON object {"text": ..., "ids": [...], "count": N} (a mention memory written by train-pipeline)'


@dataclass
class MentionMemory:
    """``normalised text -> Counter(ids tuple -> count)``; :meth:`lookup` answers the majority ids."""

    counts: dict[str, Counter[tuple[str, ...]]] = field(default_factory=dict)
    min_share: float = MIN_SHARE

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, text: str, ids: Sequence[str], count: int = 1) -> None:
        key = normalize(text)
        if key and ids:
            self.counts.setdefault(key, Counter())[tuple(ids)] += count

    def lookup(self, text: str) -> tuple[str, ...] | None:
        """The ids most training mentions of *text* carry, when they hold more than ``min_share`` of them."""
        seen = self.counts.get(normalize(text))
        if not seen:
            return None
        (ids, top), total = seen.most_common(1)[0], sum(seen.values())
        return ids if top > self.min_share * total else None

    def save(self, path: str | os.PathLike[str]) -> None:
        from linker.meta import write_text_atomic

        lines = [json.dumps({"text": key, "ids": list(ids), "count": n}, ensure_ascii=False)
                 for key in sorted(self.counts) for ids, n in sorted(self.counts[key].items())]
        write_text_atomic(Path(path), "".join(line + "\n" for line in lines))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, min_share: float = MIN_SHARE) -> MentionMemory:
        from linker.sources._io import iter_lines, json_object

        memory = cls(min_share=min_share)
        path = Path(path)
        for lineno, line in iter_lines(path):
            if not line.strip():
                continue
            row = json_object(path, lineno, line, _SHAPE)
            text, ids, count = row.get("text"), row.get("ids"), row.get("count", 1)
            if not isinstance(text, str) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) \
                    or not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise SourceFormatError(path, lineno, f"expected {_SHAPE}")
            memory.add(text, ids, count)
        return memory


def build_memory(mention_files: Iterable[str | os.PathLike[str]], termdb: Any, *,
                 alt_ids: Sequence[str | os.PathLike[str]] = (), types: Sequence[str] = (),
                 exclude_types: Sequence[str] = ()) -> MentionMemory:
    """The memory of the gold mentions in *mention_files* (``*.mentions.jsonl`` or PubTator), their ids
    resolved to concepts of *termdb* (directly, by its alt ids, or by the *alt_ids* files); mentions of a
    type left out, or with an id the index does not hold, are not remembered."""
    from linker.evaluate import index_mapper
    from linker.gold import read_mentions

    mapper = index_mapper(termdb, list(alt_ids))
    memory, kept, skipped = MentionMemory(), 0, 0

    def current(concept_id: str) -> str | None:
        if mapper.concepts([concept_id]):
            return concept_id
        live = sorted(mapper.concepts(mapper.expand(concept_id)))
        return live[0] if live else None

    for path in mention_files:
        for m in read_mentions(path, list(types) or None):
            if m.type in exclude_types or not m.ids:
                continue
            ids = [current(i) for i in m.ids]
            if any(i is None for i in ids):
                skipped += 1
                continue
            memory.add(m.text, list(dict.fromkeys(i for i in ids if i)))
            kept += 1
    log.info("mention memory: %d texts from %d training mentions (%d left out: an id not in the index)",
             len(memory), kept, skipped)
    return memory


def remembered(memory: MentionMemory, queries: Iterable[str], found: dict[str, list[Candidate]],
               names: Callable[[list[str]], dict[str, str]], allowed: Callable[[str], bool] = lambda _: True
               ) -> tuple[dict[str, list[Candidate]], dict[str, list[Candidate]]]:
    """For each of *queries* the memory knows: its candidates with the remembered concept first (score 1.0,
    exact: an annotated name of that concept) ahead of the search's others, and — for a remembered composite —
    one candidate per conjunct. *names* maps concept ids to preferred names (``termdb.names``); a concept
    the linker's filter does not *allow* is not linked from memory."""
    hits = {q: ids for q in queries if (ids := memory.lookup(q)) is not None and all(allowed(i) for i in ids)}
    if not hits:
        return {}, {}
    name_of = names(sorted({i for ids in hits.values() for i in ids}))
    linked: dict[str, list[Candidate]] = {}
    parts: dict[str, list[Candidate]] = {}
    for query, ids in hits.items():
        ones = [Candidate(i, name_of.get(i, i), query, 1.0, True) for i in ids]
        linked[query] = ones[:1] + [c for c in found.get(query, []) if c.concept_id != ids[0]]
        if len(ones) > 1:
            parts[query] = ones
    return linked, parts


def own_text_first(props: Sequence[Proposal], text: str, memory: MentionMemory,
                   names: Callable[[list[str]], dict[str, str]]) -> list[Proposal]:
    """*props* with each detected short form whose long form no finder proposed searched by its own text, when
    the memory knows that text and the long form shares a word with the remembered concept's name (*names*:
    ``termdb.names``); the short-form proposal there is dropped.

    A short form follows its long form (:mod:`linker.mentions.arbitration`), so one whose long form is not a
    mention is never linked. Annotators do link it when the two readings meet: in "the von Hippel-Lindau
    tumor suppressor gene (VHL)" the long form names the gene, yet NCBI-disease links all 40 training mentions
    "VHL" to von Hippel-Lindau disease. Where they do not meet ("hormone therapy (HT)", remembered as
    hypertension) the short form still follows its long form.
    """
    ends = {p.end for p in props if p.source != ABBREVIATION}
    long_of = {(p.start, p.end): p.query for p in props if p.source == ABBREVIATION and p.anchor
               and p.anchor[1] not in ends}
    hits = {(p.start, p.end): ids for p in props if p.source == UPSTREAM and (p.start, p.end) in long_of
            and (ids := memory.lookup(text[p.start:p.end])) is not None}
    if not hits:
        return list(props)
    name_of = names(sorted({i for ids in hits.values() for i in ids}))
    kept = {span for span, ids in hits.items()
            if _words(long_of[span]) & {w for i in ids for w in _words(name_of.get(i, ""))}}
    return [replace(p, query=text[p.start:p.end]) if p.source == UPSTREAM and (p.start, p.end) in kept else p
            for p in props
            if not (p.source == ABBREVIATION and (p.start, p.end) in kept)]


def _words(text: str) -> set[str]:
    """The words of *text* of four letters or more, normalised (no function words or short ones)."""
    return {w for w in normalize(text).split() if len(w) >= 4}
