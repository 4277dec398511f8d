"""NIL: when is the best concept of a lookup not confident enough to be an answer?

The decision is a threshold on the best candidate's score, chosen on annotated dev mentions by
:func:`choose_threshold` (``linker calibrate``) and kept beside the index in ``calibration.json``: a query
is *confident* when its best score reaches the threshold. An exact name (score 1.0) is always confident.
The threshold maximises the F1 of "confident and right" — precision over confident answers, recall over
the mentions whose right concept is ranked first — so it trades a few right answers for many wrong ones.
Without a calibration, :data:`DEFAULT_THRESHOLD` (the pipeline's linking threshold) applies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from linker.errors import LinkerError

CALIBRATION_FILE = "calibration.json"
DEFAULT_THRESHOLD = 0.75


def choose_threshold(scores: Sequence[float], correct: Sequence[bool]) -> dict[str, Any]:
    """The threshold on best scores with the highest F1 of confident-and-right answers, and its figures."""
    if len(scores) != len(correct) or not scores:
        raise LinkerError("calibration needs one best score and one right/wrong flag per mention, at least one")
    n_right = sum(correct)
    ranked = sorted(zip(scores, correct), key=lambda pair: -pair[0])
    best: dict[str, Any] = {"threshold": 1.0, "f1": 0.0, "precision": 0.0, "recall": 0.0, "confident": 0}
    right = confident = 0
    for i, (score, ok) in enumerate(ranked):
        confident += 1
        right += ok
        if i + 1 < len(ranked) and ranked[i + 1][0] == score:
            continue  # a threshold cannot split equal scores
        precision, recall = right / confident, right / n_right if n_right else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if f1 > best["f1"]:
            best = {"threshold": round(float(score), 6), "f1": f1, "precision": precision, "recall": recall,
                    "confident": confident}
    best["mentions"] = len(scores)
    best["right_at_1"] = n_right
    return best


def read_threshold(index_dir: str | os.PathLike[str]) -> float:
    """The calibrated threshold of an index folder, else :data:`DEFAULT_THRESHOLD`."""
    found = Path(index_dir) / CALIBRATION_FILE
    if not found.exists():
        return DEFAULT_THRESHOLD
    return float(json.loads(found.read_text())["threshold"])


def write_calibration(index_dir: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    from linker.meta import write_json_atomic

    target = Path(index_dir) / CALIBRATION_FILE
    write_json_atomic(target, record, sort_keys=False)
    return target


def confident(candidates: Sequence[Any], threshold: float) -> bool:
    """Whether the best of *candidates* is an answer."""
    return bool(candidates) and (bool(candidates[0].exact) or candidates[0].score >= threshold)


def calibrate(index_dir: str | os.PathLike[str] | None, mentions: Sequence[str | os.PathLike[str]], *,
              alt_ids: Sequence[str | os.PathLike[str]] = (), types: Sequence[str] = ()) -> dict[str, Any]:
    """Choose the NIL threshold of an index on annotated dev *mentions* and write ``calibration.json`` there.

    Every mention with a gold id counts: right when the best concept is a gold one, wrong otherwise — mentions
    whose gold concept is not in the index included, since for them no answer is the right answer."""
    from linker.defaults import open_index
    from linker.evaluate import first_match_rank, index_mapper
    from linker.gold import read_mentions

    index = open_index(index_dir)
    mapper = index_mapper(index.termdb, alt_ids)
    gold = [m for path in mentions for m in read_mentions(path, list(types) or None) if m.ids]
    if not gold:
        raise LinkerError(f"{', '.join(map(str, mentions))}: no mention with a gold id to calibrate on")
    texts = list(dict.fromkeys(m.text for m in gold))
    best = dict(zip(texts, index.search(texts, 1)))
    scores = [1.0 if best[m.text] and best[m.text][0].exact else (best[m.text][0].score if best[m.text] else 0.0)
              for m in gold]
    right = [bool(best[m.text]) and first_match_rank([best[m.text][0].concept_id], m.ids, mapper) == 1 for m in gold]
    record = choose_threshold(scores, right)
    record["chosen_on"] = [str(p) for p in mentions]
    record["model"] = index.meta["encoder"]["model"]
    write_calibration(index.path, record)
    return record
