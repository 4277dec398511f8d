"""Phase 3 of the recipe: weight averages of the saved checkpoints, kept only beyond a paired-significance
margin over the last model."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from linker.train.config import TrainConfig
from linker.train.evaluate import paired_gain
from linker.train.loop import checkpoints
from linker.train.model import state_average

log = logging.getLogger(__name__)


# -- phase 3 --------------------------------------------------------------------------------------------------
def soup_phase(net: Any, base_state: dict[str, torch.Tensor], out: Path, config: TrainConfig, validate: Any,
               log_path: Path) -> dict[str, Any]:
    """Weight averaging over the saved checkpoints of phases 1 and 2, chosen on the validation split.

    Candidates: the last model (no averaging), the best checkpoint alone, the uniform soup of all
    checkpoints, the greedy soup (the last model, then checkpoints by their training-time validation, each
    kept only if the average does not get worse), and the greedy soup (or the last model) interpolated with
    the base model (``a * soup + (1 - a) * base`` for each *interpolations* a).

    A candidate replaces the last model only when its paired validation gain over it reaches
    *soup_margin* standard errors (:func:`~linker.train.evaluate.paired_gain`); among those, the best
    validation acc@1 wins (ties: the earlier candidate). Validation sets of a few hundred queries
    cannot tell a 1-point difference from noise, and picking the best of ten noisy candidates
    otherwise favours averages that test worse. *net* ends holding the winner.
    """
    scores: dict[Path, float] = {}
    for phase in ("contrastive", "distill"):
        folder = out / "checkpoints" / phase
        if not folder.exists():
            continue
        by_step = {}
        last = folder / "last.pt"
        if last.exists():
            state = torch.load(last, map_location="cpu", weights_only=False)["state"]
            by_step = {v["step"]: v["validation"].get("acc@1", 0.0) for v in state["validations"]}
        for path in checkpoints(folder):
            scores[path] = by_step.get(int(path.stem.split("-")[1]), 0.0)
    results: list[dict[str, Any]] = []
    reference: list[float] = []  # the last model's per-query hits

    def log_entry(entry: dict[str, Any]) -> None:
        results.append(entry)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"phase": "soup", **entry}) + "\n")
        log.info("soup candidate %s", entry)

    def score(name: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Validate *state*: its log entry, with its paired gain over the last model (z in standard errors)."""
        net.load_state_dict(state)
        hits: list[float] = []
        entry: dict[str, Any] = {"candidate": name, "validation": validate(hits)}
        if not results:  # the last model is scored first: the reference of the paired gains
            reference.extend(hits)
        else:
            gain, z = paired_gain(hits, reference)
            entry.update(gain=round(gain, 4), z=round(z, 2))
        log_entry(entry)
        return entry

    last_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    candidates: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = [(score("last", last_state), last_state)]
    ranked = sorted(scores, key=lambda p: -scores[p])
    greedy_state, greedy_entry = last_state, candidates[0][0]
    if len(ranked) >= 2:
        loaded = {p: torch.load(p, map_location="cpu", weights_only=True) for p in ranked}
        uniform = state_average(list(loaded.values()))
        candidates.append((score("uniform_soup", uniform), uniform))
        best = ranked[0]
        candidates.append((score(f"best_checkpoint:{best.parent.name}/{best.stem}", loaded[best]), loaded[best]))
        # the greedy soup grows from the last model, the one shipped without phase 3; seeding it with the
        # checkpoint of best training-time validation once left phase 2 out of the soup and cost 2.3 points
        greedy: list[Path] = []
        for path in ranked:
            if all(torch.equal(loaded[path][k], last_state[k]) for k in last_state):
                continue  # the last model's own checkpoint
            trial = state_average([last_state] + [loaded[p] for p in greedy + [path]])
            trial_entry = score(f"greedy_trial+{path.parent.name}/{path.stem}", trial)
            if trial_entry["validation"].get("acc@1", 0.0) >= greedy_entry["validation"].get("acc@1", 0.0):
                greedy.append(path)
                greedy_state, greedy_entry = trial, trial_entry
        if greedy:  # the last accepted trial, logged again under its own name
            entry = {**greedy_entry, "candidate": "greedy_soup",
                     "members": ["last"] + [f"{p.parent.name}/{p.stem}" for p in greedy]}
            log_entry(entry)
            candidates.append((entry, greedy_state))
        del loaded
    for alpha in config.interpolations:
        mixed = state_average([greedy_state, base_state], [alpha, 1 - alpha])
        candidates.append((score(f"interpolate_{alpha}", mixed), mixed))
    chosen = pick_candidate([entry for entry, _ in candidates], config.soup_margin)
    entry, state = next(c for c in candidates if c[0]["candidate"] == chosen)
    net.load_state_dict(state)
    value = entry["validation"].get("acc@1", 0.0)
    log.info("phase 3 keeps %s (validation acc@1 %.4f; margin %.1f standard errors over the last model)",
             chosen, value, config.soup_margin)
    return {"chosen": chosen, "validation_acc@1": value, "soup_margin": config.soup_margin, "candidates": results}


def pick_candidate(entries: Sequence[dict[str, Any]], margin: float) -> str:
    """The phase-3 choice among candidate *entries* (the first is the last model, the others carry ``z``, their
    paired gain over it in standard errors): the best validation acc@1 among the last model and the
    candidates with ``z >= margin``; the earlier entry wins a tie."""
    eligible = [e for i, e in enumerate(entries) if i == 0 or e.get("z", 0.0) >= margin]
    return max(eligible, key=lambda e: e["validation"].get("acc@1", 0.0))["candidate"]
