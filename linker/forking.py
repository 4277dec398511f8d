"""Forked worker processes run OpenMP libraries on one thread.

OpenMP (torch, FAISS) hangs in a forked child when the parent already used its thread pool, as
``nlp.pipe(..., n_process=2)`` does on Linux: a forked child therefore runs them on one thread (n processes of
one thread each, which is also what keeps them from fighting over cores). Importing this module registers the
hook once per process.
"""

from __future__ import annotations

import os
import sys


def one_thread_after_fork() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=one_thread_after_fork)
