"""The transformer detector's network under ONNX Runtime (``linker_tagger`` with ``backend="onnx-int8"`` or
``"onnx-float32"``).

The network of a trained detector (its sub-word feature tables included) is exported once to ``tagger.onnx``
in the export cache (:func:`linker.encoders.onnx_backend.cache_home`), keyed by the model folder's files, so a
pipeline folder is never written to; int8 is ONNX Runtime's dynamic quantisation of the MatMul weights
(:func:`~linker.encoders.onnx_backend.quantize_int8`) except the feed-forward output projections: on a CPU with
VNNI, the MEDIC detector quantised whole ran 1.96x float32's docs/s at -0.7 span F1 on NCBI-disease dev, with
those kept float32 1.41x at -0.1 (docs/detector.md, "The detector in int8, window by window").
The export goes through ``torch.onnx.export`` as the encoder's does: optimum's exporter knows token
classification but not the feature inputs this tagger adds.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linker.encoders.onnx_backend import cache_home, fingerprint, quantize_int8, quiet, session_options
from linker.errors import LinkerError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx-float32", "onnx-int8")
GRAPH = "tagger.onnx"


def ensure_tagger_export(model_dir: str | os.PathLike[str], load_network: Callable[[], Any],
                         feature_kinds: Sequence[str], *, precision: str,
                         cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The ONNX graph of the detector in *model_dir* at *precision* (``float32`` or ``int8``), exported on first
    use from the torch network *load_network* gives (not called when the export is cached); written beside and
    moved into place, so an interrupted export leaves nothing behind."""
    folder = Path(cache_dir or cache_home()) / f"tagger-{fingerprint(model_dir)}-{precision}"
    graph = folder / GRAPH
    if graph.exists():
        return graph
    try:
        import torch
    except ImportError as err:
        raise LinkerError(f"exporting the detector to ONNX needs torch ({err})") from None
    network = load_network()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryDirectory(prefix=".export-", dir=folder.parent)
    except OSError as err:
        raise LinkerError(f"cannot write the detector's ONNX export under {folder.parent} ({err.strerror}); set "
                          "LINKER_CACHE to a writable folder, or use the linker_tagger backend torch") from None
    names = ["input_ids", "attention_mask", *(f"{kind}_ids" for kind in feature_kinds)]

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, *tensors: Any) -> Any:
            return self.network(**dict(zip(names, tensors))).logits

    # a padded pair of windows, so that the traced graph keeps the attention mask; feature ids all 0 (none)
    ids, mask = torch.tensor([[101, 2000, 2001, 102], [101, 2000, 102, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    example = (ids, mask, *(torch.zeros_like(ids) for _ in feature_kinds))
    log.info("exporting the detector %s to ONNX (%s), once: %s", model_dir, precision, folder)
    with probe as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        floats = stage / (GRAPH if precision == "float32" else "float32.onnx")
        network.eval()
        with torch.inference_mode(), quiet():
            torch.onnx.export(Logits(), example, str(floats), input_names=names, output_names=["logits"],
                              dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "logits"]},
                              opset_version=17, dynamo=False)
        if precision == "int8":
            quantize_int8(floats, stage / GRAPH, float_feed_forward_out=True)
            floats.unlink()
        try:
            os.replace(stage, folder)
        except OSError:
            if not graph.exists():  # not another process's complete export: a real failure
                raise
    return graph


class OnnxTagging:
    """Logits of sub-word windows from the exported graph: ``(input_ids, attention_mask, features) -> logits``.

    With *per_window* (the int8 graph), each window runs alone, cut to its own length: dynamic quantisation
    scales a MatMul's activations by the whole input tensor, so in a batch a window's logits would depend on
    the windows beside it (and on their padding), and a document's spans on the documents tagged with it.
    """

    def __init__(self, graph: Path, threads: int | None = None, *, per_window: bool = False) -> None:
        try:
            import onnxruntime  # noqa: F401 - missing onnxruntime is reported here, where the backend is chosen
        except ImportError as err:
            raise LinkerError(f"the ONNX detector backend needs onnxruntime ({err}): pip install onnxruntime") from None
        self.graph, self.threads, self.per_window = graph, threads, per_window
        self._session: Any = None
        self._inputs: list[str] = []
        self._pid = -1

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray, features: dict[str, np.ndarray]
                 ) -> np.ndarray:
        if self._pid != os.getpid():  # a forked worker (nlp.pipe(n_process=2)) opens its own session
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(self.graph), session_options(self.threads),
                                                 providers=["CPUExecutionProvider"])
            self._inputs = [i.name for i in self._session.get_inputs()]
            self._pid = os.getpid()
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask,
                 **{f"{kind}_ids": values for kind, values in features.items()}}
        feeds = {name: feeds[name] for name in self._inputs}
        if not self.per_window:
            return self._session.run(["logits"], feeds)[0]
        rows = [self._session.run(["logits"], {name: values[row:row + 1, :length] for name, values in feeds.items()})[0]
                for row, length in enumerate(attention_mask.sum(axis=1).tolist())]
        out = np.zeros((*input_ids.shape, rows[0].shape[-1]), dtype=np.float32)  # padded positions: 0, never read
        for row, logits in enumerate(rows):
            out[row, :logits.shape[1]] = logits[0]
        return out
