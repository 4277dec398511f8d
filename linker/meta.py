"""``meta.json``: what an index folder holds and how it was made; checked on load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from linker.errors import IndexMismatchError, IndexNotFoundError

#: 2: the term -> concept arrays (term_concepts.npy, concept_ids.npy) are files of the index, memory-mapped at load
FORMAT_VERSION = 2
META_FILE = "meta.json"
TERMS_FILE = "terms.sqlite"
FAISS_FILE = "faiss.index"
TERM_CONCEPTS_FILE = "term_concepts.npy"  # int32 per term (FAISS row): the ordinal of its concept
CONCEPT_IDS_FILE = "concept_ids.npy"  # fixed-width UTF-8 bytes per concept ordinal


def write_text_atomic(path: Path, text: str) -> None:
    """*text* in *path*, written beside it and moved into place (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    """*data* as JSON in *path*, atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n")


def read_meta(folder: Path) -> dict[str, Any]:
    meta_path = folder / META_FILE
    if not meta_path.exists():
        hint = " (an unfinished build: run the same build command again to resume)" if (folder / ".build").exists() else ""
        raise IndexNotFoundError(f"{folder}: no {META_FILE}, so no finished index here{hint}; build one with 'linker build'")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise IndexMismatchError(f"{meta_path}: not valid JSON ({err}); rebuild the index") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        ontology = meta.get("ontology") or {}
        source = ontology.get("path") or "SOURCE"
        raise IndexMismatchError(
            f"{meta_path}: an index of format {version}; this linker reads format {FORMAT_VERSION}. Rebuild it: "
            f"linker build {source} {folder} --force (the default index: linker build --force)")
    return meta


def is_current(folder: Path) -> bool:
    """Whether *folder* holds a finished index of this linker's format."""
    try:
        return json.loads((folder / META_FILE).read_text()).get("format_version") == FORMAT_VERSION
    except (OSError, json.JSONDecodeError):
        return False


def move_entries(staging: Path, out: Path) -> None:
    """Move every entry of *staging* into *out* (replacing entries of the same name), then remove *staging*:
    a folder written whole elsewhere lands in *out* without touching *out*'s other files."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    staging.rmdir()
