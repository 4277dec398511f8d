"""The transformer mention detector: a token-classification head (BIO over sub-words) on a transformer,
as a spaCy component (``linker_tagger``) that sets ``doc.ents`` like spaCy's ``ner``.

Long texts are read in windows of ``max_length`` sub-words, each overlapping the next by ``stride``
(``windows="stride"``, the default); the logits of a sub-word seen twice are averaged. With
``windows="sentences"`` a window ends where a sentence does and the next one starts there, so that no sub-word
is read twice (a sentence longer than half a window still overlaps; :func:`windows`): on the NCBI-disease and
BC5CDR dev splits 1.06-1.36x the documents a second, and strict F1 -0.1 / +0.15 points for the 6-layer MEDIC
detector, -0.8 / -0.1 for the 3-layer one, -0.7 / -0.4 for the weak one (training reads stride windows).

The tags are the most probable BIO sequence in which ``I-X`` follows only ``B-X`` or ``I-X`` (Viterbi over the
log-softmax, ``decode="viterbi"``, the default: on the NCBI-disease and BC5CDR dev splits it raised span F1 by
0.7 and 1.3 points over each sub-word's own best tag, ``"argmax"``, where an ``I-`` after ``O`` starts a span).
``outside_penalty`` (nats, 0 by default) is taken from the ``O`` tag's log-probability at every sub-word before
decoding: the detector then proposes more spans, recall for precision, and the linker's ``threshold`` leaves
unlinked those no concept fits (``linker train-pipeline`` chooses it on dev with the linker's settings). A span
starts at a ``B-`` sub-word, runs over the ``I-`` sub-words of its label and is widened to whole spaCy tokens.
Each entity carries the detector's confidence in it, ``span._.linker_confidence``: the least probability, over
its sub-words, of being inside a mention (by the model, before any penalty), which the linker's
``detector_confidence`` reads. The model folder (a Hugging Face
token-classification model + tokenizer) is saved inside the pipeline folder by ``nlp.to_disk``.

``backend``: ``torch``, or the network exported to ONNX (``onnx-float32``, ``onnx-int8``;
:mod:`linker.mentions.tagger_onnx`); ``auto`` (the default) is torch on a GPU and ``onnx-int8`` on a CPU. Under
ONNX Runtime the MEDIC detector ran 1.3-1.7x faster than torch with the same span F1, and in int8 a trained
pipeline annotated 1.38-1.46x the documents a second of float32 with strict F1 within 0.3 points on the
NCBI-disease and BC5CDR dev splits (on a CPU with VNNI; docs/detector.md, "The detector in int8, window by
window"). int8 runs each window alone: its dynamic quantisation scales activations by the whole input, and
batched, 100 of 500 BC5CDR dev abstracts were tagged otherwise in batches of 16 windows than of 3
(``scripts/bench_detector.py``), so a resumed bulk run would not have reproduced an uninterrupted one.
"""

from __future__ import annotations

import bisect
import logging
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import filter_spans, minibatch

from linker.errors import LinkerError
from linker.extensions import CONFIDENCE_ATTR, doc_text, register_extensions
from linker.mentions.features import SubwordFeatures
from linker.mentions.tagger_onnx import BACKENDS

log = logging.getLogger(__name__)
register_extensions()  # span._.linker_confidence

MODEL_DIR = "model"
OUTSIDE = "O"
DECODERS = ("viterbi", "argmax")


def bio_labels(entity_labels: Sequence[str]) -> list[str]:
    """``["O", "B-X", "I-X", …]`` for the entity labels, in a stable order."""
    out = [OUTSIDE]
    for label in sorted(set(entity_labels)):
        out += [f"B-{label}", f"I-{label}"]
    return out


def windows(n_tokens: int, max_tokens: int, stride: int, ends: Sequence[int] = ()) -> list[tuple[int, int]]:
    """``[start, end)`` sub-word windows covering ``n_tokens``, consecutive ones sharing *stride* sub-words.

    With *ends* (sorted sub-word positions where a sentence ends, :func:`sentence_ends`), a window ends at the
    last of them it can reach, if that keeps it at least half full, and the next window starts there, sharing
    nothing: whole sentences are read with their neighbours, and no sub-word is read twice."""
    if n_tokens <= max_tokens:
        return [(0, n_tokens)]
    step = max(1, max_tokens - stride)
    out, start = [], 0
    while True:
        end = min(n_tokens, start + max_tokens)
        if end < n_tokens and ends:
            at = bisect.bisect_right(ends, end) - 1
            if at >= 0 and ends[at] - start >= max_tokens // 2:
                out.append((start, ends[at]))
                start = ends[at]
                continue
        out.append((start, end))
        if end == n_tokens:
            return out
        start += step


