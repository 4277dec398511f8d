"""Biomedical concept normalisation and entity linking with BioLORD-style embeddings.

>>> import linker
>>> linker.lookup("short stature")[0].concept_id   # doctest: +SKIP
'HP:0004322'
"""

from __future__ import annotations

from typing import Any

from linker.errors import LinkerError
from linker.types import AltId, Candidate, Concept, ConceptCard, Mention, Term

__all__ = ["AltId", "Candidate", "Concept", "ConceptCard", "ConceptIndex", "LinkerError", "Mention", "Term",
           "build_index", "get", "lookup"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Heavy parts (torch, faiss) load on first use, so ``import linker`` stays cheap."""
    if name in {"lookup", "get"}:
        from linker import api

        return getattr(api, name)
    if name == "ConceptIndex":
        from linker.index import ConceptIndex

        return ConceptIndex
    if name == "build_index":
        from linker.build import build_index

        return build_index
    raise AttributeError(f"module 'linker' has no attribute {name!r}")
