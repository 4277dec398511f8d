"""Progress shown for steps that take more than a few seconds, including those that cannot count."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def ticking(desc: str, enabled: bool = True) -> Iterator[None]:
    """A line with the elapsed time while a blocking step runs (starting a JVM, indexing a dictionary,
    training a quantizer): for work that reports no count of its own."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", dynamic_ncols=True)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    ticker = threading.Thread(target=tick, name="ticking", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()
