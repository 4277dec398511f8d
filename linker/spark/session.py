"""Starting (or joining) a Spark session with the settings annotation needs; a clear error without pyspark."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from linker.errors import LinkerError
from linker.progress import ticking

log = logging.getLogger(__name__)

#: Documents per Arrow batch handed to a Python worker: small enough to bound its memory, large enough to
#: batch the encoder (a worker annotates a batch in sub-batches of ``batch_size``).
ARROW_BATCH = 512


@dataclass(frozen=True, slots=True)
class SparkOptions:
    """How a job runs on Spark: the master (None: the running session, else ``local[*]``), the number of parts
    the input is cut into (None: about 2,000 documents each, at least 8, a multiple of the task slots), Spark
    settings, reader options."""

    master: str | None = None
    partitions: int | None = None
    conf: dict[str, str] = field(default_factory=dict)
    read_options: dict[str, str] = field(default_factory=dict)


def require_pyspark() -> Any:
    """The ``pyspark`` module, or a :class:`LinkerError` saying how to install it."""
    try:
        import pyspark
    except ImportError:
        raise LinkerError("the Spark engine needs pyspark: pip install 'concept-linker[spark]' (and Java 17+)") from None
    return pyspark


def spark_session(master: str | None = None, conf: Mapping[str, str] | None = None, app_name: str = "concept-linker",
                  progress: bool = False) -> Any:
    """The active Spark session, or a new one on *master* (``local[N]``, ``spark://…``, ``yarn``).

    Without *master* an already running session is used as is (spark-submit, Databricks); only when there is
    none is a ``local[*]`` one started. Python workers run this interpreter and are reused across tasks, so a
    worker loads its pipeline once. *progress* shows the elapsed time while the JVM starts.
    """
    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    settings = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.python.worker.reuse": "true",
                "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH),
                "spark.sql.execution.pyspark.udf.faulthandler.enabled": "true"}
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    log.info("starting Spark on %s (the JVM takes a few seconds)", master or "local[*]")
    try:
        with ticking(f"starting Spark on {master or 'local[*]'}", progress):
            session = builder.getOrCreate()
    except Exception as err:  # noqa: BLE001 - Java missing or the master unreachable: a py4j/Runtime error
        raise LinkerError(f"Spark could not start on {master or 'local[*]'} ({str(err).splitlines()[0]}); check "
                          "that Java 17+ is installed (java -version) and the master address") from None
    session.sparkContext.setLogLevel("WARN")
    return session


def parse_conf(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--conf``, ``--read-option``) as a dict; a pair without ``=`` is refused."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LinkerError(f"{pair!r} is not KEY=VALUE (e.g. spark.executor.memory=4g)")
        out[key.strip()] = value
    return out


def task_threads(session: Any) -> int:
    """Compute threads one task may use: ``spark.task.cpus`` (default 1), as Spark schedules cores.

    ``local[N]`` means N cores, one per slot, so a task gets one thread unless ``spark.task.cpus`` gives it
    more; more threads than that would oversubscribe the cores Spark was told it may use."""
    return max(1, int(session.sparkContext.getConf().get("spark.task.cpus", "1")))


def task_slots(session: Any) -> int:
    """Tasks that run at once: the session's default parallelism (its cores) over the cores one task takes."""
    return max(1, int(session.sparkContext.defaultParallelism) // task_threads(session))


def run_tasks(session: Any, items: list[int], task: Callable[[Iterator[int]], Iterator[Any]], description: str,
              finished: Callable[[int], bool], on_finished: Callable[[int], None], what: str,
              tick: Callable[[], None] | None = None) -> list[Any]:
    """Run *task* on Spark, one task per item, while this thread reports each item whose output has appeared.

    *finished* tells whether an item's output exists (tasks write it themselves, atomically); *on_finished*
    is called once per item as it appears (a progress bar), *tick* twice a second (its clock). A task that fails for good is a
    :class:`LinkerError` saying that the *what* already finished are kept.
    """
    rdd = session.sparkContext.parallelize(items, len(items)).mapPartitions(task)
    session.sparkContext.setJobDescription(description)
    outcome: dict[str, Any] = {}

    def collect() -> None:
        try:
            outcome["rows"] = rdd.collect()
        except Exception as err:  # noqa: BLE001 - a task failed for good: reported below
            outcome["error"] = err

    worker = threading.Thread(target=collect, name="spark-job", daemon=True)
    worker.start()
    seen: set[int] = set()
    while True:
        worker.join(0.5)
        if tick is not None:
            tick()
        for item in items:
            if item not in seen and finished(item):
                seen.add(item)
                on_finished(item)
        if not worker.is_alive():
            break
    if "error" in outcome:
        lines = [line for line in str(outcome["error"]).strip().splitlines() if line.strip()]
        detail = (lines[-1] if lines else "unknown error")[:500]
        raise LinkerError(f"a Spark task failed for good ({detail}); the {what} already finished are kept: run the "
                          "same command again to resume")
    return list(outcome["rows"])
