"""A detector model's tokenizer read by the ``tokenizers`` library alone.

``transformers.AutoTokenizer`` and ``AutoConfig`` import torch (a trained pipeline loaded in 8.0 s and 760 MB with
them, 3.4 s and 540 MB without; docs/speed.md), though the detector's network runs under ONNX Runtime on a CPU. A model
folder saved by ``transformers`` holds its fast tokenizer as ``tokenizer.json``, which the ``tokenizers``
library (what ``transformers`` runs underneath) reads directly, and its labels in ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from linker.errors import LinkerError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


class Subwords:
    """The part of a ``transformers`` fast tokenizer the detector uses: sub-word ids and character offsets of a
    text without special tokens (called as ``tokenizer(text, add_special_tokens=False,
    return_offsets_mapping=True)``), and the ids of the ``[CLS]``, ``[SEP]`` and ``[PAD]`` tokens."""

    def __init__(self, tokenizer: Any, cls_token_id: int, sep_token_id: int, pad_token_id: int) -> None:
        self._tokenizer = tokenizer
        self.cls_token_id, self.sep_token_id, self.pad_token_id = cls_token_id, sep_token_id, pad_token_id

    @classmethod
    def load(cls, folder: str | Path) -> Subwords | None:
        """The tokenizer of the model *folder*; ``None`` where it has no ``tokenizer.json`` or names a special
        token the tokenizer lacks (then ``transformers`` must load it)."""
        folder = Path(folder)
        if not (folder / TOKENIZER_FILE).is_file():
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tokenizer.no_truncation()  # long texts are read in windows by the detector
        tokenizer.no_padding()
        try:
            special = json.loads((folder / TOKENIZER_CONFIG).read_text()) if (folder / TOKENIZER_CONFIG).is_file() else {}
        except (OSError, ValueError):
            return None  # transformers reads it, and says what is wrong with it
        ids = []
        for key, default in (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]")):
            token = special.get(key) or default
            token_id = tokenizer.token_to_id(token["content"] if isinstance(token, dict) else str(token))
            if token_id is None:
                return None
            ids.append(token_id)
        return cls(tokenizer, *ids)

    def __call__(self, text: str, *, add_special_tokens: bool = False, return_offsets_mapping: bool = True,
                 verbose: bool = False) -> dict[str, list[Any]]:
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return {"input_ids": encoding.ids, "offset_mapping": encoding.offsets}


def model_labels(folder: str | Path) -> list[str]:
    """The model's output tags by number, from its ``config.json`` (``id2label``)."""
    path = Path(folder) / "config.json"
    try:
        id2label = json.loads(path.read_text())["id2label"]
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except (OSError, ValueError, KeyError) as err:
        raise LinkerError(f"{path}: no readable id2label ({type(err).__name__}: {err}); save the detector again") from None
