"""Fingerprints of an index folder's files, recorded in meta.json at build time and checked when it is read.

Each file gets its size, a SHA-256 of the whole file (for ``linker verify``) and a *sampled* SHA-256: of the
size and of 64 blocks of 64 KiB spread evenly over the file (at most 4 MiB read, whatever the file's size).
Loading an index checks the sizes and the sampled hashes, which catches a truncated, swapped or partly
overwritten file in milliseconds; ``linker verify`` reads everything.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from linker.errors import IndexMismatchError

log = logging.getLogger(__name__)

BLOCK = 1 << 16
BLOCKS = 64


def sampled_sha256(path: Path) -> str:
    """SHA-256 of *path*'s size and of :data:`BLOCKS` evenly spaced blocks (the whole file when it is small)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        if size <= BLOCK * BLOCKS:
            digest.update(fh.read())
        else:
            step = (size - BLOCK) / (BLOCKS - 1)
            for i in range(BLOCKS):
                fh.seek(int(i * step))
                digest.update(fh.read(BLOCK))
    return digest.hexdigest()


def full_sha256(path: Path, progress: Any = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def fingerprint_files(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """The fingerprints of *names* (paths relative to *folder*) that exist, for meta.json."""
    out = {}
    for name in names:
        path = folder / name
        if path.is_file():
            out[name] = {"bytes": path.stat().st_size, "sampled_sha256": sampled_sha256(path),
                         "sha256": full_sha256(path)}
    return out


def shipped_files(folder: Path) -> list[str]:
    """Every file of the index folder that meta.json fingerprints: the dictionary, the vectors, a shipped encoder."""
    from linker.meta import CONCEPT_IDS_FILE, FAISS_FILE, TERM_CONCEPTS_FILE, TERMS_FILE
    from linker.rescoring import VECTORS_FILE

    names = [TERMS_FILE, FAISS_FILE, TERM_CONCEPTS_FILE, CONCEPT_IDS_FILE, VECTORS_FILE]
    for sub in ("onnx",):
        if (folder / sub).is_dir():
            names += sorted(str(p.relative_to(folder)) for p in (folder / sub).rglob("*") if p.is_file())
    return names


def check(folder: Path, meta: dict[str, Any], name: str) -> None:
    """Refuse *name* when it no longer matches its recorded size and sampled hash (cheap: at most 4 MiB read)."""
    recorded = (meta.get("files") or {}).get(name)
    if recorded is None:  # built before fingerprints were recorded
        return
    path = folder / name
    size = path.stat().st_size
    if size != recorded["bytes"]:
        raise IndexMismatchError(f"{folder}: damaged {name}: {size} bytes where the build wrote {recorded['bytes']}; "
                                 "rebuild the index (linker build … --force)")
    if sampled_sha256(path) != recorded["sampled_sha256"]:
        raise IndexMismatchError(f"{folder}: damaged {name}: its bytes are not those the build wrote (swapped from "
                                 "another index, or overwritten); rebuild the index (linker build … --force)")


def verify(folder: Path, progress: bool = True) -> list[tuple[str, str]]:
    """Every recorded file of *folder* against its full SHA-256: ``(name, "ok" | what is wrong)``, in order."""
    from tqdm import tqdm

    from linker.meta import read_meta

    meta = read_meta(folder)
    recorded = meta.get("files") or {}
    if not recorded:
        return [("meta.json", "records no fingerprints (built before they were recorded); rebuild to record them")]
    total = sum(entry["bytes"] for entry in recorded.values())
    results = []
    with tqdm(total=total, unit="B", unit_scale=True, desc="verifying", disable=not progress) as bar:
        for name, entry in recorded.items():
            path = folder / name
            if not path.is_file():
                results.append((name, "missing"))
            elif path.stat().st_size != entry["bytes"]:
                results.append((name, f"{path.stat().st_size} bytes where the build wrote {entry['bytes']}"))
            elif full_sha256(path, bar) != entry["sha256"]:
                results.append((name, "content differs from what the build wrote"))
            else:
                results.append((name, "ok"))
    return results
