"""The ``linker`` command: thin verbs over the library; a :class:`LinkerError` becomes a message and exit status 2."""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from linker.encoders import DEFAULT_BUILD_BACKEND
from linker.errors import LinkerError

log = logging.getLogger("linker")
INDEX_HELP = "index folder (default: the embedded HPO index, built on first use)"
PIPELINE_HELP = ("spaCy pipeline folder to run in front of the linker: a detector from linker train-mentions, or a "
                 "whole trained pipeline (its own index unless --index)")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LinkerError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except (OSError, sqlite3.OperationalError) as err:
            if not _disk_full(err):
                raise
            where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
            click.echo(f"error: the disk is full{where} ({err}); free some space and run the same command again: "
                       "builds and annotation runs resume where they stopped", err=True)
            sys.exit(2)


def _disk_full(err: BaseException) -> bool:
    """Whether *err* says that the disk (or the user's quota) is full, from the OS or from SQLite."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(err)  # SQLITE_FULL: "database or disk is full"


@click.group(cls=_Group)
@click.version_option(package_name="concept-linker", prog_name="linker")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("-q", "--quiet", is_flag=True, help="only warnings and errors")
def cli(verbose: int, quiet: bool) -> None:
    """Link biomedical text to ontology concepts with sentence embeddings."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        logging.getLogger("faiss").setLevel(logging.WARNING)
    logging.getLogger("spacy").propagate = False  # spaCy prints its records through its own handler: once, not twice


@cli.command()
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.argument("out_dir", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["obo", "umls", "tsv", "jsonl", "ctd"]), help="ontology format (default: from the name)")
@click.option("--model", help="model folder or hub name (default: the packaged all-MiniLM-L6-v2)")
@click.option("--faiss", "faiss_kind", default="auto", show_default=True,
              help="index kind: flat (exact), hnsw, ivf, or compressed with the shortlist re-scored from float16 "
                   "vectors: ivf-sq8, hnsw-sq8, ivf-pq (4-bit product codes, SIMD scan, re-ranked by 8-bit ones; "
                   "3/32 of flat); auto = flat up to 50k names, hnsw up to 1M where it reaches the recall target (else flat), ivf-pq above; or a FAISS factory string. "
                   "Compressed kinds record their recall against flat in meta.json (linker info)")
@click.option("--calibrate-on", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="compressed kinds: queries to tune and report recall on (a text per line, or a mentions .jsonl); "
                   "default: the index's own names, which overstate the recall mentions get")
@click.option("--scopes", help="comma-separated synonym scopes to keep (LABEL,EXACT,RELATED,BROAD,NARROW; default all)")
@click.option("--preferred-only", is_flag=True, help="index only each concept's preferred name")
@click.option("--subtree", multiple=True, help="OBO: keep only these roots and their descendants (repeatable)")
@click.option("--alt-ids", type=click.Path(path_type=Path, exists=True), help="TSV: alt_id<TAB>concept_id map")
@click.option("--language", "languages", multiple=True, help="UMLS: LAT codes to keep (default ENG)")
@click.option("--sab", "sabs", multiple=True, help="UMLS: source vocabularies to keep (default all)")
@click.option("--batch-size", default=64, type=click.IntRange(min=1), show_default=True)
@click.option("--max-length", type=click.IntRange(min=1), help="tokens per name (default: the model's max_seq_length)")
@click.option("--device", help="torch device for embedding (default: cuda when present, else cpu)")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default=DEFAULT_BUILD_BACKEND, show_default=True,
              help="encoder backend, recorded in the index so queries embed the same way; onnx exports the model "
                   "once (cached) and needs no torch at query time")
@click.option("--precision", type=click.Choice(["float32", "bf16", "int8"]),
              help="embedding precision (default float32); bf16 (torch) is faster on GPUs and on CPUs with native "
                   "bf16 (AVX512-BF16, AMX); int8 (onnx, dynamic quantisation) is faster still but a vector then "
                   "depends slightly on the texts batched with it (docs/speed.md)")
