"""``ConceptIndex``: a built index folder opened for search — FAISS vectors, term dictionary and meta."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from linker import faiss_util
from linker.embedding_cache import EmbeddingCache
from linker.encoder import Encoder, load_encoder
from linker.errors import ConceptNotFoundError, IndexMismatchError, LinkerError
from linker.meta import FAISS_FILE, META_FILE, TERMS_FILE, read_meta
from linker.normalize import NORMALIZER, normalize
from linker.termdb import TermDB
from linker.types import Candidate, ConceptCard

log = logging.getLogger(__name__)

#: Names fetched from FAISS per concept asked for, so that concepts with many close names still fill k.
NAMES_PER_CONCEPT = 4
MIN_NAMES = 32


class ConceptIndex:
    """Search concepts by text. Open with :meth:`load`; the encoder is loaded on the first search."""

    def __init__(self, path: Path, meta: dict[str, Any], termdb: TermDB, index: faiss.Index,
                 encoder: Encoder | None = None, model: str | None = None, device: str | None = None) -> None:
        self.path = path
        self.meta = meta
        self.termdb = termdb
        self.faiss = index
        self._encoder = encoder
        self._model = model
        self._device = device
        self._lock = threading.Lock()
        self.embedding_cache = EmbeddingCache()
        concept_of_term = termdb.term_concepts()
        self._concept_ids = list(dict.fromkeys(concept_of_term))
        ordinal = {cid: i for i, cid in enumerate(self._concept_ids)}
        self._term_concept = np.fromiter((ordinal[c] for c in concept_of_term), dtype=np.int32,
                                         count=len(concept_of_term))
        if encoder is not None:
            self._check_encoder(encoder)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder: Encoder | None = None, model: str | None = None,
             device: str | None = None, gpu: bool = True) -> ConceptIndex:
        """Open an index folder, checking its files agree with each other (and with *encoder* if given)."""
        folder = Path(path)
        meta = read_meta(folder)
        for name in (TERMS_FILE, FAISS_FILE):
            if not (folder / name).exists():
                raise IndexMismatchError(f"{folder}: {META_FILE} is there but {name} is missing; rebuild the index")
        if meta.get("normalizer") != NORMALIZER:
            raise IndexMismatchError(f"{folder}: built with normaliser {meta.get('normalizer')}, this linker uses "
                                     f"{NORMALIZER}; rebuild the index")
        termdb = TermDB(folder / TERMS_FILE)
        index = faiss.read_index(str(folder / FAISS_FILE))
        n_terms = termdb.count("terms")
        if index.ntotal != n_terms:
            raise IndexMismatchError(f"{folder}: {FAISS_FILE} holds {index.ntotal} vectors but {TERMS_FILE} "
                                     f"{n_terms} terms; rebuild the index")
        dimension = meta["encoder"]["dimension"]
        if index.d != dimension:
            raise IndexMismatchError(f"{folder}: {FAISS_FILE} has dimension {index.d}, {META_FILE} says {dimension}")
        faiss_util.apply_params(index, meta["faiss"].get("search_params", {}))
        if gpu:
            index = faiss_util.to_gpu(index)
        return cls(folder, meta, termdb, index, encoder, model, device)

    # -- encoder ---------------------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    recorded = self.meta["encoder"]
                    shipped = recorded.get("model_dir")  # the model copied inside the index folder
                    model = self._model or (str(self.path / shipped) if shipped else recorded["model"])
                    encoder = load_encoder(model, device=self._device,
                                           max_length=recorded.get("max_length"),
                                           precision=recorded.get("precision", "float32"))
                    self._check_encoder(encoder)
                    self._encoder = encoder
        return self._encoder

    def _check_encoder(self, encoder: Encoder) -> None:
        recorded = self.meta["encoder"]
        if encoder.dimension != recorded["dimension"]:
            raise IndexMismatchError(
                f"{self.path}: index vectors have dimension {recorded['dimension']} (model {recorded['model']}), "
                f"but model {encoder.name} gives {encoder.dimension}; use the index's model or rebuild the index"
            )
        if encoder.name != recorded["model"] and not (recorded.get("model_dir") and self._model is None):
            log.warning("index %s was built with %s; searching it with %s", self.path, recorded["model"], encoder.name)

    # -- search ----------------------------------------------------------------------------------------------
    def search(self, texts: Sequence[str], k: int = 10) -> list[list[Candidate]]:
        """For each text, up to *k* concepts ranked by their best-matching name.

        Concepts with a name equal to the text after :func:`~linker.normalize.normalize` come first
        with score 1.0 and ``exact=True``; the rest are ranked by cosine similarity.
        """
        if k < 1:
            raise LinkerError(f"k must be at least 1, got {k}")
        texts = list(texts)
        if not texts:
            return []
        vectors = self.embedding_cache.embed(texts, self.encoder.encode)
        return self.search_vectors(vectors, texts, k)

    def search_vectors(self, vectors: np.ndarray, texts: Sequence[str], k: int = 10) -> list[list[Candidate]]:
        """As :meth:`search`, for already embedded *texts*."""
        n_names = min(self.faiss.ntotal, max(MIN_NAMES, k * NAMES_PER_CONCEPT))
        scores, ids = self.faiss.search(np.ascontiguousarray(vectors, dtype=np.float32), n_names)
        keys = [normalize(text) for text in texts]
        exact = self.termdb.exact(keys)
        ranked: list[list[tuple[str, int | str, float, bool]]] = []
        wanted_terms: set[int] = set()
        for row, key in enumerate(keys):
            seen: dict[str, tuple[str, int | str, float, bool]] = {}
            matches = sorted(exact.get(key, ()), key=lambda m: (not m[2], m[0]))
            for concept_id, matched, _ in matches:
                seen.setdefault(concept_id, (concept_id, matched, 1.0, True))
            for score, term_id in zip(scores[row], ids[row]):
                if len(seen) >= k:
                    break
                if term_id < 0:
                    continue
                concept_id = self._concept_ids[self._term_concept[term_id]]
                if concept_id not in seen:
                    seen[concept_id] = (concept_id, int(term_id), float(score), False)
                    wanted_terms.add(int(term_id))
            ranked.append(list(seen.values())[:k])
        term_text = self.termdb.terms(sorted(wanted_terms))
        names = self.termdb.names(c for row in ranked for c, *_ in row)
        return [[Candidate(cid, names.get(cid, cid), term_text[m][1] if isinstance(m, int) else m, score, is_exact)
                 for cid, m, score, is_exact in row] for row in ranked]

    def lookup(self, text: str, k: int = 10) -> list[Candidate]:
        return self.search([text], k)[0]

    # -- concepts --------------------------------------------------------------------------------------------
    def resolve(self, concept_id: str) -> list[str]:
        """Current ids for a live, alternative or obsolete id (empty when unknown)."""
        return self.termdb.resolve(concept_id)

    def card(self, concept_id: str) -> ConceptCard:
        """The concept card of *concept_id*, following alt/obsolete ids to the current concept."""
        current = self.resolve(concept_id)
        if not current:
            raise ConceptNotFoundError(f"{concept_id} is not a concept, alternative or obsolete id of {self.path}")
        card = self.termdb.card(current[0])
        assert card is not None
        return card

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "ontology": self.meta["ontology"], "encoder": self.meta["encoder"],
                "faiss": self.meta["faiss"], "counts": self.meta["counts"], "built_at": self.meta.get("built_at"),
                "versions": self.meta.get("versions")}

    @property
    def dimension(self) -> int:
        return int(self.meta["encoder"]["dimension"])
