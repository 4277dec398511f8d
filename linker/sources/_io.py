"""Line reading shared by the readers: plain or gzip, UTF-8, errors that name the line."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from linker.errors import LinkerError, SourceFormatError

#: Longest line an ontology reader accepts: a longer one is a damaged file, not a name.
MAX_LINE_CHARS = 1_000_000


def _open_binary(path: Path) -> IO[bytes]:
    if not path.exists():
        raise LinkerError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise LinkerError(f"{path}: is a folder, expected a file")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the line ending; a bad byte or gzip stream names its line."""
    lineno = 0
    with _open_binary(path) as handle:
        try:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a byte-order mark is not data
                except UnicodeDecodeError as err:
                    raise SourceFormatError(
                        path, lineno, f"not UTF-8 ({err.reason} at byte {err.start}); re-encode the file as UTF-8"
                    ) from None
                if len(line) > MAX_LINE_CHARS:
                    raise SourceFormatError(path, lineno, f"a line of {len(line):,} characters; an ontology line may "
                                                          f"have at most {MAX_LINE_CHARS:,} (is the file damaged?)")
                yield lineno, line.rstrip("\r\n")
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise SourceFormatError(path, lineno + 1, f"cannot read ({err}); is the file complete?") from None


def json_line(line: str) -> Any:
    """The JSON value on one line of a JSON Lines file; invalid JSON and nesting too deep to read are a
    ``ValueError`` whose message says which (the readers add the place and what they expected)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def json_object(path: Path, lineno: int, line: str, expected: str,
                error: type[SourceFormatError] = SourceFormatError) -> dict[str, Any]:
    """The JSON object on one line (:func:`json_line`); a line that is not one is an *error* naming the line and
    what was *expected* there."""
    try:
        value = json_line(line)
    except ValueError as err:
        raise error(path, lineno, f"{err}; expected {expected}") from None
    if not isinstance(value, dict):
        raise error(path, lineno, f"a JSON {type(value).__name__}, expected {expected}")
    return value


def file_sha256(path: Path) -> str:
    """Checksum of the file's bytes as stored (compressed files are not unpacked)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
