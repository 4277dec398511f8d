"""``linker build --engine spark``: the distinct names embedded by Spark executors, the index written as a local
build writes it.

The build itself stays in :func:`linker.build.build_index` (term dictionary, FAISS, meta.json); only the
embedding of the chunks of distinct names moves. Each missing chunk's names are staged as one Parquet file
beside the chunk files; one Spark task per chunk embeds it with the build's own encoder (the ONNX export
copied into the build folder, or the torch model by its location) and writes the chunk's ``.npy`` exactly
where a local build would, atomically. So a Spark build resumes a local one and the other way round, and
the chunks, hence the index, are the same within float tolerance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from linker.build import chunk_path, save_chunk
from linker.encoders import Encoder
from linker.spark.layout import write_table
from linker.spark.session import SparkOptions, run_tasks, spark_session, task_threads

log = logging.getLogger(__name__)

_ENCODERS: dict[str, Encoder] = {}


def encoder_spec(encoder: Encoder, state_dir: Path) -> Any:
    """How an executor makes the same encoder: load options for :func:`linker.encoders.load_encoder`, or the
    encoder itself when it is neither backend (it is then pickled to every task)."""
    describe = encoder.describe()
    backend = getattr(encoder, "backend", None)
    if backend == "onnx":
        ship = encoder.ship
        folder = state_dir / ship(state_dir)["onnx_dir"]  # beside the chunks, on the storage executors share
        return {"backend": "onnx", "folder": str(folder.resolve()), "precision": describe.get("precision"),
                "max_length": describe.get("max_length"), "batch_size": getattr(encoder, "batch_size", 64)}
    location = getattr(encoder, "location", None)
    if location is not None:
        return {"backend": "torch", "model": location, "precision": describe.get("precision", "float32"),
                "max_length": describe.get("max_length"), "batch_size": getattr(encoder, "batch_size", 64)}
    return encoder


def _worker_encoder(spec: Any, threads: int) -> Encoder:
    from linker.encoders import load_encoder, set_threads

    if not isinstance(spec, dict):
        return spec
    key = repr(sorted(spec.items()))
    if key not in _ENCODERS:
        set_threads(threads)
        options = dict(spec)
        _ENCODERS[key] = load_encoder(options.pop("model", None), **options)
    return _ENCODERS[key]


class _EmbedTask:
    def __init__(self, spec: Any, vectors: str, texts: str, threads: int) -> None:
        self.spec, self.vectors, self.texts, self.threads = spec, vectors, texts, threads

    def __call__(self, starts: Iterator[int]) -> Iterator[int]:
        import pyarrow.parquet as pq

        for start in starts:
            target = chunk_path(Path(self.vectors), start)
            if not target.exists():
                texts = pq.read_table(_texts_path(Path(self.texts), start)).column("text").to_pylist()
                save_chunk(target, _worker_encoder(self.spec, self.threads).encode(texts))
            yield start


def _texts_path(folder: Path, start: int) -> Path:
    return folder / f"{start:09d}.parquet"


class SparkChunkEmbedder:
    """A :data:`linker.build.ChunkEmbedder` that runs one Spark task per missing chunk."""

    def __init__(self, options: SparkOptions | None = None) -> None:
        self.options = options or SparkOptions()

    def __call__(self, encoder: Encoder, chunks: Iterator[list[str]], total: int, folder: Path, chunk_size: int,
                 progress: bool, on_chunk: Callable[[int], None] | None) -> list[Path]:
        import pyarrow as pa
        from tqdm import tqdm

        starts = list(range(0, total, chunk_size))
        missing = [start for start in starts if not chunk_path(folder, start).exists()]
        if not missing:
            return [chunk_path(folder, start) for start in starts]
        texts_dir = folder.parent / "texts"
        todo = set(missing)
        for start, texts in zip(starts, chunks):  # the names each task embeds, staged on shared storage
            if start in todo and not _texts_path(texts_dir, start).exists():
                write_table(pa.table({"text": pa.array(texts, pa.string())}), _texts_path(texts_dir, start))
        spec = encoder_spec(encoder, folder.parent)
        session = spark_session(self.options.master, self.options.conf, progress=progress)
        task = _EmbedTask(spec, str(folder.resolve()), str(texts_dir.resolve()), task_threads(session))
        log.info("embedding %d chunks of names on %s", len(missing), session.sparkContext.master)
        finished = total - sum(min(chunk_size, total - start) for start in missing)
        with tqdm(total=total, initial=finished, unit="names", desc="embedding", disable=not progress) as bar:
            run_tasks(session, missing, task, f"concept-linker: embed {len(missing)} chunks of names",
                      lambda start: chunk_path(folder, start).exists(),
                      lambda start: bar.update(min(chunk_size, total - start)), "chunks", tick=bar.refresh)
        return [chunk_path(folder, start) for start in starts]