@click.option("--force", is_flag=True, help="rebuild even if the folder holds the same index")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="embed the names here, or on Spark executors (the same index; docs/spark.md)")
@click.option("--master", help="Spark: master URL (default: the running session, else local[*])")
@click.option("--conf", "spark_conf", multiple=True, metavar="KEY=VALUE", help="Spark: a setting (repeatable)")
def build(source: Path | None, out_dir: Path | None, fmt: str | None, model: str | None, faiss_kind: str,
          calibrate_on: Path | None, scopes: str | None, preferred_only: bool, subtree: tuple[str, ...], alt_ids: Path | None,
          languages: tuple[str, ...], sabs: tuple[str, ...], batch_size: int, max_length: int | None,
          device: str | None, backend: str, precision: str | None, force: bool, engine: str, master: str | None,
          spark_conf: tuple[str, ...]) -> None:
    """Build an index folder from an ontology; with no arguments, build the embedded HPO default.

    Interrupted builds resume when the same command is run again.
    """
    from linker import rescoring
    from linker.build import build_index
    from linker.defaults import default_index_dir, hpo_obo_path
    from linker.encoders import load_encoder
    from linker.sources import Source

    if source is None:
        source, fmt = hpo_obo_path(), "obo"
        out_dir = out_dir or default_index_dir()
    if out_dir is None:
        raise click.UsageError("give OUT_DIR, the index folder to write")
    fmt = fmt or None
    options: dict[str, object] = {}
    fmt_resolved = Source.open(source, fmt).format
    if subtree:
        options["subtree"] = list(subtree) if fmt_resolved == "obo" else _bad_option("--subtree", "obo")
    if alt_ids:
        options["alt_ids"] = alt_ids if fmt_resolved == "tsv" else _bad_option("--alt-ids", "tsv")
    if languages or sabs:
        if fmt_resolved != "umls":
            _bad_option("--language/--sab", "umls")
        if languages:
            options["languages"] = list(languages)
        if sabs:
            options["sources"] = list(sabs)
    scope_list = [s.strip().upper() for s in scopes.split(",") if s.strip()] if scopes else None
    calibration = rescoring.read_queries(calibrate_on) if calibrate_on else None
    spark = _spark_options(engine, None, master, None, spark_conf, ())
    embedder = None
    if spark is not None:
        from linker.spark.embed import SparkChunkEmbedder

        embedder = SparkChunkEmbedder(spark)
    encoder = load_encoder(model, backend=backend, precision=precision, batch_size=batch_size,
                           max_length=max_length, device=device)
    folder = build_index(Source.open(source, fmt_resolved, **options), out_dir, encoder=encoder, faiss_kind=faiss_kind,
                         scopes=scope_list, preferred_only=preferred_only, force=force, embedder=embedder,
                         engine=engine, calibration=calibration)
    click.echo(str(folder))


