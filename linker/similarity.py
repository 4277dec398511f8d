"""Similarity evaluation: Spearman/Pearson of cosine similarity against human pair scores (average ranks
for ties, no scipy), and the ``term1<TAB>term2<TAB>score`` reader. Used by ``linker evaluate --pairs``."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linker.errors import EvaluationInputError, LinkerError
from linker.sources._io import iter_lines

def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span (as ``scipy.stats.rankdata``)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if len(a) != len(b) or len(a) < 2:
        raise LinkerError(f"correlation needs two equal-length series of at least 2 values, got {len(a)} and {len(b)}")
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of the average ranks (ties handled)."""
    return pearson(average_ranks(x), average_ranks(y))


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str, float]]:
    """``term1<TAB>term2<TAB>score`` rows; a first line whose score is not a number is a header."""
    path = Path(path)
    pairs = []
    for lineno, line in iter_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise EvaluationInputError(path, lineno, f"expected term1<TAB>term2<TAB>score, got {len(fields)} field(s)")
        try:
            score = float(fields[2])
        except ValueError:
            if not pairs and lineno == 1:
                continue
            raise EvaluationInputError(path, lineno, f"score {fields[2]!r} is not a number") from None
        pairs.append((fields[0].strip(), fields[1].strip(), score))
    if len(pairs) < 2:
        raise EvaluationInputError(path, None, f"{len(pairs)} scored pair(s); a correlation needs at least 2")
    return pairs


def evaluate_similarity(pairs: Sequence[tuple[str, str, float]], encoder: Any) -> dict[str, Any]:
    """Spearman and Pearson between the encoder's cosine similarities and the human scores."""
    started = time.perf_counter()
    left = encoder.encode([p[0] for p in pairs])
    right = encoder.encode([p[1] for p in pairs])
    cosine = np.sum(left * right, axis=1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)).clip(1e-12)
    human = [p[2] for p in pairs]
    return {"counts": {"pairs": len(pairs)},
            "metrics": {"spearman": spearman(cosine, human), "pearson": pearson(cosine, human)},
            "seconds": round(time.perf_counter() - started, 3)}
