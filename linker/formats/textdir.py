"""A folder of ``.txt`` files, one document each; the id is the path below the folder without ``.txt``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from linker.errors import LinkerError
from linker.formats.base import Document, Failure, Item, Reader


def decode_text(data: bytes) -> str:
    """A plain-text document's bytes as UTF-8, a leading byte-order mark dropped (it is not part of the text)."""
    return data.decode("utf-8").removeprefix("\ufeff")


def read_text_file(path: Path) -> str:
    """One plain-text document; a file that is not UTF-8 is an error naming it."""
    try:
        return decode_text(path.read_bytes())
    except UnicodeDecodeError as err:
        raise LinkerError(f"{path}: not UTF-8 ({err.reason} at byte {err.start}); convert it with iconv") from None


class TextDirReader(Reader):
    """Walks the folder in sorted order (stable across runs); a file that is not UTF-8 fails alone."""

    format = "txt"

    def __init__(self, path: Path, suffix: str = ".txt") -> None:
        super().__init__(path)
        self.suffix = suffix

    def _files(self) -> Iterator[Path]:
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(self.suffix) and not name.startswith("."):
                    yield Path(root) / name

    def __iter__(self) -> Iterator[Item]:
        for file in self._files():
            relative = file.relative_to(self.path).as_posix()
            doc_id = relative[: -len(self.suffix)]
            try:
                text = decode_text(file.read_bytes())
            except UnicodeDecodeError as err:
                yield Failure(doc_id, relative, f"not UTF-8 ({err.reason} at byte {err.start}); convert it with iconv")
                continue
            except OSError as err:
                yield Failure(doc_id, relative, f"cannot read: {err.strerror}")
                continue
            yield Document(doc_id, text, relative)

    def estimate_total(self) -> int | None:
        return sum(1 for _ in self._files())
