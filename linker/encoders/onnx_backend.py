"""The ONNX Runtime backend: the torch model exported once, float32 or dynamic int8, no torch at query time.

The exported graph ends in the same mean pooling and L2 normalisation as :func:`~linker.encoders.torch_backend.mean_pool`,
so both backends embed a text alike (cosine ≥ 0.999 in float32). Int8 is ONNX Runtime's dynamic
quantisation, per channel, of every MatMul's weights (activations per tensor, scaled at run time); LayerNorm,
softmax and the pooling stay float32. Until export version 3 the feed-forward output projections stayed
float32 (their GELU inputs carry the largest activations); with onnxruntime 1.32 quantising them too keeps the
fixtures at cosine ≥ 0.981 to torch and MEDIC / HPO acc@1 within 0.4 points of torch, and embeds 1.6x as
many strings a second (docs/speed.md, "Every MatMul in int8").

An export is a folder (``model.onnx``, ``tokenizer.json``, ``encoder.json``), cached per model and
precision under :func:`cache_home` and copied into an index built with it (``encoder.onnx_dir`` in
meta.json), so queries embed exactly as the index did even where the cache is gone. Exporting needs
torch, transformers and onnx; querying needs only onnxruntime, tokenizers and numpy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from linker.encoders.base import BatchedEncoder
from linker.encoders.models import resolve_model
from linker.errors import LinkerError, ModelNotFoundError

log = logging.getLogger(__name__)

#: Precisions of :class:`OnnxEncoder`.
PRECISIONS = ("float32", "int8")
MANIFEST = "encoder.json"
GRAPH = "model.onnx"
TOKENIZER = "tokenizer.json"
#: Folder name of the export inside an index folder.
SHIPPED_DIR = "onnx"
#: Bumped when the exported graph changes, so that older cached exports are not reused.
EXPORT_VERSION = 3


def cache_home() -> Path:
    """``$LINKER_CACHE/onnx``, else ``~/.cache/concept-linker/onnx``."""
    from linker.defaults import cache_root

    return cache_root() / "onnx"


def fingerprint(location: str | Path) -> str:
    """A key for a model folder (its path and its files' sizes and times) or a hub name."""
    digest = hashlib.sha256(f"v{EXPORT_VERSION}:{location}".encode())
    folder = Path(location)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporter's tracer warnings and the quantiser's per-tensor lines (logged on the root logger), hidden."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export(model: str | os.PathLike[str] | None, out_dir: str | Path, *, precision: str = "float32",
           max_length: int | None = None) -> Path:
    """Export *model* (a folder, a hub name or the packaged default) to the folder *out_dir*.

    Written in a staging folder and moved into place, so an interrupted export leaves nothing behind
    and two processes exporting at once both end with one complete folder.
    """
    if precision not in PRECISIONS:
        raise LinkerError(f"unknown ONNX precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    try:
        import onnx  # noqa: F401 - missing onnx is reported here; quantize_int8 uses it
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:
        raise LinkerError(f"exporting a model to ONNX needs torch, transformers and onnx ({err}); "
                          "pip install onnx") from None
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    name, location, folder_max = resolve_model(model)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting %s to ONNX (%s), once: %s", name, precision, out)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location))
        network = AutoModel.from_pretrained(str(location), attn_implementation="eager")
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"cannot load model {str(location)!r} for export ({str(err).splitlines()[0]})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise LinkerError(f"{name}: the ONNX backend needs a fast tokenizer (tokenizer.json); use --backend torch")
    network.eval()
    length = int(max_length or folder_max or min(getattr(tokenizer, "model_max_length", 512), 512))
    inputs = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in tokenizer.model_input_names]

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, *tensors: Any) -> Any:
            from linker.encoders.torch_backend import mean_pool

            feeds = dict(zip(inputs, tensors))
            return mean_pool(self.network(**feeds).last_hidden_state, feeds["attention_mask"])

    # a padded example, so that the traced graph keeps the attention mask
    example = tokenizer(["a", "a longer example name"], padding=True, return_tensors="pt")
    axes = {key: {0: "batch", 1: "tokens"} for key in inputs}
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        graph = stage / (GRAPH if precision == "float32" else "float32.onnx")
        with torch.inference_mode(), quiet():
            torch.onnx.export(Pooled(), tuple(example[key] for key in inputs), str(graph), input_names=inputs,
                              output_names=["embedding"], dynamic_axes={**axes, "embedding": {0: "batch"}},
                              opset_version=17, dynamo=False)
        if precision == "int8":
            quantize_int8(graph, stage / GRAPH)
            graph.unlink()
        tokenizer.backend_tokenizer.save(str(stage / TOKENIZER))
        manifest = {"model": name, "source": str(location), "precision": precision, "max_length": length,
                    "dimension": int(network.config.hidden_size), "inputs": inputs,
                    "pad_id": int(tokenizer.pad_token_id or 0), "pad_token": str(tokenizer.pad_token or "[PAD]"),
                    "export_version": EXPORT_VERSION}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.replace(stage, out)
        except OSError:
            if not (out / MANIFEST).exists():  # not another process's complete export: a real failure
                raise
    return out


#: The feed-forward output projections' MatMuls (not the attention's ``/attention/output/dense/``).
FEED_FORWARD_OUT = "/output/dense/"


