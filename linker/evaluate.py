"""Evaluation: normalisation with gold mentions (acc@k, MRR), end-to-end (span, concept) P/R/F1, similarity.

Conventions (stated once, used everywhere, printed in every JSON record under ``"conventions"``):

* **Query** — the mention text exactly as annotated, composite mentions included
  ("breast and ovarian cancer" is one query); every mention counts once, repeats included.
* **Alt ids** — one map is applied to gold *and* predicted ids: the index's own ``alt_ids`` table
  (merged, replaced and ``consider`` ids) plus any ``--alt-ids`` file. An id stands for itself and
  every id the map sends it to (followed for up to :data:`MAX_HOPS` steps); a prediction matches a
  gold id when their two sets meet.
* **Several gold ids** (composite ``|`` or combination ``+`` mentions) — a mention is correct at *k*
  when any of the top *k* predicted concepts matches **any** of its gold ids, the convention of
  BioSyn/SapBERT evaluation scripts on NCBI-disease and BC5CDR. It is the only convention that gives
  a one-concept ranker a fair chance on composites; their number is reported so the effect can be judged.
* **Absent gold** — a mention none of whose (mapped) gold ids is a concept of the index cannot be
  linked by any ranker over that index. It is counted under ``absent`` and left out of acc@k/MRR;
  ``acc@1_all`` repeats acc@1 counting those mentions as misses. Mentions with no gold id at all
  (PubTator ``-1``) are counted under ``no_gold_id`` and skipped.
* **MRR** — mean over scored mentions of 1/rank of the first matching concept within the top
  :data:`DEFAULT_K` (0 when none).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from linker.errors import LinkerError
from linker.gold import GoldMention, read_alt_ids, read_mentions
from linker.similarity import evaluate_similarity, read_pairs
from linker.normalize import normalize

log = logging.getLogger(__name__)

DEFAULT_K = 10
KS = (1, 5)
MAX_HOPS = 3
CONVENTIONS = {
    "query": "mention text as annotated (composites unsplit), every mention counted",
    "multi_id": "correct@k if any of the top-k concepts matches any gold id (BioSyn/SapBERT convention)",
    "alt_ids": "index alt_ids table + --alt-ids file applied to gold and predicted ids",
    "absent": "mentions with no gold id in the index are excluded from acc@k/MRR; acc@1_all counts them as misses",
    "mrr": f"1/rank of first match within top {DEFAULT_K}, else 0",
}

#: Ranks concept ids for a batch of query texts (best first).
Ranker = Callable[[Sequence[str]], list[list[str]]]


# -- id mapping ---------------------------------------------------------------------------------------------
class IdMapper:
    """Expands an id to itself plus what the alt-id map sends it to; answers which ids are index concepts."""

    def __init__(self, alt_map: Mapping[str, Sequence[str]] | None = None,
                 is_concept: Callable[[Iterable[str]], set[str]] | None = None) -> None:
        self.alt_map: dict[str, list[str]] = {key: list(value) for key, value in (alt_map or {}).items()}
        self._is_concept = is_concept
        self._known: dict[str, bool] = {}

    def update(self, alt_map: Mapping[str, Sequence[str]]) -> None:
        for key, values in alt_map.items():
            targets = self.alt_map.setdefault(key, [])
            targets.extend(v for v in values if v not in targets)

    def expand(self, concept_id: str) -> frozenset[str]:
        seen = {concept_id}
        frontier = [concept_id]
        for _ in range(MAX_HOPS):
            frontier = [t for c in frontier for t in self.alt_map.get(c, ()) if t not in seen]
            if not frontier:
                break
            seen.update(frontier)
        return frozenset(seen)

    def concepts(self, ids: Iterable[str]) -> set[str]:
        """The subset of *ids* that are concepts of the index (all of them when no index is known)."""
        ids = set(ids)
        if self._is_concept is None:
            return ids
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            present = self._is_concept(unknown)
            self._known.update({i: i in present for i in unknown})
        return {i for i in ids if self._known[i]}


# -- normalisation scores -----------------------------------------------------------------------------------
@dataclass
class _Tally:
    n: int = 0
    hits: dict[int, int] = field(default_factory=lambda: {k: 0 for k in KS})
    rr: float = 0.0

    def add(self, rank: int | None) -> None:
        self.n += 1
        if rank is not None:
            self.rr += 1.0 / rank
            for k in self.hits:
                if rank <= k:
                    self.hits[k] += 1

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        for k, hits in self.hits.items():
            out[f"acc@{k}"] = hits / self.n if self.n else None
        out["mrr"] = self.rr / self.n if self.n else None
        return out


def first_match_rank(predicted: Sequence[str], gold: Sequence[str], mapper: IdMapper) -> int | None:
    """1-based rank of the first predicted id matching any gold id (through the alt-id map), else None."""
    gold_set: set[str] = set()
    for g in gold:
        gold_set |= mapper.expand(g)
    for rank, concept_id in enumerate(predicted, start=1):
        if mapper.expand(concept_id) & gold_set:
            return rank
    return None


def score_normalization(mentions: Sequence[GoldMention], predictions: Sequence[Sequence[str]],
                        mapper: IdMapper) -> dict[str, Any]:
    """acc@1, acc@5, MRR over the mentions whose gold is in the index, with the counts around them."""
    if len(mentions) != len(predictions):
        raise ValueError(f"{len(mentions)} mentions but {len(predictions)} rankings")
    overall, composite = _Tally(), _Tally()
    per_type: dict[str, _Tally] = {}
    counts = Counter(mentions=len(mentions))
    absent_ids: Counter[str] = Counter()
    for mention, predicted in zip(mentions, predictions):
        if not mention.ids:
            counts["no_gold_id"] += 1
            continue
        counts["with_gold_id"] += 1
        expanded = set().union(*(mapper.expand(g) for g in mention.ids))
        if not mapper.concepts(expanded):
            counts["absent"] += 1
            absent_ids.update(mention.ids)
            continue
        counts["scored"] += 1
        if any(g not in mapper.concepts([g]) for g in mention.ids):
            counts["mapped_or_partly_absent"] += 1
        rank = first_match_rank(predicted, mention.ids, mapper)
        overall.add(rank)
        per_type.setdefault(mention.type or "-", _Tally()).add(rank)
        if mention.composite:
            composite.add(rank)
    metrics = overall.as_dict()
    hits1 = overall.hits[1]
    metrics["acc@1_all"] = hits1 / counts["with_gold_id"] if counts["with_gold_id"] else None
    return {
        "counts": {key: counts.get(key, 0) for key in
                   ("mentions", "with_gold_id", "no_gold_id", "scored", "absent", "mapped_or_partly_absent")}
        | {"composite_scored": composite.n},
        "metrics": metrics,
        "composite": composite.as_dict(),
        "per_type": {name: tally.as_dict() for name, tally in sorted(per_type.items())},
        "absent_gold_ids": dict(absent_ids.most_common()),
    }


# -- rankers ------------------------------------------------------------------------------------------------
def index_ranker(index: Any, k: int = DEFAULT_K, batch_size: int = 1024, *, skip_unique_exact: bool = False) -> Ranker:
    """Rank with :meth:`ConceptIndex.search` (the ranking ``linker lookup`` prints)."""

    def rank(texts: Sequence[str]) -> list[list[str]]:
        unique = list(dict.fromkeys(texts))
        found: dict[str, list[str]] = {}
        for start in range(0, len(unique), batch_size):
            chunk = unique[start:start + batch_size]
            for text, candidates in zip(chunk, index.search(chunk, k, skip_unique_exact=skip_unique_exact)):
                found[text] = [c.concept_id for c in candidates]
        return [found[text] for text in texts]

    return rank


def exact_ranker(termdb: Any) -> Ranker:
    """The exact normalised-string-match baseline: concepts with a name equal to the text after
    :func:`~linker.normalize.normalize`, preferred-name matches first, then by concept id (as the index orders them)."""

    def rank(texts: Sequence[str]) -> list[list[str]]:
        table = termdb.exact(normalize(t) for t in texts)
        out = []
        for text in texts:
            matches = sorted(table.get(normalize(text), ()), key=lambda m: (not m[2], m[0]))
            out.append(list(dict.fromkeys(m[0] for m in matches)))
        return out

    return rank


def index_mapper(termdb: Any, alt_ids: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> IdMapper:
    """An :class:`IdMapper` over the index's concepts, its own alt-id table and the given alt-id file(s)."""
    mapper = IdMapper(termdb.alt_id_map(), lambda ids: set(termdb.names(ids)))
    files = [alt_ids] if isinstance(alt_ids, (str, os.PathLike)) else list(alt_ids or [])
    for path in files:
        mapper.update(read_alt_ids(path))
    return mapper


