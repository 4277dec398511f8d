"""Errors a user can act on. Every message says what, which value, and how to fix it."""

from __future__ import annotations


class LinkerError(Exception):
    """Base class of the errors the CLI turns into a message and exit status 2."""


class SourceFormatError(LinkerError):
    """An ontology or input file does not have the expected shape."""

    def __init__(self, path: object, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class EvaluationInputError(SourceFormatError):
    """A mentions, docs or pairs file does not have the expected shape."""


class IndexMismatchError(LinkerError):
    """An index folder does not fit the encoder or its own files."""


class IndexNotFoundError(LinkerError):
    """No index folder at the given path."""


class ModelNotFoundError(LinkerError):
    """A model name or path could not be loaded."""


class ConceptNotFoundError(LinkerError):
    """A concept identifier is not in the term dictionary."""