def quantize_int8(graph: Path, out: Path, *, float_feed_forward_out: bool = False) -> None:
    """Dynamic int8 of *graph*'s MatMul weights (per channel) into *out*; with *float_feed_forward_out* the
    feed-forward output projections stay float32 (the detector's choice: see :mod:`linker.mentions.tagger_onnx`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept = [node.name for node in onnx.load(str(graph)).graph.node
            if node.op_type == "MatMul" and FEED_FORWARD_OUT in node.name
            and "/attention/" not in node.name] if float_feed_forward_out else []
    with quiet():
        quantize_dynamic(str(graph), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=kept)


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime options of every session here: *threads* (default :func:`linker.encoders.default_threads`);
    the pool's threads spin between the operators of a run (sleeping and waking them between each of a small
    query's ~100 operators cost it 1-2 ms of ~7) and stop spinning as soon as the run returns: FAISS and spaCy
    run on the same cores right after each batch."""
    import onnxruntime as ort

    from linker.encoders import default_threads

    options = ort.SessionOptions()
    threads = threads or default_threads()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def ensure_export(model: str | os.PathLike[str] | None, *, precision: str = "float32", max_length: int | None = None,
                  cache_dir: str | Path | None = None) -> Path:
    """The cached export of *model* at *precision*, exported on first use."""
    _, location, _ = resolve_model(model)
    folder = Path(cache_dir or cache_home()) / f"{fingerprint(location)}-{precision}-{max_length or 'default'}"
    if not (folder / MANIFEST).exists():
        export(model, folder, precision=precision, max_length=max_length)
    return folder


class OnnxEncoder(BatchedEncoder):
    """Embed with an exported model under ONNX Runtime; the same rows as the torch encoder, faster on CPUs."""

    backend = "onnx"

    def __init__(self, model: str | os.PathLike[str] | None = None, *, folder: str | Path | None = None,
                 precision: str = "float32", max_length: int | None = None, batch_size: int = 64,
                 threads: int | None = None, device: str | None = None, cache_dir: str | Path | None = None) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as err:
            raise LinkerError(f"the ONNX backend needs onnxruntime ({err}): pip install onnxruntime") from None
        self.folder = Path(folder) if folder is not None else ensure_export(model, precision=precision,
                                                                            max_length=max_length, cache_dir=cache_dir)
        manifest_path = self.folder / MANIFEST
        if not manifest_path.exists():
            raise LinkerError(f"{self.folder} holds no ONNX export ({MANIFEST} missing); rebuild the index")
        manifest = json.loads(manifest_path.read_text())
        self.name = str(manifest["model"])
        self.precision = str(manifest["precision"])
        self.dimension = int(manifest["dimension"])
        self.max_length = int(max_length or manifest["max_length"])
        self.batch_size = batch_size
        self._inputs = list(manifest["inputs"])
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()  # each batch is padded to its longest text in _embed_batch
        self._pad_id = int(manifest["pad_id"])
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        if device and device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self._options, self._providers = options, providers
        self._lock = threading.Lock()
        self._open_session()

    def _open_session(self) -> None:
        import onnxruntime as ort
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        try:
            self.session = ort.InferenceSession(str(self.folder / GRAPH), self._options, providers=self._providers)
        except (ort_state.Fail, ort_state.InvalidGraph, ort_state.InvalidProtobuf, ort_state.NoSuchFile) as err:
            raise LinkerError(f"{self.folder / GRAPH} cannot be loaded ({str(err).splitlines()[0]}); "
                              "delete the folder to export it again, or rebuild the index") from None
        self._pid = os.getpid()

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "dimension": self.dimension, "pooling": "mean", "normalized": True,
                "max_length": self.max_length, "backend": self.backend, "precision": self.precision}

    def ship(self, index_dir: Path) -> dict[str, str]:
        """Copy the export into *index_dir*; the meta.json entries that point queries at it."""
        target = index_dir / SHIPPED_DIR
        if target.resolve() != self.folder.resolve():
            staging = index_dir / f".{SHIPPED_DIR}.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(self.folder, staging)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        return {"onnx_dir": SHIPPED_DIR}

    def _prepare(self, texts: list[str]) -> list[Any]:
        """The texts' tokenisations (``len`` is the token count, by which batches are formed)."""
        with self._lock:  # one tokenizer, configured once, shared by the threads of a server
            return self.tokenizer.encode_batch(texts)

    def _identity(self, item: Any) -> tuple[int, ...]:
        """A tokenisation's ids (its mask is all ones and its types all zeros): the tokenizer's normaliser has
        lower-cased, stripped accents and split punctuation, so texts it reads alike are embedded once (913
        distinct non-exact mentions of NCBI + BC5CDR dev are 857 distinct inputs to all-MiniLM-L6-v2)."""
        return tuple(item.ids)

    def _embed_batch(self, batch: list[Any]) -> np.ndarray:
        with self._lock:
            if self._pid != os.getpid():  # a forked child (nlp.pipe n_process): the parent's thread pool is gone
                self._open_session()
        shape = (len(batch), max(len(encoding) for encoding in batch))
        arrays = {"input_ids": np.full(shape, self._pad_id, dtype=np.int64),
                  "attention_mask": np.zeros(shape, dtype=np.int64), "token_type_ids": np.zeros(shape, dtype=np.int64)}
        for row, encoding in enumerate(batch):
            width = len(encoding)
            arrays["input_ids"][row, :width] = encoding.ids
            arrays["attention_mask"][row, :width] = encoding.attention_mask
            arrays["token_type_ids"][row, :width] = encoding.type_ids
        return np.asarray(self.session.run(None, {key: arrays[key] for key in self._inputs})[0], dtype=np.float32)
