"""Training pairs from any ontology source: (name, synonym), (name, definition), (name, graph description), (mention, name).

Concepts, not pairs, are split: a deterministic, seeded hash of the concept id puts each concept in
``train``, ``val`` or ``test``. Held-out (val/test) concepts never appear in a training pair: not as
anchor or positive, not as a parent named in another concept's description, and no training pair may
contain a text equal (after :func:`~linker.normalize.normalize`) to a held-out concept's name or synonym,
so a synonym shared by a held-out concept and a training concept (or by HPO and MEDIC) cannot leak.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from linker.errors import LinkerError, SourceFormatError
from linker.normalize import normalize
from linker.sources import Source
from linker.types import AltId, Concept, ConceptInfo, Term

log = logging.getLogger(__name__)

#: pair kinds, in the order they are generated
KINDS = ("synonym", "definition", "description", "mention")
DEFAULT_SCOPES = ("EXACT",)


@dataclass(frozen=True, slots=True)
class Pair:
    """A (anchor, positive) training pair of one concept."""

    concept_id: str
    anchor: str
    positive: str
    kind: str


@dataclass
class OntologyConcept:
    """What pair building needs of a concept: names by scope, definition, parents."""

    concept_id: str
    name: str
    definition: str | None = None
    parents: tuple[str, ...] = ()
    synonyms: dict[str, list[str]] = field(default_factory=dict)  # scope -> texts
    #: the ontology file it came from: batches, mined negatives and validation distractors stay within one
    #: ontology, whose concepts are distinct by construction (HPO "Seizure" and MEDIC "Seizures" are not)
    source: str = ""

    def names(self, scopes: Iterable[str] = DEFAULT_SCOPES) -> list[str]:
        out = [self.name]
        for scope in scopes:
            out.extend(self.synonyms.get(scope, ()))
        return list(dict.fromkeys(out))


def split_of(concept_id: str, seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for *concept_id*: a seeded hash, stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{concept_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < val_fraction:
        return "val"
    if u < val_fraction + test_fraction:
        return "test"
    return "train"


def read_concepts(sources: Sequence[Source]) -> tuple[dict[str, OntologyConcept], dict[str, str]]:
    """Concepts of all *sources* (later sources do not overwrite earlier ids) and an alt-id → concept map."""
    concepts: dict[str, OntologyConcept] = {}
    alt: dict[str, str] = {}
    for source in sources:
        local: dict[str, OntologyConcept] = {}
        for record in source.records():
            if isinstance(record, Concept):
                c = local.setdefault(record.concept_id, OntologyConcept(record.concept_id, record.name))
                c.name, c.definition, c.parents = record.name, record.definition or c.definition, record.parents
            elif isinstance(record, Term):
                c = local.setdefault(record.concept_id, OntologyConcept(record.concept_id, record.text))
                if record.scope != "LABEL":
                    c.synonyms.setdefault(record.scope, []).append(record.text)
            elif isinstance(record, AltId):
                alt.setdefault(record.alt_id, record.concept_id)
            elif isinstance(record, ConceptInfo):
                c = local.setdefault(record.concept_id, OntologyConcept(record.concept_id, record.concept_id))
                if record.field == "definition" and not c.definition:
                    c.definition = record.value
                elif record.field == "parent":
                    c.parents = (*c.parents, record.value)
        for cid, c in local.items():
            c.source = str(source.path)
            concepts.setdefault(cid, c)
        log.info("%s: %d concepts", source.path, len(local))
    return concepts, alt


def describe(name: str, parent_names: Sequence[str]) -> str | None:
    """The graph verbalised: ``"X: a kind of Y and of Z"`` (None without parents)."""
    if not parent_names:
        return None
    return f"{name}: a kind of " + " and of ".join(parent_names)


def read_mentions(path: str | Path, types: Iterable[str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """``(mention text, gold ids)`` from a ``*.mentions.jsonl`` file (keys ``text``, ``ids``, optional ``type``)."""
    from linker.sources._io import iter_lines, json_object

    wanted = set(types) if types else None
    for lineno, line in iter_lines(Path(path)):  # a byte-order mark or a bad byte is handled there
        if not line.strip():
            continue
        row = json_object(Path(path), lineno, line, "a JSON object with 'text' and 'ids' (a *.mentions.jsonl file)")
        try:
            text, ids = row["text"], list(row["ids"])
        except (KeyError, TypeError) as err:
            raise SourceFormatError(path, lineno, f"expected a JSON object with 'text' and 'ids' ({err}); "
                                    "pass a *.mentions.jsonl file") from None
        if wanted is not None and row.get("type") not in wanted:
            continue
        yield text, ids


@dataclass
class PairSet:
    """Training pairs plus the held-out concepts, as built by :func:`build_pairs`."""

    pairs: list[Pair]
    concepts: dict[str, OntologyConcept]
    split: dict[str, str]  # concept_id -> train | val | test
    counts: dict[str, int]
    #: corpus mentions held out for validation (no mention pair holds their text): (text, gold concept id)
    val_mentions: list[tuple[str, str]] = field(default_factory=list)
    #: normalised texts no training pair may hold: every name of the held-out concepts
    banned: frozenset[str] = frozenset()

    def held_out(self, part: str) -> list[str]:
        return [cid for cid, s in self.split.items() if s == part]


def build_pairs(
    sources: Sequence[Source],
    *,
    extra_sources: Sequence[Source] = (),
    corpora: Sequence[str | Path] = (),
    mention_types: Iterable[str] | None = None,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    seed: int = 0,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    max_parents: int = 3,
    kinds: Iterable[str] = KINDS,
    mention_val_fraction: float = 0.1,
) -> PairSet:
    """De-duplicated training pairs of the train-split concepts of *sources* (and mentions of *corpora*).

    *extra_sources* add knowledge only: all their concepts are train concepts (none is held out), though
    pairs holding a text of a held-out concept of *sources* are still dropped. So HPO can be adapted with
    MEDIC's disease synonyms beside it and still be tested on unseen HPO concepts.

    Per train concept: (name, synonym) for each synonym of *scopes*; (name, definition) and (first
    synonym, definition); (first synonym or name, "name: a kind of P1 and of P2") with up to *max_parents*
    train-split parents; (mention, name) for each corpus mention whose gold id (alt ids resolved) is a
    train concept. Only pairs of *kinds* are kept. Pairs whose two sides normalise alike are dropped, as are
    duplicates (ignoring order).

    Corpus mentions are split by their normalised *text* (seeded hash): *mention_val_fraction* of the texts
    that occur once in all *corpora* become ``val_mentions`` and are not trained on as mentions. Splitting
    texts rather than occurrences keeps a mention from sitting on both sides, so the validation measures
    texts the model has not seen as mentions, which is what a new document brings. Only texts seen once
    are drawn: a frequent text ("HD", "anemia") recurs in any new document of the same kind (70 of the 787
    NCBI-disease dev mentions had a text the earlier draw over all texts held out) and is worth more trained
    on. A held-out text may still be a dictionary name: dictionary pairs are kept, as the index holds that
    name anyway.
    """
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise LinkerError(f"unknown pair kind(s) {', '.join(sorted(unknown))}; use some of {', '.join(KINDS)}")
    concepts, alt = read_concepts(sources)
    split = {cid: split_of(cid, seed, val_fraction, test_fraction) for cid in concepts}
    extra_ids = set()
    if extra_sources:
        extra, extra_alt = read_concepts(extra_sources)
        extra_ids = set(extra) - set(concepts)
        for cid in extra_ids:
            concepts[cid] = extra[cid]
            split[cid] = "train"
        for key, cid in extra_alt.items():
            alt.setdefault(key, cid)
    banned = {normalize(text) for cid, c in concepts.items() if split[cid] != "train" for text in c.names(scopes)}
    # every synonym scope of held-out concepts is banned, not only the scopes trained on
    banned |= {normalize(t) for cid, c in concepts.items() if split[cid] != "train"
               for texts in c.synonyms.values() for t in texts}
    raw: list[Pair] = []
    for cid, c in concepts.items():
        if split[cid] != "train":
            continue
        names = c.names(scopes)
        synonyms = names[1:]
        raw.extend(Pair(cid, c.name, s, "synonym") for s in synonyms)
        if c.definition:
            raw.append(Pair(cid, c.name, c.definition, "definition"))
            if synonyms:
                raw.append(Pair(cid, synonyms[0], c.definition, "definition"))
        parent_names = [concepts[p].name for p in c.parents if p in concepts and split[p] == "train"][:max_parents]
        if parent_names:
            anchor = synonyms[0] if synonyms else c.name
            text = describe(c.name, parent_names) if synonyms else "a kind of " + " and of ".join(parent_names)
            raw.append(Pair(cid, anchor, text or "", "description"))
    usable: list[tuple[str, str, str]] = []  # (corpus, text, gold concept)
    for corpus in corpora:
        for text, ids in read_mentions(corpus, mention_types):
            resolved = [alt.get(i, i) for i in ids]
            if len(resolved) == 1 and resolved[0] in concepts:  # composite or unknown ids teach nothing clean
                usable.append((str(corpus), text, resolved[0]))
    frequency = Counter(normalize(text) for _, text, _ in usable)
    val_mentions: dict[tuple[str, str], str] = {}  # (normalised text, concept) -> text
    trained = Counter[str]()
    for corpus, text, cid in usable:
        key = normalize(text)
        if frequency[key] == 1 and split_of("mention:" + key, seed, mention_val_fraction, 0.0) == "val":
            val_mentions[(key, cid)] = text
        elif split[cid] == "train":
            raw.append(Pair(cid, text, concepts[cid].name, "mention"))
            trained[corpus] += 1
    for corpus in corpora:
        log.info("%s: %d mention pairs", corpus, trained[str(corpus)])
    pairs, seen = [], set()
    dropped = {"same_text": 0, "duplicate": 0, "held_out_text": 0}
    for pair in raw:
        if pair.kind not in kinds:
            continue
        a, p = normalize(pair.anchor), normalize(pair.positive)
        if a == p:
            dropped["same_text"] += 1
            continue
        if a in banned or p in banned:
            dropped["held_out_text"] += 1
            continue
        key = (a, p) if a <= p else (p, a)
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        pairs.append(pair)
    counts = {f"pairs_{kind}": sum(p.kind == kind for p in pairs) for kind in KINDS}
    counts.update(pairs=len(pairs), concepts=len(concepts), **{f"concepts_{s}": sum(v == s for v in split.values())
                                                                 for s in ("train", "val", "test")},
                  concepts_extra=len(extra_ids), **{f"dropped_{k}": v for k, v in dropped.items()},
                  mentions_val=len(val_mentions))
    log.info("pairs: %s", counts)
    return PairSet(pairs, concepts, split, counts, [(text, cid) for (_, cid), text in val_mentions.items()],
                   frozenset(banned))
