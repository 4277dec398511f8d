"""Shared fixtures: tiny ontologies under tests/data, indexes built once per session."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


class HashEncoder:
    """A deterministic stand-in encoder (a vector from each string's hash) for tests of mechanics, not meaning."""

    def __init__(self, dimension: int = 16, name: str = "hash-encoder") -> None:
        self.dimension = dimension
        self.name = name
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dimension))
        out = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "dimension": self.dimension, "pooling": "mean", "normalized": True, "max_length": 32}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def encoder():
    """The packaged all-MiniLM-L6-v2 (the project's default model)."""
    from linker.encoders import load_encoder

    return load_encoder()


@pytest.fixture(scope="session")
def mini_index_dir(tmp_path_factory: pytest.TempPathFactory, encoder) -> Path:
    """An index of tests/data/mini.obo embedded with the default model."""
    from linker.build import build_index
    from linker.sources import Source

    out = tmp_path_factory.mktemp("indexes") / "mini-minilm"
    return build_index(Source.open(DATA / "mini.obo"), out, encoder=encoder, progress=False)


@pytest.fixture(scope="session")
def mini_index(mini_index_dir: Path, encoder):
    from linker.index import ConceptIndex

    return ConceptIndex.load(mini_index_dir, encoder=encoder)


@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ONNX exports go to a session folder, never to the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    os.environ["LINKER_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def onnx_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of tests/data/mini.obo embedded with the ONNX int8 backend."""
    from linker.build import build_index
    from linker.encoders import load_encoder
    from linker.sources import Source

    out = tmp_path_factory.mktemp("indexes") / "mini-onnx"
    return build_index(Source.open(DATA / "mini.obo"), out, encoder=load_encoder(backend="onnx", precision="int8"),
                       progress=False)
