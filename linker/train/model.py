"""The trainable sentence encoder (transformer + mean pooling + L2 norm) and the sentence-transformers folder it writes.

Only torch and transformers are needed: the folder layout (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``) is written by hand, so ``linker build --model DIR``, :mod:`linker.encoders`
and ``sentence_transformers.SentenceTransformer(DIR)`` all read it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linker.encoders import resolve_model
from linker.encoders.torch_backend import mean_pool
from linker.errors import ModelNotFoundError
from linker.meta import move_entries

log = logging.getLogger(__name__)

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def load_base(model: str | os.PathLike[str] | None) -> tuple[Any, Any, int | None]:
    """``(tokenizer, model, max_length)`` of a model folder, hub name or the packaged default, in train mode."""
    from transformers import AutoModel, AutoTokenizer

    _, location, max_length = resolve_model(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location))
        net = AutoModel.from_pretrained(str(location))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"cannot load base model {model!r} ({str(err).splitlines()[0]}); "
                                 "pass a local sentence-transformers or transformers folder") from None
    return tokenizer, net, max_length


def embed(net: Any, tokenizer: Any, texts: Sequence[str], max_length: int, device: str) -> torch.Tensor:
    """Mean-pooled, L2-normalised embeddings with gradients (:func:`linker.encoders.torch_backend.mean_pool`, as the encoder)."""
    tokens = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    tokens = {key: value.to(device) for key, value in tokens.items()}
    return mean_pool(net(**tokens).last_hidden_state, tokens["attention_mask"])


def similarities(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * a @ b.T`` in float32 even under autocast: a bf16 product of unit vectors is off by up to about
    0.004, which a scale of 20 turns into logit noise of the size of the margins being learnt."""
    with torch.autocast(device_type=a.device.type, enabled=False):
        return scale * (a.float() @ b.float().T)


def symmetric_infonce(logits: torch.Tensor, forward: torch.Tensor | None = None,
                      backward: torch.Tensor | None = None) -> torch.Tensor:
    """Multiple-negatives ranking both ways: row i of *logits* (anchors × positives) should pick column i, and
    so should column i. *forward* and *backward*, if given, replace *logits* and its transpose for the anchor →
    positive and the positive → anchor direction (the same columns first, then extra negatives)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (torch.nn.functional.cross_entropy(logits if forward is None else forward, labels)
            + torch.nn.functional.cross_entropy(logits.T if backward is None else backward, labels)) / 2


#: texts from which a :class:`LiveEncoder` call shows a bar (a few seconds on a CPU)
PROGRESS_FROM = 2000


class LiveEncoder:
    """An :class:`~linker.encoders.Encoder` over a model being trained (validation without saving a folder)."""

    def __init__(self, net: Any, tokenizer: Any, max_length: int, device: str, name: str = "training",
                 autocast: Callable[[], Any] = nullcontext, progress: bool = False) -> None:
        """*autocast*: the context factory of the run's mixed precision (:func:`linker.train.loop.amp_context`);
        bf16 embeds the base model's names about 3x faster on a CPU with native bf16, pooling stays float32.
        *progress*: a bar for every call of :data:`PROGRESS_FROM` texts or more."""
        self.net, self.tokenizer, self.max_length, self.device, self.name = net, tokenizer, max_length, device, name
        self.autocast = autocast
        self.progress = progress
        self.dimension = int(net.config.hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False,
               desc: str = "embedding") -> np.ndarray:
        from tqdm import tqdm

        size = batch_size or 128
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        was_training = self.net.training
        self.net.eval()
        shown = progress or (self.progress and len(texts) >= PROGRESS_FROM)
        with torch.inference_mode(), self.autocast(), \
                tqdm(total=len(texts), desc=desc, unit="texts", disable=not shown, leave=False) as bar:
            for start in range(0, len(order), size):
                idx = order[start:start + size]
                out[idx] = embed(self.net, self.tokenizer, [texts[i] for i in idx], self.max_length,
                                 self.device).cpu().numpy()
                bar.update(len(idx))
        self.net.train(was_training)
        return out

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "dimension": self.dimension, "pooling": "mean", "normalized": True,
                "max_length": self.max_length}


def save_sentence_transformer(net: Any, tokenizer: Any, out: str | Path, *, max_length: int,
                              card: dict[str, Any] | None = None) -> Path:
    """Write a sentence-transformers folder (transformer weights at the root, mean pooling, normalisation)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    net.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    dim = int(net.config.hidden_size)
    (tmp / "modules.json").write_text(json.dumps(MODULES, indent=2))
    (tmp / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_length, "do_lower_case": False}))
    (tmp / "1_Pooling").mkdir()
    (tmp / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (tmp / "2_Normalize").mkdir()
    (tmp / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}))
    if card is not None:
        (tmp / "training.json").write_text(json.dumps(card, indent=2, default=str))
        (tmp / "README.md").write_text(
            "# concept-linker trained encoder\n\nMean pooling + L2 normalisation; trained with `linker train` "
            "(BioLORD recipe: contrastive, self-distillation, weight averaging). See training.json.\n")
    move_entries(tmp, out)  # entries move in one by one: OUT may also hold checkpoints and logs
    return out


def state_average(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Weighted average of state dicts (uniform when *weights* is None); integer buffers are taken from the first."""
    if not states:
        raise ValueError("no state dicts to average")
    weights = list(weights) if weights is not None else [1.0 / len(states)] * len(states)
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(w * s[key].float() for w, s in zip(weights, states)).to(first.dtype)  # type: ignore[union-attr]
        else:
            out[key] = first.clone()
    return out
