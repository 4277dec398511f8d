"""The folder a saved ``concept_linker`` writes: ``linker.json``, the index (referenced or copied) and the
mention memory of a trained pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from linker.errors import IndexNotFoundError

SETTINGS_FILE = "linker.json"
INDEX_DIR = "index"
MEMORY_FILE = "memory.jsonl"


def saved_index(folder: Path) -> tuple[dict[str, Any], str | None]:
    """The settings a saved ``concept_linker`` folder holds and the index folder they name (None: the default
    index); a missing settings file or a referenced index that is not there is an error saying what to do."""
    settings_file = folder / SETTINGS_FILE
    if not settings_file.exists():
        raise IndexNotFoundError(f"{folder}: no {SETTINGS_FILE}; save the pipeline with nlp.to_disk() again")
    settings = json.loads(settings_file.read_text())
    if settings.get("copied"):
        return settings, str(folder / settings["index"])
    index = settings.get("index")
    if index is not None and not Path(index).exists():
        raise IndexNotFoundError(f"{folder}: the pipeline refers to the index {index}, which is not there; rebuild "
                                 "or move the index back, pass --index, or save the pipeline with copy_index=True")
    return settings, index


def saved_memory(folder: Path, settings: dict[str, Any]) -> str | None:
    """The mention-memory file of a saved folder (None: it has none)."""
    return str(folder / settings["memory"]) if settings.get("memory") else None


def write_folder(folder: Path, index: Any, *, copy_index: bool, reference: bool, memory: Any = None) -> None:
    """Write ``linker.json``: the *index* referenced by its absolute path (when *reference*; else the default
    index), or with *copy_index* copied into ``<folder>/index`` so that the pipeline folder stands alone; the
    *memory* (a :class:`~linker.linking.memory.MentionMemory`) saved beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {"copied": False, "index": None}
    index_dir = Path(index.path)
    if copy_index:
        target = folder / INDEX_DIR
        if target.resolve() != index_dir.resolve():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(index_dir, target, ignore=shutil.ignore_patterns(".build", "*.tmp"))
        settings.update(copied=True, index=INDEX_DIR)
    elif reference:
        settings["index"] = str(index_dir.resolve())
    if memory is not None:
        memory.save(folder / MEMORY_FILE)
        settings["memory"] = MEMORY_FILE
    settings["built_at"] = index.meta.get("built_at")
    settings["ontology"] = index.meta.get("ontology")
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
