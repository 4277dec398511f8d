"""A bulk run before it starts, and what it leaves beside its output.

:func:`plan_run` checks everything a run needs (formats, input, settings, index) before any work and returns
a :class:`Plan` that either engine (:mod:`linker.annotate`'s worker processes, :mod:`linker.spark.job`'s
tasks) executes. The rest is the bookkeeping both engines share: the settings a resumed run must repeat
(``OUTPUT.run.json``), where failures are listed, and removing an output to start afresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linker.errors import LinkerError
from linker.formats import SPARK_OUTPUT_FORMATS, Reader, open_reader, output_format


@dataclass(slots=True)
class Plan:
    """A checked run, before it starts: what to read, where to write and with what; both engines take one."""

    input: str
    reader: Reader | None  # None: a table only Spark reads (``--from spark:FORMAT``)
    output: Path
    out_kind: str
    writer_options: dict[str, Any]
    annotator: Any  # linker.annotate.Annotator
    #: what a resumed run must repeat (``_check_same_run``)
    settings: dict[str, Any]
    batch_size: int
    candidates: int


def plan_run(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *, index: Any = None,
             input_format: str | None = None, output_format_name: str | None = None, id_field: str | None = None,
             text_field: str | None = None, batch_size: int = 32, include_text: bool = False, candidates: int = 5,
             pipeline_config: dict[str, Any] | None = None, annotator: Any = None,
             pipeline: str | os.PathLike[str] | None = None, engine: str = "local") -> Plan:
    """Check everything a run needs before any work: formats, the engine, the input, the settings, the index."""
    out_kind = output_format(output_path, output_format_name)
    output = Path(output_path)
    table = input_format is not None and input_format.startswith("spark:")
    if engine == "local" and (table or out_kind in SPARK_OUTPUT_FORMATS):
        raise LinkerError(f"{'reading a Spark table' if table else 'Parquet output'} needs the Spark engine: add "
                          "--engine spark")
    if not table and output.resolve() == Path(input_path).resolve():
        raise LinkerError(f"the output {output} is the input; write the annotations to another file")
    reader = None if table else open_reader(input_path, input_format, id_field=id_field, text_field=text_field)
    if annotator is None and pipeline_config:
        _import_spacy(pipeline)
        from linker.pipeline import check_settings

        check_settings(pipeline_config)
    pipeline_arg = str(Path(pipeline).resolve()) if pipeline is not None else None
    if index is None and pipeline_arg is not None:
        _import_spacy(pipeline)
        from linker.pipeline import pipeline_index

        index = pipeline_index(pipeline_arg)
    index_arg = str(Path(index).resolve()) if index is not None and Path(index).exists() else \
        (str(index) if index is not None else None)
    options: dict[str, Any] = {"include_text": include_text, "candidates": candidates}
    if out_kind == "sqlite":
        options["concepts"] = _concept_lookup(index_arg)
    index_id: str | None = None
    if annotator is None or index_arg is not None:
        index_id = _index_identity(index_arg)  # a missing index fails here, clearly, not inside every worker
    if annotator is None:
        from linker.annotate import PipelineAnnotator

        annotator = PipelineAnnotator(index_arg, pipeline_config, pipeline_arg)
    source = str(input_path) if table else str(Path(input_path).resolve())
    settings = {"input": source, "input_format": reader.format if reader is not None else input_format,
                "output_format": out_kind, "index": index_id, "id_field": id_field, "text_field": text_field,
                "include_text": include_text, "candidates": candidates, "pipeline_config": pipeline_config or {}}
    if pipeline_arg is not None:
        settings["pipeline"] = _pipeline_identity(pipeline_arg)
    return Plan(source, reader, output, out_kind, options, annotator, settings, batch_size, candidates)


def run_file(output: Path, kind: str) -> Path:
    """Where the settings of the run that writes *output* are kept, to refuse resuming with other settings."""
    if kind == "parquet":
        return output / "_run.json"  # Spark's readers skip names starting with _ or .
    return output / ".run.json" if kind == "brat" else Path(f"{output}.run.json")


def check_same_run(output: Path, kind: str, settings: dict[str, Any], resuming: bool) -> None:
    import json

    from linker.meta import write_json_atomic

    path = run_file(output, kind)
    if resuming and path.exists():
        before = json.loads(path.read_text())
        changed = [f"{key} was {before.get(key)!r}, now {value!r}" for key, value in settings.items()
                   if before.get(key) != value]
        if changed:
            raise LinkerError(f"{output} holds the output of another command ({'; '.join(changed)}); run that "
                              "command again to resume it, or add --overwrite to start afresh")
    write_json_atomic(path, settings)


def _index_identity(index: str | None) -> str:
    from linker.defaults import resolve_index_dir
    from linker.meta import read_meta

    folder = resolve_index_dir(index)
    meta = read_meta(folder)
    ontology = meta.get("ontology", {})
    return (f"{folder.resolve()} ({ontology.get('name')} {ontology.get('release') or ''}, "
            f"{meta.get('encoder', {}).get('model')}, built {meta.get('built_at')})")


def _import_spacy(pipeline: str | os.PathLike[str] | None) -> None:
    """spaCy as the run will load *pipeline* (:mod:`linker.spacy_import`), before ``linker.pipeline`` imports it
    here; a run whose workers load the pipeline needs no spaCy in this process otherwise."""
    from linker.spacy_import import import_spacy

    import_spacy(pipeline)


def _pipeline_identity(pipeline: str) -> str:
    _import_spacy(pipeline)
    from linker.pipeline import pipeline_fingerprint

    return f"{pipeline} ({pipeline_fingerprint(pipeline)})"


def remove_output(output: Path, kind: str) -> None:
    """Delete what a run into *output* wrote (a BRAT folder loses only its .txt/.ann files and errors log), and the
    part files of a Spark run into it."""
    from linker.formats.base import errors_path_for
    from linker.spark.layout import remove_job

    remove_job(output, kind)
    if kind == "parquet":
        return
    if kind == "brat":
        if output.is_dir():
            for file in output.iterdir():
                if file.suffix in {".ann", ".txt", ".tmp"} or file.name in {"errors.jsonl", ".run.json"}:
                    file.unlink()
        return
    for path in (output, errors_path_for(output), run_file(output, kind), Path(f"{output}-wal"), Path(f"{output}-shm")):
        path.unlink(missing_ok=True)


def _concept_lookup(index: str | None) -> Callable[[str], Any]:
    """Concept metadata (name, parents) straight from the index's term dictionary, without loading the model."""
    from linker.defaults import resolve_index_dir
    from linker.meta import TERMS_FILE
    from linker.termdb import TermDB

    termdb = TermDB(resolve_index_dir(index) / TERMS_FILE)
    return termdb.concept


def errors_location(output: Path, kind: str) -> str:
    from linker.formats.base import errors_path_for

    if kind == "sqlite":
        return f"the errors table of {output}"
    if kind == "parquet":
        return str(output / "failures")
    if kind == "brat":
        return str(output / "errors.jsonl")
    return str(errors_path_for(output))
