"""spaCy imported without torch where nothing in the pipeline needs it.

thinc (spaCy's machine-learning library) imports torch whenever torch is installed, for its optional torch
layers. On a 2-core machine that is about 2 s and 180 MB of every process that annotates — each ``-p`` worker,
each Spark worker, each CLI call — though the linker's own components run on ONNX Runtime, FAISS and NumPy
(docs/speed.md). :func:`import_spacy` imports spaCy with torch hidden from thinc, which then runs as it does
where torch is not installed (a configuration thinc supports), and un-hides it at once: ``import torch`` later in
the process works as usual (the torch encoder backend, a detector on a GPU, training).

It is done only where it is known to be safe: spaCy not yet imported (thinc has decided already), torch not yet
imported, ``LINKER_THINC_TORCH`` not set to ``1``, and the spaCy pipeline to be loaded (if any) a folder whose
``config.cfg`` builds its models from spaCy's own architectures only (``@architectures = "spacy.…"``): a model
from another package (spacy-transformers, curated transformers, a thinc ``PyTorchWrapper``) may need thinc's
torch layers, and keeps them.
"""

from __future__ import annotations

import configparser
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: Set to ``1`` to let thinc import torch as usual (a custom component that wraps torch models through thinc).
ENV = "LINKER_THINC_TORCH"
#: Registry keys of a spaCy config that name a function building (part of) a model.
_MODEL_KEYS = ("@architectures", "@layers")


def needs_thinc_torch(pipeline: str | os.PathLike[str] | None) -> bool:
    """Whether loading *pipeline* (a spaCy pipeline folder; ``None`` = the linker's own blank pipeline) may need
    thinc's torch layers: true for a package name (its config cannot be read without importing spaCy), a folder
    without a readable ``config.cfg``, or a config with a model function outside spaCy's own ``spacy.*``."""
    if pipeline is None:
        return False
    config_path = Path(pipeline) / "config.cfg"
    if not config_path.is_file():
        return True
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(config_path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return True
    for section in parser.sections():
        for key in _MODEL_KEYS:
            value = parser.get(section, key, fallback=None)
            if value is not None and not value.strip().strip('"').startswith("spacy."):
                return True
    return False


def import_spacy(pipeline: str | os.PathLike[str] | None = None) -> bool:
    """Import spaCy, keeping torch out of thinc where that is safe for *pipeline* (see the module's docstring).

    Returns whether torch was kept out. Call it before anything imports spaCy."""
    if "spacy" in sys.modules or "torch" in sys.modules or os.environ.get(ENV) == "1" or needs_thinc_torch(pipeline):
        import spacy

        return False
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import spacy  # noqa: F401
        import thinc.api  # noqa: F401
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    log.debug("spaCy imported without thinc's torch layers (%s=1 keeps them)", ENV)
    return True