#: Window settings of ``linker_tagger``: overlapping windows of ``stride`` (``"stride"``, the default), or windows
#: that end where sentences do and overlap only where a sentence is longer than half a window (``"sentences"``).
WINDOWS = ("stride", "sentences")


def sentence_ends(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Positions *i* (``1..len(offsets)``) after which a sentence ends: sub-word *i - 1* is ``.``, ``?`` or
    ``!`` and the next sub-word follows a space and does not start in lower case ("e.g. fine" goes on)."""
    out = []
    for i in range(len(offsets) - 1):
        start, end = offsets[i]
        after = offsets[i + 1][0]
        if text[start:end] in (".", "?", "!") and after > end and text[end:after].isspace() \
                and not text[after].islower():
            out.append(i + 1)
    return out


def encode_text(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Sub-word ids (no special tokens) and their character offsets. A text longer than the model's inputs is
    read in windows (:func:`windows`), so the tokenizer's warning that it is too long is not asked for."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of the tags at each sub-word (rows of *logits*)."""
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def viterbi_tags(logits: np.ndarray, labels: Sequence[str]) -> list[int]:
    """The most probable tag sequence under the log-softmax of *logits* (sub-words × tags) in which ``I-X``
    comes only after ``B-X`` or ``I-X``. Written here: 15 lines of numpy, where the maintained CRF packages
    (pytorch-crf, AllenNLP's ``viterbi_decode``) would add a dependency for a model that has no CRF layer."""
    if len(logits) == 0:
        return []
    logp = log_softmax(logits)
    inside = [tag.startswith("I-") for tag in labels]
    allowed = np.array([[not inside[j] or (prev != OUTSIDE and prev[2:] == labels[j][2:]) for j in range(len(labels))]
                        for prev in labels])
    penalty = np.where(allowed, 0.0, -np.inf)
    score = np.where(inside, -np.inf, logp[0])
    back = np.zeros(logp.shape, dtype=np.int64)
    for t in range(1, len(logp)):
        options = score[:, None] + penalty
        back[t] = options.argmax(0)
        score = options.max(0) + logp[t]
    path = [int(score.argmax())]
    for t in range(len(logp) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def decode_spans(labels: Sequence[str], offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """Character spans ``(start, end, label)`` of a BIO sequence over sub-words with *offsets*."""
    spans: list[tuple[int, int, str]] = []
    current: list[Any] | None = None
    for tag, (start, end) in zip(labels, offsets):
        if end <= start:
            continue
        kind, _, label = tag.partition("-")
        if kind == "I" and current is not None and current[2] == label:
            current[1] = end
            continue
        if current is not None:
            spans.append((current[0], current[1], current[2]))
            current = None
        if kind in ("B", "I"):
            current = [start, end, label]
    if current is not None:
        spans.append((current[0], current[1], current[2]))
    return spans


def _least(inside: np.ndarray, bounds: np.ndarray, start: int, end: int) -> float:
    """The least of *inside* over the sub-words (character *bounds*, one row each) within ``[start, end)``."""
    within = (bounds[:, 0] < end) & (bounds[:, 1] > start) & (bounds[:, 1] > bounds[:, 0])
    return round(float(inside[within].min()), 6) if within.any() else 0.0


@Language.factory("linker_tagger", default_config={"model": None, "max_length": 256, "stride": 32,
                                                    "batch_size": 16, "device": None, "precision": "auto",
                                                    "decode": "viterbi", "backend": "auto", "outside_penalty": 0.0,
                                                    "windows": "stride"})
def make_tagger(nlp: Language, name: str, *, model: str | None, max_length: int, stride: int, batch_size: int,
                device: str | None, precision: str, decode: str, backend: str,
                outside_penalty: float, windows: str) -> TransformerTagger:
    return TransformerTagger(nlp, name, model=model, max_length=max_length, stride=stride, batch_size=batch_size,
                             device=device, precision=precision, decode=decode, backend=backend,
                             outside_penalty=outside_penalty, windows=windows)


class TransformerTagger:
    """Sets ``doc.ents`` from a token-classification model (see the module docstring)."""

    def __init__(self, nlp: Language, name: str = "linker_tagger", *, model: str | None = None, max_length: int = 256,
                 stride: int = 32, batch_size: int = 16, device: str | None = None, precision: str = "auto",
                 decode: str = "viterbi", backend: str = "auto", outside_penalty: float = 0.0,
                 windows: str = "stride") -> None:
        if max_length < 8 or not 0 <= stride < max_length // 2:
            raise LinkerError(f"linker_tagger max_length={max_length}, stride={stride}: need max_length >= 8 and "
                              "0 <= stride < max_length / 2")
        if decode not in DECODERS:
            raise LinkerError(f"linker_tagger decode={decode!r}: use {' or '.join(DECODERS)}")
        if backend not in ("auto", *BACKENDS):
            raise LinkerError(f"linker_tagger backend={backend!r}: use auto or one of {', '.join(BACKENDS)}")
        if windows not in WINDOWS:
            raise LinkerError(f"linker_tagger windows={windows!r}: use {' or '.join(WINDOWS)}")
        if not 0.0 <= outside_penalty <= 20.0:
            raise LinkerError(f"linker_tagger outside_penalty={outside_penalty}: use a number of nats from 0 to 20")
        self.decode, self.backend, self.outside_penalty = decode, backend, float(outside_penalty)
        self.windows = windows
        self.name = name
        self.model_path = model
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size
        self.device, self.precision = device, precision
        self._model: Any = None
        self._tokenizer: Any = None
        self._features: SubwordFeatures | None = None
        self._labels: list[str] = []
        self._onnx: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_model=None, _tokenizer=None, _features=None, _labels=[], _onnx=None)
        return state

    # -- the model -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._tokenizer is not None:
            return
        if self.model_path is None:
            raise LinkerError("linker_tagger has no model: load a trained pipeline (spacy.load) or pass model=DIR")
        from linker.devices import cuda_available
        from linker.mentions.subwords import Subwords, model_labels

        self._labels = model_labels(self.model_path)
        self._features = SubwordFeatures.load(Path(self.model_path))
        device = self.device or ("cuda" if cuda_available() else "cpu")
        if self.backend == "auto":  # int8 ONNX on a CPU, window by window (see above)
            self.backend = "torch" if device.startswith("cuda") else "onnx-int8"
        # the ONNX backend needs neither torch nor transformers where the folder has its tokenizer.json
        self._tokenizer = None if self.backend == "torch" else Subwords.load(self.model_path)
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if self.backend == "torch":
            self._model = self._network().to(device).eval()
            self.device = device
        else:
            from linker.mentions.tagger_onnx import OnnxTagging, ensure_tagger_export

            kinds = self._features.kinds if self._features is not None else ()
            graph = ensure_tagger_export(self.model_path, lambda: self._network(attn_implementation="eager"), kinds,
                                         precision=self.backend.removeprefix("onnx-"))
            self._onnx = OnnxTagging(graph, per_window=self.backend == "onnx-int8")
            self.device = "cpu"

    def _network(self, **options: Any) -> Any:
        """The torch network of the model folder, its feature tables included."""
        from transformers import AutoModelForTokenClassification

        from linker.mentions.features import feature_model, load_feature_tables

        model = AutoModelForTokenClassification.from_pretrained(self.model_path, **options)
        if self._features is not None:
            model = feature_model(model, self._features.kinds)
            load_feature_tables(model, Path(self.model_path))
        return model

    def tags(self) -> list[str]:
        """The model's BIO tags, by output number (loads the model)."""
        self._load()
        return list(self._labels)

    def initialize(self, get_examples: Any = None, *, nlp: Language | None = None) -> None:
        self._load()

    # -- processing ------------------------------------------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int | None = None) -> Iterator[Doc]:
        for batch in minibatch(stream, size=max(1, batch_size or self.batch_size)):
            for doc, spans in zip(batch, self.predict([doc_text(d) for d in batch])):
                found = [(doc.char_span(s, e, label=label, alignment_mode="expand"), confidence)
                         for s, e, label, confidence in spans]
                confidence_of = {(span.start, span.end): c for span, c in found if span is not None and len(span)}
                doc.ents = filter_spans([span for span, _ in found if span is not None and len(span)])
                for ent in doc.ents:
                    ent._.set(CONFIDENCE_ATTR, confidence_of[ent.start, ent.end])
                yield doc

    def predict_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
        """Character spans of each text."""
        return [[(s, e, label) for s, e, label, _ in spans] for spans in self.predict(texts)]

    def predict(self, texts: Sequence[str]) -> list[list[tuple[int, int, str, float]]]:
        """Character spans of each text with the detector's confidence in each: the least probability, over the
        span's sub-words, that the sub-word is inside a mention (1 - P(O), before any ``outside_penalty``)."""
        self._load()
        labels = self.tags()
        encoded = [encode_text(self._tokenizer, text) for text in texts]
        features = [self._features.ids(text, offsets) if self._features is not None else {}
                    for text, (_, offsets) in zip(texts, encoded)]
        ends = [sentence_ends(text, offsets) if self.windows == "sentences" else []
                for text, (_, offsets) in zip(texts, encoded)]
        logits = self._logits([ids for ids, _ in encoded], features, ends)
        outside = np.array(labels) == OUTSIDE
        shift = np.where(outside, -self.outside_penalty, 0.0).astype(np.float32)
        best = (lambda row: viterbi_tags(row, labels)) if self.decode == "viterbi" else (lambda row: row.argmax(-1))
        out = []
        for row, (_, offsets) in zip(logits, encoded):
            spans = decode_spans([labels[i] for i in best(row + shift)], offsets)
            inside = 1.0 - np.exp(log_softmax(row))[:, outside].sum(-1) if len(row) else np.zeros(0)
            bounds = np.array(offsets, dtype=np.int64).reshape(-1, 2)
            out.append([(s, e, label, _least(inside, bounds, s, e)) for s, e, label in spans])
        return out

    def _logits(self, docs_ids: Sequence[Sequence[int]], docs_features: Sequence[dict[str, list[int]]],
                docs_ends: Sequence[Sequence[int]] | None = None) -> list[np.ndarray]:
        """Sub-word logits of each document (with its feature ids, and its sentence ends where windows follow
        them), windows averaged where they overlap."""
        inner = self.max_length - 2
        pieces = [(d, s, e) for d, (ids, ends) in enumerate(zip(docs_ids, docs_ends or [()] * len(docs_ids)))
                  for s, e in windows(len(ids), inner, self.stride, ends)]
        sums = [np.zeros((len(ids), len(self._labels)), dtype=np.float32) for ids in docs_ids]
        counts = [np.zeros((len(ids), 1), dtype=np.float32) for ids in docs_ids]
        cls, sep, pad = self._tokenizer.cls_token_id, self._tokenizer.sep_token_id, self._tokenizer.pad_token_id
        pieces.sort(key=lambda p: p[2] - p[1])
        for start in range(0, len(pieces), self.batch_size):
            group = pieces[start:start + self.batch_size]
            width = max(e - s for _, s, e in group) + 2
            ids = np.full((len(group), width), pad, dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            feats = {kind: np.zeros((len(group), width), dtype=np.int64) for kind in docs_features[group[0][0]]}
            for row, (d, s, e) in enumerate(group):
                ids[row, :e - s + 2] = [cls, *docs_ids[d][s:e], sep]
                mask[row, :e - s + 2] = 1
                for kind, values in docs_features[d].items():
                    feats[kind][row, 1:1 + e - s] = values[s:e]
            out = self._forward(ids, mask, feats)
            for row, (d, s, e) in enumerate(group):
                sums[d][s:e] += out[row, 1:1 + e - s]
                counts[d][s:e] += 1
        return [total / np.maximum(count, 1) for total, count in zip(sums, counts)]

    def _forward(self, ids: np.ndarray, mask: np.ndarray, feats: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of one batch of windows, by the chosen backend."""
        if self._onnx is not None:
            return self._onnx(ids, mask, feats)
        import torch

        from linker.train.loop import amp_context

        autocast, _ = amp_context(self.device, self.precision)
        with torch.inference_mode(), autocast():
            out = self._model(input_ids=torch.from_numpy(ids).to(self.device),
                              attention_mask=torch.from_numpy(mask).to(self.device),
                              **{f"{kind}_ids": torch.from_numpy(t).to(self.device) for kind, t in feats.items()}).logits
        return out.float().cpu().numpy()

    # -- serialisation ---------------------------------------------------------------------------------------
    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / MODEL_DIR
        if self._model is not None:
            self._model.save_pretrained(target)
            self._tokenizer.save_pretrained(target)
            if self._features is not None:
                self._features.save(target)
        elif self.model_path is not None and Path(self.model_path).resolve() != target.resolve():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(self.model_path, target)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> TransformerTagger:
        target = Path(path) / MODEL_DIR
        if not (target / "config.json").exists():
            raise LinkerError(f"{path}: no token-classification model in {target}; save the pipeline again")
        self.model_path = str(target)
        self._model = self._tokenizer = self._features = self._onnx = None
        self._labels = []
        return self