def evaluate_normalization(mentions: Sequence[GoldMention], ranker: Ranker, mapper: IdMapper) -> dict[str, Any]:
    """Rank every mention text with *ranker* and score it; adds ``seconds`` and ``mentions_per_second``."""
    started = time.perf_counter()
    predictions = ranker([m.text for m in mentions])
    seconds = time.perf_counter() - started
    result = score_normalization(mentions, predictions, mapper)
    result["seconds"] = round(seconds, 3)
    result["mentions_per_second"] = round(len(mentions) / seconds, 1) if seconds > 0 else None
    return result


# -- the whole record ---------------------------------------------------------------------------------------
def evaluate(
    mentions: str | os.PathLike[str] | None = None,
    *,
    index: str | os.PathLike[str] | None = None,
    alt_ids: Sequence[str | os.PathLike[str]] = (),
    types: Sequence[str] = (),
    docs: str | os.PathLike[str] | None = None,
    pairs: str | os.PathLike[str] | None = None,
    model: str | None = None,
    k: int = DEFAULT_K,
    exact_only: bool = False,
    pipeline_config: Mapping[str, Any] | None = None,
    pipeline: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """One JSON-ready evaluation record: normalisation of *mentions* over *index*, end to end when *docs*
    are given (with the spaCy *pipeline* folder when given, else blank English + ``concept_linker``),
    similarity when *pairs* are given. Without *index*, a pipeline's own index is used."""
    from linker import __version__
    from linker.defaults import open_index

    if mentions is None and pairs is None:
        raise LinkerError("nothing to evaluate: give a mentions file and/or --pairs")
    if docs is not None and mentions is None:
        raise LinkerError("--docs needs the gold mentions file too")
    if docs is not None and exact_only:
        raise LinkerError("--exact ranks gold mentions only; end to end (--docs) runs the model's pipeline: "
                          "drop one of the two")
    if pipeline is not None and docs is None:
        raise LinkerError("--pipeline scores end to end: give the documents with --docs")
    if pipeline is not None and index is None:
        from linker.pipeline import pipeline_index

        index = pipeline_index(pipeline)
    started = time.perf_counter()
    record: dict[str, Any] = {"linker": __version__, "conventions": CONVENTIONS}
    concept_index = None
    if mentions is not None:
        concept_index = open_index(index, model=model) if model else open_index(index)
        record["index"] = {"path": str(concept_index.path), "ontology": concept_index.meta["ontology"].get("name"),
                           "release": concept_index.meta["ontology"].get("release"),
                           "concepts": concept_index.meta["counts"].get("concepts"),
                           "terms": concept_index.meta["counts"].get("terms")}
        record["model"] = "exact normalised string match" if exact_only else (model or concept_index.meta["encoder"]["model"])
        gold = read_mentions(mentions, types or None)
        if not gold:
            raise LinkerError(f"{mentions}: no gold mention to score (the file holds none); give a mentions JSONL "
                              "(one mention object per line) or a PubTator file with annotations")
        record["dataset"] = {"mentions": str(mentions), "types": list(types) or None, "alt_ids": [str(a) for a in alt_ids]}
        log.info("normalising %d mentions of %s over %s", len(gold), mentions, concept_index.path)
        mapper = index_mapper(concept_index.termdb, alt_ids)
        ranker = exact_ranker(concept_index.termdb) if exact_only else index_ranker(concept_index, k)
        record["normalization"] = evaluate_normalization(gold, ranker, mapper)
        if docs is not None:
            record["dataset"]["docs"] = str(docs)
            from linker.end_to_end import evaluate_end_to_end

            record["end_to_end"] = evaluate_end_to_end(docs, gold, concept_index, mapper, pipeline_config or {},
                                                       pipeline=pipeline)
    if pairs is not None:
        from linker.encoders import load_encoder

        encoder = concept_index.encoder if concept_index is not None and not model else load_encoder(model)
        record.setdefault("model", getattr(encoder, "name", model))
        record["similarity"] = {"pairs": str(pairs), **evaluate_similarity(read_pairs(pairs), encoder)}
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def format_table(record: Mapping[str, Any]) -> str:
    """The record as a small text table."""
    lines = [f"model: {record.get('model')}"]
    if "index" in record:
        lines.append(f"index: {record['index']['path']} ({record['index']['concepts']} concepts, "
                     f"{record['index']['terms']} names)")
    norm = record.get("normalization")
    if norm:
        c, m = norm["counts"], norm["metrics"]
        lines.append(f"mentions: {c['mentions']}  with gold id: {c['with_gold_id']}  scored: {c['scored']}  "
                     f"absent from index: {c['absent']}  no gold id: {c['no_gold_id']}  composite: {c['composite_scored']}")
        lines.append(f"{'':<18}{'n':>7}{'acc@1':>8}{'acc@5':>8}{'MRR':>8}")
        lines.append(_row("all scored", {**m, "n": c["scored"]}))
        lines.append(f"{'acc@1 with absent counted as misses':<40}{_fmt(m['acc@1_all'])}")
        if norm["composite"]["n"]:
            lines.append(_row("composite", norm["composite"]))
        if len(norm["per_type"]) > 1:
            for name, tally in norm["per_type"].items():
                lines.append(_row(f"  {name}", tally))
        lines.append(f"{norm['mentions_per_second']} mentions/s ({norm['seconds']} s)")
    e2e = record.get("end_to_end")
    if e2e:
        lines.append(f"end to end: {e2e['documents']} documents, {e2e['gold']} gold mentions with ids, "
                     f"{e2e['predicted']} linked predictions ({e2e['seconds']} s)")
        lines.append(f"{'':<28}{'P':>7}{'R':>7}{'F1':>7}")
        for mode in ("strict", "overlap"):
            for name, prf in e2e.get(mode, {}).items():
                lines.append(f"  {mode:<8}{name:<18}{_fmt(prf.get('precision'))}{_fmt(prf.get('recall'))}"
                             f"{_fmt(prf.get('f1'))}")
        if "document" in e2e:
            prf = e2e["document"]
            lines.append(f"  {'document concepts (CDR)':<26}{_fmt(prf.get('precision'))}{_fmt(prf.get('recall'))}"
                         f"{_fmt(prf.get('f1'))}")
    sim = record.get("similarity")
    if sim:
        lines.append(f"similarity ({sim['counts']['pairs']} pairs): Spearman {_fmt(sim['metrics']['spearman'])}  "
                     f"Pearson {_fmt(sim['metrics']['pearson'])}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return f"{value:7.4f}" if isinstance(value, (int, float)) and not math.isnan(value) else f"{'-':>7}"


def _row(label: str, tally: Mapping[str, Any]) -> str:
    return (f"{label:<18}{tally['n']:>7}{_fmt(tally.get('acc@1'))}{_fmt(tally.get('acc@5'))}{_fmt(tally.get('mrr'))}")
