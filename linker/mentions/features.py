"""Sub-word features the transformer detector adds to its input embeddings.

- **shape**: the shape of the word a sub-word belongs to (lower, Title, CAPS, with digits, mixed, no
  letters). The packaged MiniLM is uncased, so without it "HFE" and "hfe", "Wilms" and "wilms" are one input.
- **lexicon**: whether the dictionary matcher (:class:`~linker.mentions.dictionary.DictionaryMatcher`) finds an
  ontology name there, as B/I/O, in the manner of the lexicon features of TaggerOne and PhenoTagger: the model
  learns from context when a name of the dictionary is a mention and where mentions that contain one end.

Each feature is an embedding table added to the token embeddings; the tables start at zero, so a model
with features starts as the plain model. The model folder holds ``features.json``, ``features.pt`` (the
tables) and, with the lexicon, ``lexicon.txt`` (the names, one per line), so it stands alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linker.errors import LinkerError

FEATURES_FILE, TABLES_FILE, LEXICON_FILE = "features.json", "features.pt", "lexicon.txt"
#: shape ids; 0 is a special or padding position
PAD, LOWER, TITLE, CAPS, DIGITS, MIXED, SYMBOL = range(7)
N_SHAPES = 7
#: lexicon ids; 0 outside any name (and padding)
OUTSIDE, BEGIN, INSIDE = range(3)
KINDS = ("shape", "lexicon")
_WORD = re.compile(r"\S+")


def word_shape(word: str) -> int:
    """The shape id of one word, surrounding punctuation ignored (``"(HFE)"`` is CAPS)."""
    core = word.strip("()[]{},.;:!?\"'")
    letters = [ch for ch in core if ch.isalpha()]
    if any(ch.isdigit() for ch in core):
        return DIGITS
    if not letters:
        return SYMBOL
    if all(ch.isupper() for ch in letters):
        return CAPS if len(letters) > 1 else TITLE
    if letters[0].isupper() and all(ch.islower() for ch in letters[1:]):
        return TITLE
    if all(ch.islower() for ch in letters):
        return LOWER
    return MIXED


def shape_ids(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """The shape of the whitespace-delimited word around each sub-word (``PAD`` for an empty offset)."""
    words = [(m.start(), m.end(), word_shape(m.group())) for m in _WORD.finditer(text)]
    out, w = [], 0
    for start, end in offsets:
        if end <= start:
            out.append(PAD)
            continue
        while w < len(words) and words[w][1] <= start:
            w += 1
        out.append(words[w][2] if w < len(words) and words[w][0] <= start else SYMBOL)
    return out


def span_ids(spans: Iterable[tuple[int, int]], offsets: Sequence[tuple[int, int]]) -> list[int]:
    """B/I/O of each sub-word against character *spans* (sorted, not overlapping)."""
    out = [OUTSIDE] * len(offsets)
    ordered = sorted(spans)
    i = 0
    for n, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        while i < len(ordered) and ordered[i][1] <= start:
            i += 1
        if i < len(ordered) and ordered[i][0] < end:
            out[n] = INSIDE if n > 0 and out[n - 1] != OUTSIDE and offsets[n - 1][0] >= ordered[i][0] else BEGIN
    return out


def lexicon_names(source: str | os.PathLike[str]) -> list[str]:
    """The names a lexicon matches: every term of an index folder, or every name and synonym of an ontology file."""
    path = Path(source)
    from linker.meta import TERMS_FILE

    if path.is_dir() and (path / TERMS_FILE).exists():
        from linker.termdb import TermDB

        return sorted(TermDB(path / TERMS_FILE).term_texts())
    from linker.sources import Source
    from linker.types import Concept, Term

    names: set[str] = set()
    for record in Source.open(path).records():
        if isinstance(record, Term):
            names.add(record.text)
        elif isinstance(record, Concept):
            names.add(record.name)
    if not names:
        raise LinkerError(f"--lexicon {source}: no names read; give an index folder or an ontology file")
    return sorted(names)


@dataclass
class SubwordFeatures:
    """Which features a detector uses, and the lexicon's matcher when it has one."""

    kinds: tuple[str, ...]
    names: Sequence[str] = ()

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise LinkerError(f"unknown detector feature(s) {', '.join(sorted(unknown))}; use {', '.join(KINDS)}")
        if "lexicon" in self.kinds and not self.names:
            raise LinkerError("the lexicon feature needs names: give --lexicon INDEX (or an ontology file)")
        self._matcher: Any = None

    def ids(self, text: str, offsets: Sequence[tuple[int, int]]) -> dict[str, list[int]]:
        """``kind -> id per sub-word`` for the features in use."""
        out: dict[str, list[int]] = {}
        if "shape" in self.kinds:
            out["shape"] = shape_ids(text, offsets)
        if "lexicon" in self.kinds:
            if self._matcher is None:
                from linker.mentions.dictionary import DictionaryMatcher

                self._matcher = DictionaryMatcher.cached(self.names)
            out["lexicon"] = span_ids([(p.start, p.end) for p in self._matcher.find(text)], offsets)
        return out

    def save(self, folder: Path) -> None:
        (folder / FEATURES_FILE).write_text(json.dumps({"kinds": list(self.kinds)}) + "\n")
        if "lexicon" in self.kinds:
            (folder / LEXICON_FILE).write_text("".join(f"{name}\n" for name in self.names), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SubwordFeatures | None:
        """The features of a model folder, None for a plain model."""
        if not (folder / FEATURES_FILE).exists():
            return None
        kinds = tuple(json.loads((folder / FEATURES_FILE).read_text())["kinds"])
        names: list[str] = []
        if "lexicon" in kinds:
            names = (folder / LEXICON_FILE).read_text(encoding="utf-8").splitlines()
        return cls(kinds, names)


def feature_model(base: Any, kinds: Sequence[str]) -> Any:
    """*base* (a Hugging Face token-classification model) with a zero-initialised embedding table per feature
    added to its input embeddings; a torch module whose ``forward`` takes ``<kind>_ids`` beside the usual inputs."""
    import torch

    sizes = {"shape": N_SHAPES, "lexicon": 3}

    class FeatureTagging(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.config = base.config
            self.tables = torch.nn.ModuleDict({kind: torch.nn.Embedding(sizes[kind], base.config.hidden_size)
                                               for kind in kinds})
            for table in self.tables.values():
                torch.nn.init.zeros_(table.weight)

        def forward(self, input_ids: Any, attention_mask: Any, labels: Any = None, **features: Any) -> Any:
            embeds = self.base.get_input_embeddings()(input_ids)
            for kind, table in self.tables.items():
                embeds = embeds + table(features[f"{kind}_ids"])
            return self.base(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

        def save_pretrained(self, folder: str | os.PathLike[str]) -> None:
            self.base.save_pretrained(folder)
            torch.save({k: v.detach().cpu() for k, v in self.tables.state_dict().items()}, Path(folder) / TABLES_FILE)

    return FeatureTagging()


def load_feature_tables(model: Any, folder: Path) -> None:
    """The trained tables of *folder* into a :func:`feature_model`."""
    import torch

    tables = Path(folder) / TABLES_FILE
    if not tables.exists():
        raise LinkerError(f"{folder}: {FEATURES_FILE} names features but {TABLES_FILE} is missing; train again")
    model.tables.load_state_dict(torch.load(tables, map_location="cpu", weights_only=True))
