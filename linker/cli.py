"""The ``linker`` command: thin verbs over the library; a :class:`LinkerError` becomes a message and exit status 2."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from linker.errors import LinkerError

log = logging.getLogger("linker")
INDEX_HELP = "index folder (default: the embedded HPO index, built on first use)"


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except LinkerError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("-q", "--quiet", is_flag=True, help="only warnings and errors")
def cli(verbose: int, quiet: bool) -> None:
    """Link biomedical text to ontology concepts with sentence embeddings."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        logging.getLogger("faiss").setLevel(logging.WARNING)


@cli.command()
@click.argument("source", required=False, type=click.Path(path_type=Path))
@click.argument("out_dir", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["obo", "umls", "tsv", "jsonl", "ctd"]), help="ontology format (default: from the name)")
@click.option("--model", help="model folder or hub name (default: the packaged all-MiniLM-L6-v2)")
@click.option("--faiss", "faiss_kind", default="flat", show_default=True, help="flat, hnsw, ivf or a FAISS factory string")
@click.option("--scopes", help="comma-separated synonym scopes to keep (LABEL,EXACT,RELATED,BROAD,NARROW; default all)")
@click.option("--preferred-only", is_flag=True, help="index only each concept's preferred name")
@click.option("--subtree", multiple=True, help="OBO: keep only these roots and their descendants (repeatable)")
@click.option("--alt-ids", type=click.Path(path_type=Path, exists=True), help="TSV: alt_id<TAB>concept_id map")
@click.option("--language", "languages", multiple=True, help="UMLS: LAT codes to keep (default ENG)")
@click.option("--sab", "sabs", multiple=True, help="UMLS: source vocabularies to keep (default all)")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--max-length", type=int, help="tokens per name (default: the model's max_seq_length)")
@click.option("--device", help="torch device for embedding (default: cuda when present, else cpu)")
@click.option("--precision", type=click.Choice(["float32", "bf16"]), default="float32", show_default=True,
              help="embedding precision, recorded in the index so queries embed the same way; bf16 is faster on "
                   "GPUs and on CPUs with native bf16 (AVX512-BF16, AMX)")
@click.option("--force", is_flag=True, help="rebuild even if the folder holds the same index")
def build(source: Path | None, out_dir: Path | None, fmt: str | None, model: str | None, faiss_kind: str,
          scopes: str | None, preferred_only: bool, subtree: tuple[str, ...], alt_ids: Path | None,
          languages: tuple[str, ...], sabs: tuple[str, ...], batch_size: int, max_length: int | None,
          device: str | None, precision: str, force: bool) -> None:
    """Build an index folder from an ontology; with no arguments, build the embedded HPO default.

    Interrupted builds resume when the same command is run again.
    """
    from linker.build import build_index
    from linker.defaults import default_index_dir, hpo_obo_path
    from linker.encoder import load_encoder
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
    encoder = load_encoder(model, batch_size=batch_size, max_length=max_length, device=device, precision=precision)
    folder = build_index(Source.open(source, fmt_resolved, **options), out_dir, encoder=encoder, faiss_kind=faiss_kind,
                         scopes=scope_list, preferred_only=preferred_only, force=force)
    click.echo(str(folder))


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
@click.option("-k", default=5, show_default=True, help="concepts per query")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per query and line")
@click.option("--batch-size", default=256, show_default=True, help="queries searched together (stdin)")
def lookup(texts: tuple[str, ...], index_dir: Path | None, k: int, as_json: bool, batch_size: int) -> None:
    """Rank concepts for each TEXT (or for each line of stdin when no TEXT is given)."""
    from linker.defaults import open_index

    index = open_index(index_dir)
    batch: list[str] = []
    for query in _queries(texts):
        batch.append(query)
        if len(batch) >= batch_size:
            _print_lookups(index.search(batch, k), batch, as_json)
            batch = []
    if batch:
        _print_lookups(index.search(batch, k), batch, as_json)


def _print_lookups(results: list, queries: list[str], as_json: bool) -> None:  # type: ignore[type-arg]
    from linker.serialize import candidate_to_dict

    for query, candidates in zip(queries, results):
        if as_json:
            click.echo(json.dumps({"query": query, "candidates": [candidate_to_dict(c) for c in candidates]},
                                  ensure_ascii=False))
            continue
        click.echo(query)
        for rank, c in enumerate(candidates, start=1):
            via = "" if c.matched_text == c.name else f"  (via {c.matched_text!r})"
            click.echo(f"  {rank:>2}. {c.score:6.3f}  {c.concept_id}  {c.name}{via}")


@cli.command()
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
def info(index_dir: Path | None) -> None:
    """What an index holds and how it was built (JSON)."""
    from linker.defaults import open_index

    click.echo(json.dumps(open_index(index_dir).info(), indent=2, ensure_ascii=False))


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
@click.option("-k", default=10, show_default=True, help="concepts ranked per mention (MRR cut-off)")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), help="write the record here")
def evaluate(mentions: Path | None, index_dir: Path | None, alt_ids: tuple[Path, ...], types: tuple[str, ...],
             docs: Path | None, pairs: Path | None, model: str | None, exact_only: bool, k: int,
             json_out: Path | None) -> None:
    """Score normalisation of gold MENTIONS (JSONL or PubTator): acc@1, acc@5, MRR; end to end with --docs;
    similarity with --pairs."""
    from linker.evaluate import evaluate as run_evaluation
    from linker.evaluate import format_table

    record = run_evaluation(mentions, index=index_dir, alt_ids=alt_ids, types=types, docs=docs, pairs=pairs,
                            model=model, k=k, exact_only=exact_only)
    click.echo(format_table(record))
    if json_out is not None:
        json_out.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path, exists=True))
