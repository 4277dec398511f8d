"""Biomedical concept normalisation and entity linking with BioLORD-style embeddings."""

from __future__ import annotations

from linker.errors import LinkerError
from linker.types import AltId, Candidate, Concept, Term

__all__ = ["AltId", "Candidate", "Concept", "LinkerError", "Term"]
__version__ = "0.1.0"
