"""CLI verbs that train: the embedding recipe and the mention detector (registered on :data:`linker.cli.cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

CORPUS_HELP = ("annotated documents: NAME.docs.jsonl with NAME.mentions.jsonl beside it, PubTator, or BioC XML "
               "(repeatable)")


@click.command("train-mentions")
@click.argument("corpora", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="output folder: a spaCy pipeline (spacy.load(OUT)); the same command again resumes")
@click.option("--kind", type=click.Choice(["transformer", "cnn"]), default="transformer", show_default=True,
              help="transformer: a token-classification head fine-tuned with --base-model; cnn: spaCy's ner "
                   "(hash embeddings + CNN), faster, less accurate")
@click.option("--dev", "dev", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="annotated documents to choose the checkpoint on (default: --dev-fraction of the training "
                   "documents, held out)")
@click.option("--dev-fraction", default=0.1, type=click.FloatRange(0, 1, min_open=True, max_open=True), show_default=True, help="share of CORPORA held out without --dev")
@click.option("--weak", "weak_index", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="no annotated corpus: CORPORA are unlabelled documents (any annotate input format), labelled by "
                   "the dictionary of this index (see --weak-contexts)")
@click.option("--weak-contexts", default=0,  # DetectorData.weak_contexts; importing it here would import torch
              show_default=True, type=click.IntRange(min=0),
              help="with --weak: copies of each labelled document with other names of the ontology in its "
                   "mentions (PhenoTagger-style; measured worse than none on NCBI-disease and BC5CDR dev)")
@click.option("--type", "types", multiple=True, help="learn only spans of this type (repeatable; default: all)")
@click.option("--exclude-type", "exclude_types", multiple=True,
              help="leave spans of this type out (repeatable), e.g. Chemical to learn BC5CDR diseases only")
@click.option("--label", help="one label for every kept span (e.g. Disease for NCBI-disease's four types)")
@click.option("--steps", type=click.IntRange(min=1), help="budget: optimiser steps (default: --minutes only)")
@click.option("--minutes", default=25.0, type=click.FloatRange(min=0, min_open=True), show_default=True,
              help="budget: minutes of training, set-up not counted; the first of --steps, --minutes and "
                   "(transformer) --epochs stops it")
@click.option("--eval-every", default=200, show_default=True, type=click.IntRange(min=1),
              help="steps between evaluations on the dev documents (each also a checkpoint)")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="peak learning rate (default: 5e-5 transformer, 0.001 cnn)")
@click.option("--seed", default=0, show_default=True)
@click.option("--base-model", help="transformer: model folder or hub name (default: the packaged all-MiniLM-L6-v2)")
@click.option("--layers", type=click.IntRange(min=1),
              help="transformer: keep the base model's first N layers (default: all); fewer run faster and "
                   "train more steps in the same minutes")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1), help="transformer: passes planned")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="transformer: windows per step")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=16),
              help="transformer: sub-words per window (long texts are read in overlapping windows)")
@click.option("--shape/--no-shape", default=True, show_default=True,
              help="transformer: add each word's shape (lower, Title, CAPS, digits) to its sub-words; the packaged "
                   "MiniLM is uncased and would not see 'HFE' from 'hfe' otherwise")
@click.option("--lexicon", type=click.Path(path_type=Path, exists=True),
              help="transformer: an index folder or ontology file whose names found in the text (B/I/O) are a "
                   "feature of each sub-word (TaggerOne/PhenoTagger-style lexicon features)")
@click.option("--width", default=128, show_default=True, type=click.IntRange(min=8), help="cnn: token vector width")
@click.option("--depth", default=4, show_default=True, type=click.IntRange(min=1), help="cnn: layers")
@click.option("--embed-rows", default=10000, show_default=True, type=click.IntRange(min=100),
              help="cnn: hash-embedding rows of the NORM attribute (prefix/suffix/shape get a share)")
@click.option("--dropout", default=0.1, type=click.FloatRange(0, 1, max_open=True), show_default=True, help="cnn: dropout")
def train_mentions(corpora: tuple[Path, ...], out_dir: Path, kind: str, dev: tuple[Path, ...], dev_fraction: float,
                   weak_index: Path | None, weak_contexts: int, types: tuple[str, ...], exclude_types: tuple[str, ...], label: str | None, steps: int | None,
                   minutes: float, eval_every: int, lr: float | None, seed: int, base_model: str | None,
                   layers: int | None, epochs: int,
                   batch_size: int, max_length: int, shape: bool, lexicon: Path | None, width: int, depth: int,
                   embed_rows: int, dropout: float) -> None:
    """Train a mention detector on annotated CORPORA (or, with --weak, unlabelled ones) into OUT (a spaCy pipeline).

    Use it in front of the linker with `--pipeline OUT` (annotate, evaluate, serve) or spacy.load(OUT).
    """
    common = {"corpora": [str(c) for c in corpora], "dev": [str(d) for d in dev], "types": list(types),
              "exclude_types": list(exclude_types), "label": label, "seed": seed, "steps": steps, "minutes": minutes,
              "eval_every": eval_every, "dev_fraction": dev_fraction,
              "weak": str(weak_index) if weak_index is not None else None, "weak_contexts": weak_contexts}
    if kind == "transformer":
        from linker.train.tagger import TaggerConfig, train_tagger

        result = train_tagger(out_dir, TaggerConfig(**common, base_model=base_model, layers=layers, epochs=epochs,
                                                    batch_size=batch_size, max_length=max_length, lr=lr or 5e-5,
                                                    shape=shape, lexicon=str(lexicon) if lexicon else None))
        summary = {"steps": result["steps"], "seconds": result["seconds"], "best": result["best"]}
    else:
        from linker.train.mentions import DetectorConfig, train_detector

        state = train_detector(out_dir, DetectorConfig(**common, width=width, depth=depth, embed_rows=embed_rows,
                                                       dropout=dropout, learn_rate=lr or 0.001))
        best = state.get("best") or {}
        summary = {"steps": state["step"], "seconds": state["seconds"],
                   "best": {k: best.get(k) for k in ("step", "ents_p", "ents_r", "ents_f")}}
    click.echo(json.dumps({"out": str(out_dir), "kind": kind, **summary}))


@click.command("train")
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
@click.option("--steps", type=click.IntRange(min=1), help="budget: phase-1 optimiser steps")
@click.option("--pairs", "max_pairs", type=click.IntRange(min=1), help="budget: phase-1 pairs seen")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True),
              help="budget: minutes of training in phases 1+2, validation included; phase 2 gets a fifth. Set-up "
                   "(reading, embedding every name with the base model, mining negatives: minutes on a large "
                   "ontology, shown on their own lines) and phase 3 come on top")
@click.option("--keep-checkpoints", is_flag=True,
              help="keep the checkpoint weights once the run is complete (by default only the final model, the "
                   "phase models and the small plan files stay)")
@click.option("--distill-steps", type=click.IntRange(min=0), help="budget: phase-2 steps (default: a share of --steps)")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=2),
              help="pairs per step (each pair's in-batch negatives are the others)")
@click.option("--lr", default=1e-4, show_default=True,
              help="peak phase-1 learning rate (MiniLM; use 2e-5 to 5e-5 for 768-dim base models)")
@click.option("--epochs", default=1, type=click.IntRange(min=1), show_default=True, help="passes over the pairs planned for phase 1")
@click.option("--hard-negatives/--random-batches", default=True, show_default=True,
              help="fill each batch with neighbouring concepts (mined with the base model) or with random ones")
@click.option("--freeze-embeddings/--train-embeddings", default=False, show_default=True,
              help="keep the base model's token embeddings: fewer weights to update (23% more steps per minute "
                   "with MiniLM), no accuracy gain measured")
@click.option("--mention-repeat", type=click.IntRange(min=0),
              help="times each --corpus (mention, name) pair is planned per epoch (default: from --mention-share)")
@click.option("--mention-share", default=0.3, type=click.FloatRange(0, 1), show_default=True,
              help="without --mention-repeat, plan each mention pair as often as makes mention pairs this share "
                   "of an epoch")
@click.option("--mention-negatives", default=2, type=click.IntRange(min=0), show_default=True,
              help="dictionary names of other concepts, nearest to each --corpus mention under the base model, "
                   "added as its negatives (0: in-batch negatives only)")
@click.option("--synonym-negatives", type=click.IntRange(min=0),
              help="dictionary names of other concepts, nearest to each (name, synonym) pair's synonym under the "
                   "base model, added as its negatives (default: 2 without --corpus, 0 with; 2 helped HPO alone, "
                   "hurt BC5CDR beside MEDIC synonyms)")
@click.option("--remine-every", default=0, type=click.IntRange(min=0), show_default=True,
              help="mine the mention and synonym negatives again every this many phase-1 steps, with the model "
                   "being trained (0: the base model's negatives for the whole phase)")
@click.option("--max-length", default=64, type=click.IntRange(min=1), show_default=True, help="tokens per text")
@click.option("--checkpoint-every", default=200, type=click.IntRange(min=1), show_default=True, help="steps between checkpoints (and validations)")
@click.option("--holdout", default=0.05, type=click.FloatRange(0, 1, max_open=True), show_default=True, help="fraction of concepts held out for validation "
              "(and the same again for test)")
@click.option("--mention-holdout", default=0.1, type=click.FloatRange(0, 1, max_open=True), show_default=True,
              help="fraction of the --corpus mention texts seen once that are held out (not trained on as "
                   "mentions) to validate on")
@click.option("--soup-margin", default=1.0, type=click.FloatRange(min=0), show_default=True,
              help="phase 3 keeps a weight average only if its validation gain over the last model reaches this "
                   "many paired standard errors (0: the best validation score wins)")
@click.option("--interpolations", default="0.75", show_default=True,
              help="phase-3 weights a of the candidates a * soup + (1 - a) * base, comma-separated ('' for none)")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads")
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
                  interpolations: str, seed: int, keep_checkpoints: bool,
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
        interpolations=_interpolation_weights(interpolations), threads=threads, device=device, amp=amp,
        keep_checkpoints=keep_checkpoints)
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


@click.command("train-pipeline")
@click.argument("ontology", type=click.Path(path_type=Path, exists=True))
@click.option("--corpus", "corpora", multiple=True, required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False), help="TRAIN " + CORPUS_HELP)
@click.option("--dev", "dev", multiple=True, required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="DEV annotated documents on which the linker's settings are chosen (repeatable)")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="the pipeline folder to write (the same command again resumes)")
@click.option("--format", "fmt", type=click.Choice(["obo", "umls", "tsv", "jsonl", "ctd"]),
              help="ontology format (default: from the name)")
@click.option("--type", "types", multiple=True, help="corpus types to learn and score (repeatable; default: all)")
@click.option("--exclude-type", "exclude_types", multiple=True, help="corpus types to leave out (repeatable)")
@click.option("--label", help="one entity label for every kept type (e.g. Disease)")
@click.option("--alt-ids", "alt_ids", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="alt_id<TAB>concept_id map applied to the corpora's ids (mention memory) and when scoring on "
                   "dev (repeatable)")
@click.option("--embedding-minutes", default=45.0, type=click.FloatRange(min=0, min_open=True), show_default=True,
              help="budget of the embedding recipe (linker train --minutes: phases 1+2, set-up not counted)")
@click.option("--detector-minutes", default=25.0, type=click.FloatRange(min=0, min_open=True), show_default=True,
              help="budget of the mention detector (linker train-mentions --minutes; set-up not counted)")
@click.option("--detector-kind", type=click.Choice(["transformer", "cnn"]), default="transformer", show_default=True,
              help="the mention detector trained (linker train-mentions --kind)")
@click.option("--detector-layers", type=click.IntRange(min=1),
              help="transformer detector: keep the base model's first N layers (linker train-mentions --layers; "
                   "default: all)")
@click.option("--lexicon/--no-lexicon", default=True, show_default=True,
              help="transformer detector: the ontology's names found in the text are a feature of each sub-word")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="link a span whose text the corpora annotate by the concept most of those annotations give")
@click.option("--refit/--no-refit", default=False, show_default=True,
              help="once the settings are chosen on --dev, train the detector and the mention memory again on the "
                   "corpora and the --dev documents together (the final fit; its figures on --dev are then not "
                   "held out)")
@click.option("--detector", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="reuse a detector trained by linker train-mentions instead of training one")
@click.option("--model", help="reuse an embedding model (a linker train output) instead of training one")
@click.option("--seed", default=0, show_default=True)
def train_pipeline_command(ontology: Path, corpora: tuple[Path, ...], dev: tuple[Path, ...], out_dir: Path,
                           fmt: str | None, types: tuple[str, ...], exclude_types: tuple[str, ...], label: str | None,
                           alt_ids: tuple[Path, ...], embedding_minutes: float, detector_minutes: float,
                           detector_kind: str, detector_layers: int | None, lexicon: bool, memory: bool,
                           refit: bool, detector: Path | None, model: str | None, seed: int) -> None:
    """Train the embedding model and the mention detector, build the index and choose the linker's settings on
    --dev: one spaCy pipeline folder OUT (spacy.load(OUT), or --pipeline OUT for annotate, evaluate, serve)."""
    from linker.train.pipeline import PipelineConfig, train_pipeline

    config = PipelineConfig(ontology=str(ontology), corpora=[str(c) for c in corpora], dev=[str(d) for d in dev],
                            out=str(out_dir), ontology_format=fmt, types=list(types), exclude_types=list(exclude_types),
                            label=label, alt_ids=[str(a) for a in alt_ids], detector=str(detector) if detector else None,
                            model=model, embedding_minutes=embedding_minutes, detector_minutes=detector_minutes,
                            detector_kind=detector_kind, detector_layers=detector_layers, lexicon=lexicon,
                            memory=memory, refit=refit, seed=seed)
    click.echo(str(train_pipeline(config)))