@click.option("-o", "--output", required=True, help="output file or folder; format from --to or the suffix "
              "(.jsonl, .pubtator, .xml/.bioc, .sqlite/.db, a folder ending in / for BRAT)")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--from", "input_format", type=click.Choice(["txt", "jsonl", "csv", "tsv", "pubtator", "bioc"]),
              help="input format (default: from the name; a folder is .txt files)")
@click.option("--to", "output_format", type=click.Choice(["jsonl", "pubtator", "bioc", "brat", "sqlite"]),
              help="output format (default: from the suffix)")
@click.option("--id-field", help="JSONL/CSV: field or column of the document id (default: doc_id, id, note_id…)")
@click.option("--text-field", help="JSONL/CSV: field or column of the text (default: text, note_text, body…)")
@click.option("-p", "--processes", type=click.IntRange(min=1), help="worker processes (default: all cores)")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="documents per batch")
@click.option("--include-text", is_flag=True, help="JSONL: repeat each document's text in its line")
@click.option("--candidates", default=5, show_default=True, type=click.IntRange(min=0),
              help="ranked candidates kept per mention (JSONL, SQLite)")
@click.option("--overwrite", is_flag=True, help="start afresh instead of resuming what OUTPUT holds")
def annotate(input_path: Path, output: str, index_dir: Path | None, input_format: str | None,
             output_format: str | None, id_field: str | None, text_field: str | None, processes: int | None,
             batch_size: int, include_text: bool, candidates: int, overwrite: bool) -> None:
    """Annotate every document of INPUT into OUTPUT; run the same command again to resume after an interruption.

    Documents that cannot be read or annotated are listed in OUTPUT.errors.jsonl (SQLite: the errors table)
    and the run goes on; the exit status is 1 when any document failed.
    """
    from linker.annotate import annotate as run

    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    try:
        stats = run(input_path, output, index=index_dir, input_format=input_format,
                    output_format_name=output_format, id_field=id_field, text_field=text_field, processes=processes,
                    batch_size=batch_size, include_text=include_text, candidates=candidates, progress=not quiet,
                    overwrite=overwrite)
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
@click.option("--max-batch", default=256, show_default=True, help="most texts in one POST /lookup")
def serve(index_dir: Path | None, host: str, port: int, max_body: int, max_batch: int) -> None:
    """Serve lookup, annotation and concept cards over HTTP (JSON; OpenAPI at /docs and /openapi.json)."""
    from linker.server import ServerLimits, serve as run

    run(index_dir, host=host, port=port, limits=ServerLimits(max_body=max_body, max_batch=max_batch))


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--file", "files", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="a UTF-8 text file to render (repeatable)")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), default=Path("linked.html"), show_default=True,
              help="HTML file to write")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help=INDEX_HELP)
