"""The torch backend: a transformer with mean pooling and L2 normalisation, as the BioLORD model cards embed.

Used for training, and the fallback of every other backend.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from typing import Any

import numpy as np

from linker.encoders.base import BatchedEncoder
from linker.encoders.models import resolve_model
from linker.errors import LinkerError, ModelNotFoundError

log = logging.getLogger(__name__)

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


class TransformerEncoder(BatchedEncoder):
    """Mean pooling over the attention mask, then L2 normalisation (the BioLORD model-card recipe).

    Strings are de-duplicated, sorted by length into batches and returned in input order.
    """

    backend = "torch"

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
