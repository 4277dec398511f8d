"""Sentence encoders, one module per backend: ``torch`` (training, the fallback) and ``onnx`` (ONNX Runtime).

Both mean-pool and L2-normalise, as the BioLORD model cards embed. The backend and precision an index
was built with are recorded in its meta.json, so that queries embed as the index did.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from linker.encoders import onnx_backend, torch_backend  # neither imports its runtime until used
from linker.encoders.base import BatchedEncoder, Encoder
from linker.encoders.models import DEFAULT_MODEL, default_model_path, resolve_model
from linker.errors import LinkerError

log = logging.getLogger(__name__)

#: Backends and the precisions each offers; the first precision is the backend's default.
BACKENDS: dict[str, tuple[str, ...]] = {"torch": torch_backend.PRECISIONS, "onnx": onnx_backend.PRECISIONS}
#: The backend of :func:`load_encoder` when none is named: the reference, and what training uses.
DEFAULT_BACKEND = "torch"
#: The backend ``linker build`` (and a build given no encoder) embeds with: queries then need no torch.
#: float32, not int8: dynamic int8 quantises each batch with its own activation range, so a text's vector
#: moves with the texts batched beside it (cosine down to 0.988), and MEDIC acc@1 drops 0.6-0.7 points.
DEFAULT_BUILD_BACKEND = "onnx"

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_BUILD_BACKEND", "DEFAULT_MODEL", "BatchedEncoder", "Encoder", "default_model_path",
           "default_threads", "load_encoder", "resolve_model", "set_threads"]

_threads: int | None = None


def set_threads(threads: int) -> None:
    """Compute threads of this process's encoders, whichever backend (a worker of N processes on C cores: C/N).

    Torch reads ``OMP_NUM_THREADS`` when it is first imported and is told directly when it already is;
    ONNX Runtime sessions made afterwards take :func:`default_threads`.
    """
    global _threads
    _threads = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(_threads)


def default_threads() -> int | None:
    """What :func:`set_threads` set, else None (each backend's own default: all cores)."""
    return _threads


def load_encoder(model: str | os.PathLike[str] | None = None, *, backend: str = DEFAULT_BACKEND,
                 precision: str | None = None, **options: Any) -> Encoder:
    """The encoder for *model* (a folder, a hub name, or the packaged default) on *backend*.

    ``options`` are those of the backend's class (``device``, ``max_length``, ``batch_size``, ``threads``;
    ``folder`` for an ONNX export already on disk).
    """
    if backend not in BACKENDS:
        raise LinkerError(f"unknown encoder backend {backend!r}; use one of {', '.join(BACKENDS)}")
    precision = precision or BACKENDS[backend][0]
    if precision not in BACKENDS[backend]:
        raise LinkerError(f"the {backend} backend has no precision {precision!r}; use one of "
                          f"{', '.join(BACKENDS[backend])}")
    if backend == "onnx":
        from linker.encoders.onnx_backend import OnnxEncoder

        return OnnxEncoder(model, precision=precision, **options)
    options.pop("folder", None)
    from linker.encoders.torch_backend import TransformerEncoder

    return TransformerEncoder(model, precision=precision, **options)
