"""End-to-end scoring of linked mentions: precision, recall and F1 of (span, concept) pairs.

Pure functions over :class:`Annotation` values; nothing here reads files or loads models.

Conventions
-----------
* A prediction or gold mention is ``(doc_id, start, end, concept_ids)`` with 0-based, end-exclusive
  character offsets. Predictions without any concept id are ignored when concepts are scored
  (``concepts=True``): they are spans, not (span, concept) pairs.
* **Concepts match** when the two id sets intersect. A gold mention with several ids (a composite such
  as "breast and ovarian cancer", or an id written two ways) is matched when the predicted concept is
  *any* of them; a prediction carrying several ids matches when any of them is a gold id.
* Ids are compared after ``id_map`` (e.g. alternative id -> primary id, both ways of writing an id):
  each id is replaced by what the map gives for it, or kept as is.
* **Strict** matching needs equal start and end; **overlap** matching needs the spans to share at
  least one character.
* Precision counts predictions matched by some gold mention; recall counts gold mentions matched by
  some prediction. Under overlap matching one long prediction may therefore match two gold mentions
  (and the reverse); the two counts are kept apart (``tp_pred``, ``tp_gold``) so both stay honest.
* Identical items (same doc, span and ids) are counted once on each side.
* Per entity type: recall over the gold mentions of that type; precision over the predictions of that
  type, reported only when predictions carry types (otherwise ``None``).
* **Document level** (:func:`score_documents`, the concept measure of the BioCreative V CDR disease
  task): per document, the set of concepts of the gold mentions (every id of a composite) against the
  set of predicted concepts, micro-averaged over documents. Ids that ``id_map`` sends to a common id
  within one document are one concept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from linker.errors import LinkerError

MatchMode = Literal["strict", "overlap"]
MATCH_MODES: tuple[str, ...] = ("strict", "overlap")


@dataclass(frozen=True, slots=True)
class Annotation:
    """One predicted or gold mention."""

    doc_id: str
    start: int
    end: int
    concept_ids: tuple[str, ...] = ()
    type: str | None = None


@dataclass(frozen=True, slots=True)
class PRF:
    """Counts and scores of one comparison."""

    tp_pred: int
    n_pred: int
    tp_gold: int
    n_gold: int

    @property
    def precision(self) -> float:
        return self.tp_pred / self.n_pred if self.n_pred else 0.0

    @property
    def recall(self) -> float:
        return self.tp_gold / self.n_gold if self.n_gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall, "f1": self.f1}


def annotation(doc_id: str, start: int, end: int, concept_ids: str | Sequence[str] | None = (),
               type: str | None = None) -> Annotation:
    """An :class:`Annotation` from loose values (a single id, a list, or None)."""
    if concept_ids is None:
        ids: tuple[str, ...] = ()
    elif isinstance(concept_ids, str):
        ids = (concept_ids,)
    else:
        ids = tuple(concept_ids)
    return Annotation(str(doc_id), int(start), int(end), ids, type)


def map_ids(ids: Iterable[str], id_map: Mapping[str, str | Sequence[str]] | Callable[[str], Iterable[str]] | None
            ) -> frozenset[str]:
    """*ids* with each replaced by its mapping (a string, several strings, or a function's result)."""
    if id_map is None:
        return frozenset(ids)
    out: set[str] = set()
    for concept_id in ids:
        if callable(id_map):
            out.update(id_map(concept_id))
            continue
        mapped = id_map.get(concept_id, concept_id)
        out.update((mapped,) if isinstance(mapped, str) else mapped)
    return frozenset(out)


def _prepare(items: Iterable[Annotation], id_map: Any, concepts: bool, drop_empty: bool
             ) -> dict[str, list[tuple[int, int, frozenset[str], str | None]]]:
    by_doc: dict[str, set[tuple[int, int, frozenset[str], str | None]]] = defaultdict(set)
    for item in items:
        if item.end < item.start:
            raise LinkerError(f"mention {item} ends before it starts; fix its offsets")
        ids = map_ids(item.concept_ids, id_map) if concepts else frozenset()
        if concepts and drop_empty and not ids:
            continue
        by_doc[item.doc_id].add((item.start, item.end, ids, item.type))
    return {doc: sorted(rows, key=lambda r: (r[0], r[1], sorted(r[2]), r[3] or "")) for doc, rows in by_doc.items()}


def _spans_match(a: tuple[int, int], b: tuple[int, int], match: str) -> bool:
    if match == "strict":
        return a == b
    if a[0] == a[1] or b[0] == b[1]:  # empty spans overlap nothing but an identical empty span
        return a == b
    return a[0] < b[1] and b[0] < a[1]


def _count(pred: dict[str, list[Any]], gold: dict[str, list[Any]], match: str, concepts: bool
           ) -> tuple[list[bool], list[bool], list[Any], list[Any]]:
    pred_hit: list[bool] = []
    gold_hit: list[bool] = []
    pred_rows: list[Any] = []
    gold_rows: list[Any] = []
    for doc_id in sorted(set(pred) | set(gold)):
        p_rows, g_rows = pred.get(doc_id, []), gold.get(doc_id, [])
        p_flags, g_flags = [False] * len(p_rows), [False] * len(g_rows)
        for i, (ps, pe, pids, _) in enumerate(p_rows):
            for j, (gs, ge, gids, _) in enumerate(g_rows):
                if _spans_match((ps, pe), (gs, ge), match) and (not concepts or pids & gids):
                    p_flags[i] = g_flags[j] = True
        pred_hit += p_flags
        gold_hit += g_flags
        pred_rows += p_rows
        gold_rows += g_rows
    return pred_hit, gold_hit, pred_rows, gold_rows


def score(pred: Iterable[Annotation], gold: Iterable[Annotation], *, match: MatchMode = "strict",
          concepts: bool = True, id_map: Mapping[str, str | Sequence[str]] | Callable[[str], Iterable[str]] | None = None
          ) -> PRF:
    """Micro-averaged precision, recall and F1 of *pred* against *gold* (see the module notes)."""
    results = score_by_type(pred, gold, match=match, concepts=concepts, id_map=id_map)
    overall = results["all"]
    assert overall is not None
    return overall


def score_by_type(pred: Iterable[Annotation], gold: Iterable[Annotation], *, match: MatchMode = "strict",
                  concepts: bool = True,
                  id_map: Mapping[str, str | Sequence[str]] | Callable[[str], Iterable[str]] | None = None
                  ) -> dict[str, PRF | None]:
    """``{"all": PRF, type: PRF, ...}``; per type, precision counts only predictions of that type
    (all zero when predictions carry no type: read only the recall then)."""
    if match not in MATCH_MODES:
        raise LinkerError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    p = _prepare(pred, id_map, concepts, drop_empty=True)
    g = _prepare(gold, id_map, concepts, drop_empty=False)
    pred_hit, gold_hit, pred_rows, gold_rows = _count(p, g, match, concepts)
    out: dict[str, PRF | None] = {"all": PRF(sum(pred_hit), len(pred_hit), sum(gold_hit), len(gold_hit))}
    types = sorted({row[3] for row in gold_rows if row[3] is not None} | {row[3] for row in pred_rows if row[3]})
    for kind in types:
        tp_g = sum(hit for hit, row in zip(gold_hit, gold_rows) if row[3] == kind)
        n_g = sum(1 for row in gold_rows if row[3] == kind)
        tp_p = sum(hit for hit, row in zip(pred_hit, pred_rows) if row[3] == kind)
        n_p = sum(1 for row in pred_rows if row[3] == kind)
        out[kind] = PRF(tp_p, n_p, tp_g, n_g)
    return out


def _concept_classes(ids: Sequence[str], id_map: Any) -> list[int]:
    """For each of *ids*, the number of its class: ids whose mapped sets meet are one concept."""
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, concept_id in enumerate(ids):
        for mapped in map_ids((concept_id,), id_map) | {concept_id}:
            if mapped in owner:
                parent[root(i)] = root(owner[mapped])
            else:
                owner[mapped] = i
    return [root(i) for i in range(len(ids))]


def score_documents(pred: Iterable[Annotation], gold: Iterable[Annotation], *,
                    id_map: Mapping[str, str | Sequence[str]] | Callable[[str], Iterable[str]] | None = None
                    ) -> PRF:
    """Document-level concept P/R/F1 (see the module notes): ``tp_pred == tp_gold`` here."""
    pred_ids: dict[str, set[str]] = defaultdict(set)
    gold_ids: dict[str, set[str]] = defaultdict(set)
    for item in pred:
        pred_ids[item.doc_id].update(item.concept_ids)
    for item in gold:
        gold_ids[item.doc_id].update(item.concept_ids)
    tp = n_pred = n_gold = 0
    for doc_id in set(pred_ids) | set(gold_ids):
        p, g = sorted(pred_ids.get(doc_id, ())), sorted(gold_ids.get(doc_id, ()))
        classes = _concept_classes(p + g, id_map)
        p_classes, g_classes = set(classes[:len(p)]), set(classes[len(p):])
        tp += len(p_classes & g_classes)
        n_pred += len(p_classes)
        n_gold += len(g_classes)
    return PRF(tp, n_pred, tp, n_gold)


def evaluate(pred: Iterable[Annotation], gold: Iterable[Annotation], *,
             id_map: Mapping[str, str | Sequence[str]] | Callable[[str], Iterable[str]] | None = None,
             by_type: bool = False) -> dict[str, Any]:
    """Strict and overlap scores as plain dicts: ``{"strict": {...}, "overlap": {...}, "document": {...}}``
    (with ``by_type``, strict and overlap each hold ``{"all": {...}, type: {...}}``)."""
    pred, gold = list(pred), list(gold)
    result: dict[str, Any] = {"document": score_documents(pred, gold, id_map=id_map).to_dict()}
    for mode in MATCH_MODES:
        scores = score_by_type(pred, gold, match=mode, id_map=id_map)  # type: ignore[arg-type]
        if by_type:
            result[mode] = {kind: prf.to_dict() for kind, prf in scores.items() if prf is not None}
        else:
            overall = scores["all"]
            assert overall is not None
            result[mode] = overall.to_dict()
    return result