@click.option("--source", "sources", multiple=True, type=click.Choice(["upstream", "dictionary", "dense"]),
              help="mention sources (repeatable; default: the component's)")
@click.option("--threshold", type=float, help="score a concept needs to become the link")
def render(texts: tuple[str, ...], files: tuple[Path, ...], out: Path, index_dir: Path | None,
           sources: tuple[str, ...], threshold: float | None) -> None:
    """Write an HTML page (displaCy) of TEXTS or --file documents with linked spans highlighted."""
    from linker.pipeline import load_pipeline
    from linker.render import write_html

    documents = [(None, text) for text in texts] + [(path.name, path.read_text(encoding="utf-8")) for path in files]
    if not documents:
        documents = [(None, sys.stdin.read())]
    config: dict[str, object] = {}
    if sources:
        config["sources"] = list(sources)
    if threshold is not None:
        config["threshold"] = threshold
    nlp = load_pipeline(index_dir, **config)
    docs = list(nlp.pipe(text for _, text in documents))
    click.echo(str(write_html(out, docs, titles=[title for title, _ in documents])))


@cli.command("train")
@click.argument("ontologies", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="output folder (the trained model)")
@click.option("--base-model", help="model folder or hub name to start from (default: the packaged all-MiniLM-L6-v2)")
@click.option("--format", "fmt", type=click.Choice(["obo", "umls", "tsv", "jsonl", "ctd"]),
              help="ontology format of every ONTOLOGY and --extra-ontology (default: from each name)")
@click.option("--extra-ontology", "extra_ontologies", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="ontology trained on whole, none of its concepts held out: extra synonyms and definitions "
                   "(e.g. MEDIC beside HPO); texts of held-out ONTOLOGIES concepts stay out (repeatable)")
@click.option("--corpus", "corpora", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="annotated TRAIN mentions (*.mentions.jsonl) for (mention, name) pairs (repeatable)")
@click.option("--mention-type", "mention_types", multiple=True, help="keep only corpus mentions of this type (repeatable)")
@click.option("--kinds", default="synonym,definition,description,mention", show_default=True,
              help="comma-separated pair kinds to train on")
@click.option("--phases", default="contrastive,distill,soup", show_default=True, help="comma-separated phases to run")
@click.option("--steps", type=int, help="budget: phase-1 optimiser steps")
@click.option("--pairs", "max_pairs", type=int, help="budget: phase-1 pairs seen")
@click.option("--minutes", type=float, help="budget: minutes of phases 1+2 (validation included)")
@click.option("--distill-steps", type=int, help="budget: phase-2 steps (default: a share of --steps)")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=2),
              help="pairs per step (each pair's in-batch negatives are the others)")
@click.option("--lr", default=1e-4, show_default=True,
              help="peak phase-1 learning rate (MiniLM; use 2e-5 to 5e-5 for 768-dim base models)")
@click.option("--epochs", default=1, show_default=True, help="passes over the pairs planned for phase 1")
@click.option("--hard-negatives/--random-batches", default=True, show_default=True,
              help="fill each batch with neighbouring concepts (mined with the base model) or with random ones")
@click.option("--freeze-embeddings/--train-embeddings", default=False, show_default=True,
              help="keep the base model's token embeddings: fewer weights to update (23% more steps per minute "
                   "with MiniLM), no accuracy gain measured")
@click.option("--mention-repeat", type=int,
              help="times each --corpus (mention, name) pair is planned per epoch (default: from --mention-share)")
@click.option("--mention-share", default=0.3, show_default=True,
              help="without --mention-repeat, plan each mention pair as often as makes mention pairs this share "
                   "of an epoch")
@click.option("--mention-negatives", default=2, show_default=True,
              help="dictionary names of other concepts, nearest to each --corpus mention under the base model, "
                   "added as its negatives (0: in-batch negatives only)")
