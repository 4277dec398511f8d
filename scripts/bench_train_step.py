#!/usr/bin/env python
"""Phase-1 training step time by precision: float32 against bf16 autocast (``linker train --amp``).

One step is what phase 1 does per batch: embed *batch* anchors and *batch* positives (mean pooling, L2 norm),
symmetric InfoNCE over float32 similarity logits, backward, gradient clipping, AdamW. Texts are truncated to a
fixed token length so each row times one shape: short (names and mentions) and long (definitions).
Also reports how far the first step's bf16 loss is from the float32 loss on the same batch.

    python scripts/bench_train_step.py --threads 2 --json docs/results/train/step_time_bf16.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from linker.encoders.torch_backend import native_bf16_cpu  # noqa: E402
from linker.train.loop import amp_context  # noqa: E402
from linker.train.model import embed, load_base, similarities, symmetric_infonce  # noqa: E402

log = logging.getLogger("bench_train_step")


def step_times(model: str | None, precision: str, length: int, batch: int, steps: int,
               device: str) -> tuple[list[float], float]:
    """Seconds of each of *steps* training steps (after one warm-up step), and the warm-up step's loss."""
    tokenizer, net, _ = load_base(model)
    net.to(device).train()
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5)
    autocast, _ = amp_context(device, precision)
    words = "autosomal dominant polycystic kidney disease with hepatic cysts and renal failure".split()
    # longer than *length* tokens, so truncation makes every text exactly *length* tokens
    texts = [" ".join(words[(i + j) % len(words)] for j in range(length)) for i in range(2 * batch)]

    def one_step() -> float:
        with autocast():
            vectors = embed(net, tokenizer, texts, length, device)
            logits = similarities(vectors[:batch], vectors[batch:], 20.0)
            loss = symmetric_infonce(logits)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.item())

    first_loss = one_step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - started)
    return times, first_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="base model folder or hub name (default: packaged MiniLM)")
    parser.add_argument("--batch", type=int, default=32, help="pairs per step (texts per step: twice this)")
    parser.add_argument("--lengths", default="16,48", help="token lengths to time, comma-separated")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--precisions", default="off,bf16", help="--amp settings to compare")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {args.device}",
                              "native_bf16_cpu": native_bf16_cpu(), "torch": torch.__version__,
                              "batch_pairs": args.batch, "rows": []}
    lines = [f"{'tokens':>6}  {'precision':<9} {'s/step (median)':>16} {'speed-up':>9} {'first loss':>11}"]
    for length in (int(x) for x in args.lengths.split(",")):
        reference = None
        for precision in args.precisions.split(","):
            times, loss = step_times(args.model, precision, length, args.batch, args.steps, args.device)
            median = statistics.median(times)
            reference = reference or median
            report["rows"].append({"tokens": length, "precision": precision, "seconds_per_step": round(median, 4),
                                   "speedup": round(reference / median, 2), "first_loss": round(loss, 5)})
            lines.append(f"{length:>6}  {precision:<9} {median:>16.3f} {reference / median:>8.2f}x {loss:>11.5f}")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
