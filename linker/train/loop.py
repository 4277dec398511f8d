"""One resumable optimisation phase: budget (steps, pairs, minutes), warm-up and linear decay, mixed precision,
checkpoints with validation, a JSONL training log and a progress bar.

Checkpoint layout under ``OUT/checkpoints/PHASE/``: ``step-NNNNNN.pt`` holds the model weights of each
checkpoint (the ingredients of the weight-averaging phase; the newest *keep* are kept), ``last.pt`` the
weights, optimiser, RNG, step, elapsed seconds and validation scores to resume from. Both are written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from linker.encoders.torch_backend import native_bf16_cpu
from linker.errors import LinkerError

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """When a phase stops: the first of *steps*, *items* (pairs or names seen) and *minutes* reached; None = no limit."""

    steps: int | None = None
    items: int | None = None
    minutes: float | None = None

    def progress(self, step: int, items: int, seconds: float, plan_steps: int) -> float:
        """Fraction of the phase done, 0..1 (the largest of the limits' fractions; the plan is the last limit)."""
        parts = [step / max(plan_steps, 1)]
        if self.steps:
            parts.append(step / self.steps)
        if self.items:
            parts.append(items / self.items)
        if self.minutes:
            parts.append(seconds / (60 * self.minutes))
        return min(1.0, max(parts))


@dataclass
class PhaseConfig:
    name: str
    lr: float = 2e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    checkpoint_every: int = 200
    keep: int = 4
    amp: str = "auto"  # auto | bf16 | fp16 | off, see resolve_amp
    budget: Budget = field(default_factory=Budget)
    progress_bar: bool = True


def resolve_amp(device: str, amp: str) -> str:
    """The precision *amp* means on *device*: ``auto`` is bf16 (or fp16) on CUDA, bf16 on a CPU with native
    bf16 (phase-1 MiniLM steps 2.1-2.3x faster on this project's 2-core AVX512-BF16 machine), else off."""
    if amp in ("off", "bf16", "fp16"):
        return amp
    if amp != "auto":
        raise LinkerError(f"unknown mixed-precision setting {amp!r}; use auto, bf16, fp16 or off")
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device == "cpu" and native_bf16_cpu() else "off"


def amp_context(device: str, amp: str) -> tuple[Any, Any]:
    """``(autocast context factory, GradScaler or None)`` for *device* and the *amp* setting (:func:`resolve_amp`)."""
    amp = resolve_amp(device, amp)
    if amp == "off":
        return nullcontext, None
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None
    return (lambda: torch.autocast(device_type=device_type, dtype=dtype)), scaler


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def checkpoints(folder: Path) -> list[Path]:
    """Saved ingredient checkpoints of a phase, oldest first."""
    return sorted(folder.glob("step-*.pt"))


def run_phase(
    net: Any,
    batches: Sequence[Any],
    loss_fn: Callable[[Any], torch.Tensor],
    *,
    config: PhaseConfig,
    folder: Path,
    log_path: Path,
    device: str,
    batch_items: Callable[[Any], int] = len,
    validate: Callable[[], dict[str, Any]] | None = None,
    before_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Optimise *net* over *batches* (in order; one pass) until the budget; resume from ``folder/last.pt``.

    *before_step*, if given, is called with the step number before each step (also the first one after a
    resume); its time counts against the budget.

    Returns the final state summary: steps, items, seconds, validations.
    """
    folder.mkdir(parents=True, exist_ok=True)
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    state: dict[str, Any] = {"step": 0, "items": 0, "seconds": 0.0, "validations": [], "done": False}
    last = folder / "last.pt"
    if last.exists():
        saved = torch.load(last, map_location=device, weights_only=False)
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        if "rng" in saved:  # dropout masks continue as in an uninterrupted run
            torch.set_rng_state(saved["rng"]["cpu"].cpu())
            if saved["rng"].get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
        log.info("%s: resuming at step %d (%.0f s done)", config.name, state["step"], state["seconds"])
    if state["done"]:
        return state
    state["amp"] = resolve_amp(device, config.amp)
    autocast, scaler = amp_context(device, state["amp"])
    log.info("%s: mixed precision %s on %s", config.name, state["amp"], device)
    budget = config.budget
    plan_steps = len(batches)
    bar = None
    if config.progress_bar:
        from tqdm import tqdm

        total = min(x for x in (plan_steps, budget.steps) if x) if budget.steps else plan_steps
        bar = tqdm(total=total, initial=state["step"], unit="step", desc=config.name, smoothing=0.05)
    net.train()
    started = time.perf_counter() - state["seconds"]
    recent: list[float] = []

    def save(final: bool) -> None:
        state["seconds"] = time.perf_counter() - started
        if final and state["validations"] and state["validations"][-1]["step"] == state["step"]:
            state["done"] = True  # the last checkpoint is this step: only mark the phase finished
            _atomic_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                          "rng": _rng_state()}, last)
            return
        validation = validate() if validate is not None else {}
        entry = {"phase": config.name, "step": state["step"], "items": state["items"],
                 "seconds": round(state["seconds"], 1), "loss": round(sum(recent) / max(len(recent), 1), 5),
                 "lr": optimizer.param_groups[0]["lr"], "validation": validation}
        state["validations"].append(entry)
        state["done"] = final
        weights = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        _atomic_save(weights, folder / f"step-{state['step']:06d}.pt")
        for old in checkpoints(folder)[:-config.keep]:
            old.unlink()
        _atomic_save({"model": weights, "optimizer": optimizer.state_dict(), "state": state, "rng": _rng_state()}, last)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        log.info("%s step %d: loss %.4f, validation %s", config.name, state["step"], entry["loss"], validation)
        recent.clear()
        state["seconds"] = time.perf_counter() - started  # validation time counts against the budget too

    while True:
        seconds = time.perf_counter() - started
        progress = budget.progress(state["step"], state["items"], seconds, plan_steps)
        if progress >= 1.0 or state["step"] >= plan_steps:
            break
        lr_scale = progress / config.warmup if progress < config.warmup else \
            max(0.0, (1.0 - progress) / max(1e-9, 1.0 - config.warmup))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * max(lr_scale, 0.01)
        if before_step is not None:
            before_step(state["step"])
        batch = batches[state["step"]]
        with autocast():
            loss = loss_fn(batch)
        if not math.isfinite(loss.item()):
            log.warning("%s step %d: non-finite loss, batch skipped", config.name, state["step"])
            optimizer.zero_grad(set_to_none=True)
        elif scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        recent.append(float(loss.item()))
        state["step"] += 1
        state["items"] += batch_items(batch)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{recent[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        if state["step"] % config.checkpoint_every == 0:
            save(final=False)
    if bar is not None:
        bar.close()
    save(final=True)
    return state