@click.option("--synonym-negatives", type=int,
              help="dictionary names of other concepts, nearest to each (name, synonym) pair's synonym under the "
                   "base model, added as its negatives (default: 2 without --corpus, 0 with; 2 helped HPO alone, "
                   "hurt BC5CDR beside MEDIC synonyms)")
@click.option("--remine-every", default=0, show_default=True,
              help="mine the mention and synonym negatives again every this many phase-1 steps, with the model "
                   "being trained (0: the base model's negatives for the whole phase)")
@click.option("--max-length", default=64, show_default=True, help="tokens per text")
@click.option("--checkpoint-every", default=200, show_default=True, help="steps between checkpoints (and validations)")
@click.option("--holdout", default=0.05, show_default=True, help="fraction of concepts held out for validation "
              "(and the same again for test)")
@click.option("--mention-holdout", default=0.1, show_default=True,
              help="fraction of the --corpus mention texts seen once that are held out (not trained on as "
                   "mentions) to validate on")
@click.option("--soup-margin", default=1.0, show_default=True,
              help="phase 3 keeps a weight average only if its validation gain over the last model reaches this "
                   "many paired standard errors (0: the best validation score wins)")
@click.option("--interpolations", default="0.75", show_default=True,
              help="phase-3 weights a of the candidates a * soup + (1 - a) * base, comma-separated ('' for none)")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=int, help="torch CPU threads")
@click.option("--device", help="cpu, cuda, cuda:1… (default: cuda when present)")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto", show_default=True,
              help="mixed precision; auto: bf16/fp16 on CUDA, bf16 on a CPU with native bf16 (AVX512-BF16, AMX), "
                   "else off")
def train_command(ontologies: tuple[Path, ...], out_dir: Path, base_model: str | None, fmt: str | None,
                  extra_ontologies: tuple[Path, ...], corpora: tuple[Path, ...], mention_types: tuple[str, ...],
                  kinds: str, phases: str, steps: int | None,
                  max_pairs: int | None, minutes: float | None, distill_steps: int | None, batch_size: int, lr: float,
                  epochs: int, hard_negatives: bool, freeze_embeddings: bool,
                  mention_repeat: int | None, mention_share: float,
                  mention_negatives: int, synonym_negatives: int | None, remine_every: int, max_length: int,
                  checkpoint_every: int, holdout: float, mention_holdout: float, soup_margin: float,
                  interpolations: str, seed: int,
                  threads: int | None, device: str | None, amp: str) -> None:
    """Adapt an embedding model to ONTOLOGIES (BioLORD recipe); OUT is a model folder for `linker build --model`.

    Run the same command again to resume an interrupted run.
    """
    from linker.sources import Source
    from linker.train import TrainConfig, train

    config = TrainConfig(
        base_model=base_model, seed=seed, val_fraction=holdout, test_fraction=holdout,
        corpora=tuple(str(c) for c in corpora), mention_types=tuple(mention_types) or None,
        kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
        phases=tuple(p.strip() for p in phases.split(",") if p.strip()), batch_size=batch_size, max_length=max_length,
        epochs=epochs, hard_negatives=hard_negatives, freeze_embeddings=freeze_embeddings,
        mention_repeat=mention_repeat, mention_share=mention_share, mention_negatives=mention_negatives,
        synonym_negatives=synonym_negatives, remine_every=remine_every, mention_val_fraction=mention_holdout,
        lr=lr, steps=steps, pairs=max_pairs,
        minutes=minutes, distill_steps=distill_steps, checkpoint_every=checkpoint_every, soup_margin=soup_margin,
        interpolations=_interpolation_weights(interpolations), threads=threads, device=device, amp=amp)
    click.echo(str(train([Source.open(path, fmt) for path in ontologies], out_dir, config,
                         extra_sources=[Source.open(path, fmt) for path in extra_ontologies])))


def _interpolation_weights(text: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give weights between 0 and 1, comma-separated (e.g. 0.75,0.5)",
                                 param_hint="--interpolations") from None
    if any(not 0.0 < w < 1.0 for w in weights):
        raise click.BadParameter(f"{text!r}: each weight must lie strictly between 0 and 1",
                                 param_hint="--interpolations")
    return weights


def main() -> None:
    cli(prog_name="linker")


if __name__ == "__main__":
    main()