def _settings(pairs: tuple[str, ...]) -> dict[str, object]:
    """``--set KEY=VALUE`` pairs as a dict; VALUE read as JSON, else kept as a string."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE, e.g. threshold=0.8", param_hint="--set")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _bad_option(option: str, fmt: str) -> None:
    raise LinkerError(f"{option} applies to the {fmt} format only")


def _queries(texts: tuple[str, ...]) -> Iterator[str]:
    if texts:
        yield from texts
    else:
        for line in sys.stdin:
            if line.strip():
                yield line.rstrip("\n")


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("-k", default=5, type=click.IntRange(min=1), show_default=True, help="concepts per query")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per query and line")
@click.option("--batch-size", default=256, type=click.IntRange(min=1), show_default=True, help="queries searched together (stdin)")
@click.option("--rank", is_flag=True, help="rank k concepts even for a query that is the name of exactly one concept")
def lookup(texts: tuple[str, ...], index_dir: Path | None, k: int, as_json: bool, batch_size: int, rank: bool) -> None:
    """Rank concepts for each TEXT (or for each line of stdin when no TEXT is given).

    A query that is the name of exactly one concept (after normalisation) is answered with that concept from
    the term dictionary, without loading the model; --rank ranks k concepts for it as well. A query whose best
    score is under the index's NIL threshold (linker calibrate) is flagged as having no confident concept; its
    candidates are still listed."""
    from linker.defaults import open_index
    from linker.linking.nil import read_threshold

    index = open_index(index_dir)
    threshold = read_threshold(index.path)
    batch: list[str] = []
    for query in _queries(texts):
        batch.append(query)
        if len(batch) >= batch_size:
            _print_lookups(index.search(batch, k, skip_unique_exact=not rank), batch, as_json, threshold)
            batch = []
    if batch:
        _print_lookups(index.search(batch, k, skip_unique_exact=not rank), batch, as_json, threshold)


def _print_lookups(results: list, queries: list[str], as_json: bool, threshold: float) -> None:  # type: ignore[type-arg]
    from linker.linking.nil import confident
    from linker.serialize import candidate_to_dict

    for query, candidates in zip(queries, results):
        sure = confident(candidates, threshold)
        if as_json:
            click.echo(json.dumps({"query": query, "confident": sure, "nil_threshold": threshold,
                                   "candidates": [candidate_to_dict(c) for c in candidates]}, ensure_ascii=False))
            continue
        click.echo(query if sure else f"{query}  (no confident concept: best score under {threshold:.3f})")
        for rank, c in enumerate(candidates, start=1):
            via = "" if c.matched_text == c.name else f"  (via {c.matched_text!r})"
            click.echo(f"  {rank:>2}. {c.score:6.3f}  {c.concept_id}  {c.name}{via}")


@cli.command()
@click.argument("mentions", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--alt-ids", "alt_ids", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="alt_id<TAB>concept_id map applied to gold and predicted ids (repeatable)")
@click.option("--type", "types", multiple=True, help="keep only mentions of this type (repeatable), e.g. Disease")
def calibrate(mentions: tuple[Path, ...], index_dir: Path | None, alt_ids: tuple[Path, ...],
              types: tuple[str, ...]) -> None:
    """Choose the index's NIL threshold on annotated DEV MENTIONS (JSONL or PubTator): lookups whose best score
    is under it are flagged as having no confident concept. Writes calibration.json into the index folder."""
    from linker.linking.nil import calibrate as run

    record = run(index_dir, mentions, alt_ids=alt_ids, types=types)
    click.echo(json.dumps({k: record[k] for k in ("threshold", "precision", "recall", "f1", "mentions")}))


@cli.command()
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
def info(index_dir: Path | None) -> None:
    """What an index holds and how it was built (JSON)."""
    from linker.defaults import open_index

    click.echo(json.dumps(open_index(index_dir).info(), indent=2, ensure_ascii=False))


@cli.command()
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
def verify(index_dir: Path | None) -> None:
    """Check every file of an index against the SHA-256 its build recorded, then its vectors against its
    dictionary; exit status 1 when anything is damaged. (Loading an index checks sizes and samples only.)"""
    from linker.defaults import resolve_index_dir
    from linker.index import ConceptIndex
    from linker.integrity import verify as run

    folder = resolve_index_dir(index_dir)
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    results = run(folder, progress=not quiet)
    for name, status in results:
        click.echo(f"{status:>4}  {name}" if status == "ok" else f"  !!  {name}: {status}")
    if any(status != "ok" for _, status in results):
        click.echo(f"{folder} is damaged; rebuild it (linker build … --force)", err=True)
        sys.exit(1)
    index = ConceptIndex.load(folder)
    click.echo(f"  ok  {index.faiss.ntotal} vectors for {index.termdb.count('terms')} terms")


@cli.command()
@click.argument("concept_id")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--json", "as_json", is_flag=True)
def get(concept_id: str, index_dir: Path | None, as_json: bool) -> None:
    """Name, synonyms, definition and parents of a concept (alt and obsolete ids resolve)."""
    from linker.defaults import open_index
    from linker.serialize import card_to_dict

    index = open_index(index_dir)
    card = card_to_dict(index.card(concept_id), index.termdb)
    if concept_id != card["concept_id"]:
        card["resolved_from"] = concept_id
    if as_json:
        click.echo(json.dumps(card, ensure_ascii=False))
        return
    if "resolved_from" in card:
        click.echo(f"{concept_id} -> {card['concept_id']}")
    click.echo(f"{card['concept_id']}  {card['name']}")
    if card["definition"]:
        click.echo(f"  definition: {card['definition']}")
    for synonym in card["synonyms"]:
        kind = f", {synonym['kind']}" if synonym["kind"] else ""
        click.echo(f"  synonym: {synonym['text']} ({synonym['scope']}{kind})")
    for parent in card["parents"]:
        click.echo(f"  parent: {parent['concept_id']}  {parent['name']}")
    if card["types"]:
        click.echo(f"  types: {', '.join(card['types'])}")
    if card["alt_ids"]:
        click.echo(f"  alt ids: {', '.join(card['alt_ids'])}")


@cli.command()
@click.argument("mentions", required=False, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--alt-ids", "alt_ids", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="alt_id<TAB>concept_id map applied to gold and predicted ids (repeatable)")
@click.option("--type", "types", multiple=True, help="keep only mentions of this type (repeatable), e.g. Disease")
@click.option("--docs", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="documents of MENTIONS: also score end to end with the spaCy pipeline")
@click.option("--pairs", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="term1<TAB>term2<TAB>score file: Spearman/Pearson of cosine similarity")
@click.option("--model", help="model folder or hub name to search/embed with (default: the index's model)")
@click.option("--exact", "exact_only", is_flag=True, help="rank by exact normalised string match only (baseline)")
@click.option("-k", default=10, type=click.IntRange(min=1), show_default=True, help="concepts ranked per mention (MRR cut-off)")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), help="write the record here")
@click.option("--pipeline", type=click.Path(path_type=Path, exists=True, file_okay=False), help=PIPELINE_HELP)
def evaluate(mentions: Path | None, index_dir: Path | None, alt_ids: tuple[Path, ...], types: tuple[str, ...],
             docs: Path | None, pairs: Path | None, model: str | None, exact_only: bool, k: int,
             json_out: Path | None, pipeline: Path | None) -> None:
    """Score normalisation of gold MENTIONS (JSONL or PubTator): acc@1, acc@5, MRR; end to end with --docs;
    similarity with --pairs."""
    if docs is not None:
        from linker.spacy_import import import_spacy

        import_spacy(pipeline)
    from linker.evaluate import evaluate as run_evaluation
    from linker.evaluate import format_table

    record = run_evaluation(mentions, index=index_dir, alt_ids=alt_ids, types=types, docs=docs, pairs=pairs,
                            model=model, k=k, exact_only=exact_only, pipeline=pipeline)
    click.echo(format_table(record))
    if json_out is not None:
        json_out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def _input_format(value: str | None) -> str | None:
    from linker.formats import INPUT_FORMATS

    if value is None or value in INPUT_FORMATS or (value.startswith("spark:") and len(value) > len("spark:")):
        return value
    raise click.BadParameter(f"{value!r} is not one of {', '.join(INPUT_FORMATS)} or spark:FORMAT (a Spark reader: "
                             "spark:parquet, spark:csv, spark:json, spark:jdbc …)")


def _spark_options(engine: str, processes: int | None, master: str | None, partitions: int | None,
                   conf: tuple[str, ...], read_options: tuple[str, ...]) -> Any:
    """The Spark options of a command line; Spark options without --engine spark (or -p with it) are refused."""
    spark_given = [name for name, value in (("--master", master), ("--partitions", partitions), ("--conf", conf),
                                            ("--read-option", read_options)) if value]
    if engine != "spark":
        if spark_given:
            raise LinkerError(f"{', '.join(spark_given)} only apply with --engine spark")
        return None
    if processes is not None:
        raise LinkerError("--processes is for the local engine; with --engine spark the slots of --master "
                          "(local[N]) or of the cluster run the tasks")
    from linker.spark.session import SparkOptions, parse_conf

    return SparkOptions(master, partitions, parse_conf(conf), parse_conf(read_options))


@cli.command()
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="output file or folder; format from --to or the suffix "
              "(.jsonl, .pubtator, .xml/.bioc, .sqlite/.db, a folder ending in / for BRAT, .parquet with --engine spark)")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--from", "input_format", callback=lambda ctx, param, value: _input_format(value),
              help="input format: txt, jsonl, csv, tsv, pubtator, bioc (default: from the name; a folder is .txt "
                   "files), or with --engine spark any table Spark reads: spark:parquet, spark:csv, spark:jdbc …")
@click.option("--to", "output_format", type=click.Choice(["jsonl", "pubtator", "bioc", "brat", "sqlite", "parquet"]),
              help="output format (default: from the suffix); parquet needs --engine spark")
@click.option("--id-field", help="JSONL/CSV: field or column of the document id (default: doc_id, id, note_id…)")
@click.option("--text-field", help="JSONL/CSV: field or column of the text (default: text, note_text, body…)")
@click.option("-p", "--processes", type=click.IntRange(min=1), help="worker processes (default: all cores)")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="documents per batch")
@click.option("--include-text", is_flag=True, help="JSONL: repeat each document's text in its line")
@click.option("--candidates", default=5, show_default=True, type=click.IntRange(min=0),
              help="ranked candidates kept per mention (JSONL, SQLite)")
@click.option("--overwrite", is_flag=True, help="start afresh instead of resuming what OUTPUT holds")
@click.option("--pipeline", type=click.Path(path_type=Path, exists=True, file_okay=False), help=PIPELINE_HELP)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="a concept_linker setting (docs/pipeline.md), VALUE in JSON: --set threshold=0.8 "
                   "--set skip_exact=false --set 'types=[\"Disease\"]' (repeatable)")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="local worker processes, or Spark tasks (pip install 'concept-linker[spark]'; docs/spark.md)")
@click.option("--master", help="Spark: master URL, local[N], spark://host:7077, yarn (default: the running "
              "session, else local[*])")
@click.option("--partitions", type=click.IntRange(min=1), help="Spark: parts the input is cut into (default: "
              "~2,000 documents each, at least 8, a multiple of the task slots); a rerun resumes the missing parts")
@click.option("--conf", "spark_conf", multiple=True, metavar="KEY=VALUE", help="Spark: a setting, e.g. "
              "spark.executor.memory=4g (repeatable)")
@click.option("--read-option", "read_options", multiple=True, metavar="KEY=VALUE",
              help="Spark: an option of the --from spark:FORMAT reader, e.g. url=jdbc:… dbtable=notes (repeatable)")
def annotate(input_path: str, output: str, index_dir: Path | None, input_format: str | None,
             output_format: str | None, id_field: str | None, text_field: str | None, processes: int | None,
             batch_size: int, include_text: bool, candidates: int, overwrite: bool, pipeline: Path | None,
             settings: tuple[str, ...], engine: str, master: str | None, partitions: int | None,
             spark_conf: tuple[str, ...], read_options: tuple[str, ...]) -> None:
    """Annotate every document of INPUT into OUTPUT; run the same command again to resume after an interruption.

    Documents that cannot be read or annotated are listed in OUTPUT.errors.jsonl (SQLite: the errors table)
    and the run goes on; the exit status is 1 when any document failed.
    """
    from linker.annotate import annotate as run

    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    spark = _spark_options(engine, processes, master, partitions, spark_conf, read_options)
    try:
        stats = run(input_path, output, index=index_dir, input_format=input_format,
                    output_format_name=output_format, id_field=id_field, text_field=text_field, processes=processes,
                    batch_size=batch_size, include_text=include_text, candidates=candidates, progress=not quiet,
                    overwrite=overwrite, pipeline=pipeline, pipeline_config=_settings(settings), engine=engine,
                    spark=spark)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: what is in {output} is kept; run the same command again to resume", err=True)
        sys.exit(130)
    click.echo(stats.summary(), err=True)
    if stats.failed_total:
        sys.exit(1)


@cli.command()
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (0.0.0.0 exposes the service)")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body", default=1_000_000, show_default=True, help="largest request body in bytes")
@click.option("--max-batch", default=256, type=click.IntRange(min=1), show_default=True, help="most texts in one POST /lookup")
@click.option("--max-annotate", default=100_000, show_default=True, help="most characters of one text to annotate")
@click.option("--read-timeout", default=15.0, type=click.FloatRange(min=0, min_open=True), show_default=True, help="seconds a request body may take to arrive")
@click.option("--pipeline", type=click.Path(path_type=Path, exists=True, file_okay=False), help=PIPELINE_HELP)
def serve(index_dir: Path | None, host: str, port: int, max_body: int, max_batch: int, max_annotate: int,
          read_timeout: float, pipeline: Path | None) -> None:
    """Serve lookup, annotation and concept cards over HTTP (JSON; OpenAPI at /docs and /openapi.json)."""
    from linker.spacy_import import import_spacy

    import_spacy(pipeline)
    from linker.server import ServerLimits
    from linker.server import serve as run

    limits = ServerLimits(max_body=max_body, max_batch=max_batch, max_annotate=max_annotate, read_timeout=read_timeout)
    run(index_dir, host=host, port=port, limits=limits, pipeline=str(pipeline) if pipeline is not None else None)


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--file", "files", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="a UTF-8 text file to render (repeatable)")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), default=Path("linked.html"), show_default=True,
              help="HTML file to write")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--source", "sources", multiple=True, type=click.Choice(["upstream", "dictionary", "dense"]),
              help="mention sources (repeatable; default: the component's)")
@click.option("--threshold", type=click.FloatRange(0, 1), help="score a concept needs to become the link")
def render(texts: tuple[str, ...], files: tuple[Path, ...], out: Path, index_dir: Path | None,
           sources: tuple[str, ...], threshold: float | None) -> None:
    """Write an HTML page (displaCy) of TEXTS or --file documents with linked spans highlighted."""
    from linker.spacy_import import import_spacy

    import_spacy()
    from linker.formats.textdir import read_text_file
    from linker.pipeline import load_pipeline
    from linker.render import render_docs, write_html

    documents = [(None, text) for text in texts] + [(path.name, read_text_file(path)) for path in files]
    if not documents:
        documents = [(None, sys.stdin.read())]
    config: dict[str, object] = {}
    if sources:
        config["sources"] = list(sources)
    if threshold is not None:
        config["threshold"] = threshold
    docs = render_docs(load_pipeline(index_dir, **config), documents)
    click.echo(str(write_html(out, docs, titles=[title for title, _ in documents])))


def main() -> None:
    cli(prog_name="linker")


def _register() -> None:
    from linker.cli_train import train_command, train_mentions, train_pipeline_command

    for command in (train_command, train_mentions, train_pipeline_command):
        cli.add_command(command)


_register()


if __name__ == "__main__":
    main()
