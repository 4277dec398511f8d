"""The spaCy component ``concept_linker``: find mentions, link them in batches, write them onto the Doc.

Spans linked get ``ent.kb_id_`` (the best concept when its score reaches ``threshold``), ``span._.kb_ents``
(ranked ``(concept_id, score)``, the shape of scispaCy's linker), ``span._.concepts``
(:class:`~linker.types.Candidate` values), ``span._.mention_source`` and the assertion flags
``span._.negated``, ``span._.family``, ``span._.hypothetical`` and ``span._.historical``.

All per-span data lives in one plain-data extension (``span._.linker_data``, stored in ``doc.user_data``)
so that Docs survive ``doc.to_bytes()`` and ``nlp.pipe(..., n_process=2)``; the public attributes are
getters over it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

import linker.forking  # noqa: F401 - forked workers run OpenMP on one thread
from linker.component_folder import saved_index, saved_memory, write_folder
from linker.extensions import doc_text, register_extensions
from linker.mentions import ABBREVIATION, DENSE, DICTIONARY, UPSTREAM, DictionaryMatcher, Proposal
from linker.linking.composites import conjunct_links
from linker.linking.context import resolve_ties
from linker.linking.discourse import propagate
from linker.linking.entities import write_entities
from linker.linking.filters import ConceptFilter
from linker.linking.memory import MentionMemory, own_text_first, remembered
from linker.mentions.collect import collect
from linker.mentions.arbitration import arbitrate, given_way
from linker.settings import check_values
from linker.types import Candidate

log = logging.getLogger(__name__)

#: HPO branches that are not findings (mode of inheritance, clinical modifiers such as "Mild", frequency,
#: past medical history, blood group, biospecimen features): excluded by default, harmless elsewhere.
NON_PHENOTYPE_ROOTS = ("HP:0000005", "HP:0012823", "HP:0040279", "HP:0032443", "HP:0032223", "HP:0020228")


register_extensions()


# -- the component -------------------------------------------------------------------------------------------
#: The settings of ``concept_linker`` and their defaults (docs/pipeline.md).
DEFAULT_CONFIG: dict[str, Any] = {
    "index": None, "k": 5, "threshold": 0.75, "sources": [UPSTREAM, DICTIONARY], "dense_threshold": 0.95,
    "max_words": 5, "batch_size": 64, "abbreviations": True, "assertion": True, "types": [], "roots": [],
    "overwrite": False, "unlinked": "keep", "label": "CONCEPT", "min_chars": 4, "dense_limit": 20000,
    "copy_index": False, "exclude_roots": list(NON_PHENOTYPE_ROOTS), "acronyms": True, "longer_wins": True,
    "composites": True, "composite_margin": 0.0, "context_ties": True, "skip_exact": True, "memory": None,
    "discourse": False, "detector_confidence": 0.0,
}


@Language.factory("concept_linker", default_config=DEFAULT_CONFIG)
def make_concept_linker(nlp: Language, name: str, *, index: str | None, k: int, threshold: float,
                        sources: list[str], dense_threshold: float, max_words: int, batch_size: int,
                        abbreviations: bool, assertion: bool, types: list[str], roots: list[str], overwrite: bool,
                        unlinked: str, label: str, min_chars: int, dense_limit: int, copy_index: bool,
                        exclude_roots: list[str], acronyms: bool, longer_wins: bool, composites: bool,
                        composite_margin: float, context_ties: bool, skip_exact: bool, memory: str | None,
                        discourse: bool, detector_confidence: float) -> ConceptLinker:
    return ConceptLinker(nlp, name, index=index, k=k, threshold=threshold, sources=sources,
                         dense_threshold=dense_threshold, max_words=max_words, batch_size=batch_size,
                         abbreviations=abbreviations, assertion=assertion, types=types, roots=roots,
                         overwrite=overwrite, unlinked=unlinked, label=label, min_chars=min_chars,
                         dense_limit=dense_limit, copy_index=copy_index, exclude_roots=exclude_roots,
                         acronyms=acronyms, longer_wins=longer_wins, composites=composites,
                         composite_margin=composite_margin, context_ties=context_ties, skip_exact=skip_exact,
                         memory=memory, discourse=discourse, detector_confidence=detector_confidence)


class ConceptLinker:
    """Links mentions to the concepts of one index. Cheap to construct: the index (shared per process)
    and the dictionary matcher are opened on first use, in :meth:`initialize` or :meth:`from_disk`."""

    def __init__(self, nlp: Language, name: str = "concept_linker", *, index: str | None = None, k: int = 5,
                 threshold: float = 0.75, sources: Iterable[str] = (UPSTREAM, DICTIONARY),
                 dense_threshold: float = 0.95, max_words: int = 5, batch_size: int = 64, abbreviations: bool = True,
                 assertion: bool = True, types: Iterable[str] = (), roots: Iterable[str] = (),
                 overwrite: bool = False, unlinked: str = "keep", label: str = "CONCEPT", min_chars: int = 4,
                 dense_limit: int = 20000, copy_index: bool = False,
                 exclude_roots: Iterable[str] = NON_PHENOTYPE_ROOTS, acronyms: bool = True,
                 longer_wins: bool = True, composites: bool = True, composite_margin: float = 0.0,
                 context_ties: bool = True, skip_exact: bool = True, memory: str | None = None,
                 discourse: bool = False, detector_confidence: float = 0.0) -> None:
        check_values({key: value for key, value in locals().items() if key in DEFAULT_CONFIG}, DEFAULT_CONFIG)
        self.name = name
        self.sources = list(dict.fromkeys(sources))
        self.index_path = index
        self.k, self.threshold, self.dense_threshold = k, threshold, dense_threshold
        self.max_words, self.batch_size = max_words, batch_size
        self.min_chars, self.dense_limit = min_chars, dense_limit
        self.abbreviations, self.assertion, self.acronyms = abbreviations, assertion, acronyms
        self.longer_wins, self.composites, self.composite_margin = longer_wins, composites, composite_margin
        self.context_ties, self.skip_exact, self.discourse = context_ties, skip_exact, discourse
        self.detector_confidence = detector_confidence  # under it, a detected span links by exact name or memory
        self.types, self.roots, self.exclude_roots = frozenset(types), frozenset(roots), frozenset(exclude_roots)
        self.overwrite, self.unlinked, self.label, self.copy_index = overwrite, unlinked, label, copy_index
        self._index: Any = None
        self._matcher: DictionaryMatcher | None = None
        self._filter: ConceptFilter | None = None
        self.memory_path = memory
        self._memory: MentionMemory | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the opened index and caches (spawned worker processes open their own)."""
        state = dict(self.__dict__)
        state.update(_index=None, _matcher=None, _filter=None)
        if self.memory_path:  # reread from its file; a memory given as an object travels with the component
            state["_memory"] = None
        return state

    # -- resources ---------------------------------------------------------------------------------------
    @property
    def index(self) -> Any:
        """The :class:`~linker.index.ConceptIndex` (opened on first use, shared per process and path)."""
        if self._index is None:
            from linker.defaults import open_index

            self._index = open_index(self.index_path)
        return self._index

    def set_index(self, index: Any) -> None:
        """Use an already opened :class:`~linker.index.ConceptIndex` (e.g. with a custom encoder); None opens
        ``index_path`` again on first use."""
        self._index = index
        self._matcher = None
        self._filter = None

    @property
    def matcher(self) -> DictionaryMatcher:
        if self._matcher is None:
            self._matcher = DictionaryMatcher.for_index(self.index, min_chars=self.min_chars, acronyms=self.acronyms)
            log.info("dictionary matcher: %d names of %s", len(self._matcher), self.index.path)
        return self._matcher

    def initialize(self, get_examples: Callable[[], Iterable[Any]] | None = None, *, nlp: Language | None = None
                   ) -> None:
        """Open the index (and the dictionary when that source is on) now rather than on the first Doc."""
        if DICTIONARY in self.sources or DENSE in self.sources:
            _ = self.matcher
        else:
            _ = self.index

    # -- processing ----------------------------------------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        self._process([doc])
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int | None = None) -> Iterator[Doc]:
        """Docs in batches of ``batch_size``: each batch's distinct strings are embedded once and searched once."""
        for batch in minibatch(stream, size=batch_size or self.batch_size):
            self._process(batch)
            yield from batch

    def _proposals(self, doc: Doc, text: str) -> list[Proposal]:
        return collect(doc, text, self.sources, lambda: self.matcher, abbreviations=self.abbreviations,
                       max_words=self.max_words, dense_limit=self.dense_limit, longer_wins=self.longer_wins)

    def _search(self, queries: list[str]) -> dict[str, list[Candidate]]:
        """Candidates of each query, in one batch (the index answers recent queries from its cache)."""
        results = self.concept_filter.search(self.index, queries, self.k, skip_exact=self.skip_exact)
        return dict(zip(queries, results))

    @property
    def memory(self) -> MentionMemory | None:
        """The mention memory of a trained pipeline (:mod:`linker.linking.memory`), None without one."""
        if self._memory is None and self.memory_path:
            self._memory = MentionMemory.load(self.memory_path)
            log.info("mention memory: %d texts from %s", len(self._memory), self.memory_path)
        return self._memory

    def set_memory(self, memory: MentionMemory | str | os.PathLike[str] | None) -> None:
        """Link by *memory* (a memory, or its file; None: by search alone); :meth:`to_disk` saves it into the
        pipeline folder."""
        if isinstance(memory, MentionMemory):
            self._memory, self.memory_path = memory, None
        else:
            self._memory, self.memory_path = None, (str(memory) if memory is not None else None)

    @property
    def concept_filter(self) -> ConceptFilter:
        if self._filter is None:
            self._filter = ConceptFilter(self.index.termdb, types=self.types, roots=self.roots,
                                         exclude_roots=self.exclude_roots)
        return self._filter

    def _process(self, docs: list[Doc]) -> None:
        texts = [doc_text(doc) for doc in docs]  # spaCy joins the tokens on every read of doc.text
        per_doc = [self._proposals(doc, text) if text.strip() else [] for doc, text in zip(docs, texts)]
        if self.memory is not None:
            per_doc = [own_text_first(props, text, self.memory, self.index.termdb.names)
                       for props, text in zip(per_doc, texts)]
        queries = list(dict.fromkeys(p.query for props in per_doc for p in props
                                     if p.source != ABBREVIATION and p.query.strip()))
        found = self._search(queries)
        known, parts = remembered(self.memory, queries, found, self.index.termdb.names,
                                  self.concept_filter.allowed) if self.memory is not None else ({}, {})
        found.update(known)
        chosen = [self._choose(props, found) for props in per_doc]
        if self.context_ties:
            chosen = resolve_ties(self.index, texts, chosen, keep=known)
        conjuncts = conjunct_links([p.query for linked in chosen for p, _ in linked if p.query not in known],
                                   found, self._search, margin=self.composite_margin) if self.composites else {}
        conjuncts.update(parts)
        for doc, text, props, linked in zip(docs, texts, per_doc, chosen):
            replaced = given_way(props, [p for p, _ in linked])
            if self.discourse:
                linked, propagated = propagate(text, linked, conjuncts, threshold=self.threshold,
                                               min_chars=self.min_chars, min_confidence=self.detector_confidence)
                replaced |= propagated
            write_entities(doc, text, linked, conjuncts, threshold=self.threshold,
                           keep_unlinked=self.unlinked == "keep", overwrite=self.overwrite, label=self.label,
                           assertion=self.assertion, replaced=replaced, min_confidence=self.detector_confidence)

    def _choose(self, props: list[Proposal], found: dict[str, list[Candidate]]
                ) -> list[tuple[Proposal, list[Candidate]]]:
        """Non-overlapping mentions (:func:`linker.mentions.arbitration.arbitrate`) with their candidates."""
        def best(query: str) -> float:
            candidates = found.get(query, [])
            return candidates[0].score if candidates else 0.0

        chosen = arbitrate(props, best, threshold=self.threshold, dense_threshold=self.dense_threshold,
                           longer_wins=self.longer_wins, min_confidence=self.detector_confidence)
        return [(p, found.get(p.query, [])) for p in chosen]

    # -- serialisation -----------------------------------------------------------------------------------
    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """The folder of :mod:`linker.component_folder`: index referenced (the default) or copied, memory."""
        write_folder(Path(path), self.index, copy_index=self.copy_index, memory=self.memory,
                     reference=self.index_path is not None or self._index is not None)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> ConceptLinker:
        folder = Path(path)
        settings, self.index_path = saved_index(folder)
        self._index, self._matcher, self._filter, self._memory = None, None, None, None
        self.memory_path = saved_memory(folder, settings) or self.memory_path
        recorded = settings.get("built_at")
        if recorded and self.index.meta.get("built_at") != recorded:
            log.warning("index %s was rebuilt (%s) since the pipeline %s was saved (%s); links may differ",
                        self.index.path, self.index.meta.get("built_at"), folder, recorded)
        return self
