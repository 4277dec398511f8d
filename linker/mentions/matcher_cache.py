"""The dictionary matcher's tables, built once per list of names and read back by every later process.

A matcher's tables are its keys (each name's normalised, stemmed words -> the name) and the word prefixes of
those keys. Building them normalises and stems every name: 1.7 s for MEDIC's 78k names, minutes for a UMLS
release of 10M, in every process that annotates (each ``-p`` or Spark worker, the service, a detector's
lexicon). An entry of the cache is three files named by a digest of the names, the options that shape the
tables and :data:`~linker.mentions.dictionary.TABLES_VERSION`:

- ``STEM.keys.marisa``: a MARISA trie, key -> name (``marisa_trie.BytesTrie``);
- ``STEM.prefixes.marisa``: a MARISA trie of the prefixes;
- ``STEM.json``: ``max_words`` and the two tries' counts, written last: an entry without it is incomplete.

Tables of up to :data:`IN_MEMORY_KEYS` keys are read into a dict and a set (a dict lookup is ten times faster
than a trie's, and the default pipeline makes a few per word). Larger ones are searched in the memory-mapped
tries: a few hundred MB at UMLS scale, shared by every process through the page cache, where a dict would
hold gigabytes of Python strings in each worker. MARISA rather than our own format: a maintained library of
compact, memory-mappable tries with fast exact lookups, which is all a matcher needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Up to this many keys, tables are read into Python objects; above, searched in the memory-mapped tries.
IN_MEMORY_KEYS = 1_000_000
#: Entries kept, the most recently used: every rebuilt index has a new digest, and a UMLS-size entry is 0.5 GB.
MAX_ENTRIES = 16
KEYS, PREFIXES, MANIFEST = ".keys.marisa", ".prefixes.marisa", ".json"

Tables = tuple[Mapping[str, str], Any, int]  # keys, prefixes (a set or a trie: anything with `in`), max_words


class TrieKeys(Mapping[str, str]):
    """key -> name, answered by a memory-mapped ``marisa_trie.BytesTrie``."""

    def __init__(self, trie: Any) -> None:
        self._trie = trie

    def __getitem__(self, key: str) -> str:
        values = self._trie.get(key)
        if not values:
            raise KeyError(key)
        return values[0].decode("utf-8", "surrogatepass")

    def __contains__(self, key: object) -> bool:
        return key in self._trie

    def __iter__(self) -> Iterator[str]:
        return iter(self._trie.iterkeys())

    def __len__(self) -> int:
        return len(self._trie)


def entry(names: Sequence[str], shape: Iterable[Any], cache_dir: Path) -> Path:
    """The stem of the entry for *names* (in this order, or the one key that stands for them) and *shape* (the
    version, the options that shape the tables, whether *names* is a key), inside *cache_dir*."""
    digest = hashlib.sha256(json.dumps(list(shape)).encode())
    for name in names:
        digest.update(name.encode("utf-8", "surrogatepass") + b"\0")
    return cache_dir / digest.hexdigest()[:32]


def read(stem: Path) -> Tables | None:
    """The tables of the entry *stem*, None when there is none (or it cannot be read: it is then built again)."""
    import marisa_trie

    try:
        manifest = json.loads(stem.with_name(stem.name + MANIFEST).read_text(encoding="utf-8"))
        keys, prefixes = marisa_trie.BytesTrie(), marisa_trie.Trie()
        keys.mmap(str(stem.with_name(stem.name + KEYS)))
        prefixes.mmap(str(stem.with_name(stem.name + PREFIXES)))
        if len(keys) != manifest["keys"] or len(prefixes) != manifest["prefixes"]:
            raise ValueError(f"{len(keys)} keys and {len(prefixes)} prefixes where {stem.name}{MANIFEST} "
                             f"says {manifest['keys']} and {manifest['prefixes']}")
        max_words = int(manifest["max_words"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        log.warning("dictionary matcher cache %s unreadable (%s); building it again", stem, err)
        return None
    with contextlib.suppress(OSError):  # used now: the last to be pruned
        os.utime(stem.with_name(stem.name + MANIFEST))
    if len(keys) > IN_MEMORY_KEYS:
        return TrieKeys(keys), prefixes, max_words
    return ({key: value.decode("utf-8", "surrogatepass") for key, value in keys.items()}, set(prefixes.iterkeys()),
            max_words)


def write(stem: Path, keys: Mapping[str, str], prefixes: Iterable[str], max_words: int) -> bool:
    """Write the entry *stem* (the manifest last, each file atomically); False when the folder is not writable."""
    import marisa_trie

    prefix_list = list(prefixes)
    files = {KEYS: lambda: marisa_trie.BytesTrie((key, name.encode("utf-8", "surrogatepass"))
                                                 for key, name in keys.items()),
             PREFIXES: lambda: marisa_trie.Trie(prefix_list)}
    manifest = {"keys": len(keys), "prefixes": len(prefix_list), "max_words": max_words}
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        for suffix, make in files.items():  # one trie in memory at a time
            _atomically(stem.with_name(stem.name + suffix), lambda path, make=make: make().save(path))
        _atomically(stem.with_name(stem.name + MANIFEST),
                    lambda path: Path(path).write_text(json.dumps(manifest) + "\n", encoding="utf-8"))
    except OSError as err:
        log.info("dictionary matcher not cached in %s (%s)", stem.parent, err)
        return False
    prune(stem.parent)
    return True


def prune(cache_dir: Path) -> None:
    """Remove all but the :data:`MAX_ENTRIES` most recently used entries of *cache_dir*. A process that has an
    entry mapped keeps its pages (POSIX unlinks a mapped file lazily)."""
    manifests = sorted(cache_dir.glob("*" + MANIFEST), key=_mtime, reverse=True)
    for manifest in manifests[MAX_ENTRIES:]:
        stem = manifest.name[:-len(MANIFEST)]
        for suffix in (MANIFEST, KEYS, PREFIXES):  # the manifest first: a half-removed entry is incomplete
            with contextlib.suppress(OSError):
                (cache_dir / (stem + suffix)).unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _atomically(target: Path, write_to: Any) -> None:
    handle, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write_to(staging)
        os.replace(staging, target)
    finally:
        Path(staging).unlink(missing_ok=True)
