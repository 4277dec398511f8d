"""The settings of the embedding recipe (:func:`linker.train.recipe.train`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from linker.train.pairs import DEFAULT_SCOPES, KINDS

PHASES = ("contrastive", "distill", "soup")
#: settings that may differ between a run and its resumption
RUNTIME_ONLY = ("amp", "device", "threads", "progress", "keep_checkpoints")
#: settings added after runs were recorded, with the value that reproduces those runs: recorded only when they
#: differ from it, so the runs still resume
ADDED_SETTINGS = {"freeze_embeddings": False, "synonym_negatives": 0, "remine_every": 0}


@dataclass
class TrainConfig:
    """Settings of :func:`train`; the defaults suit a CPU run of tens of minutes."""

    base_model: str | None = None
    seed: int = 0
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    #: pair kinds trained on (see :data:`linker.train.pairs.KINDS`)
    kinds: tuple[str, ...] = KINDS
    corpora: tuple[str, ...] = ()
    mention_types: tuple[str, ...] | None = None
    phases: tuple[str, ...] = PHASES
    batch_size: int = 32
    max_length: int = 64
    epochs: int = 1
    #: batches of neighbouring concepts (hard in-batch negatives mined with the base model) instead of random ones
    hard_negatives: bool = True
    #: times each (mention, name) pair of a corpus is planned per epoch; None: as many as make the mention pairs
    #: about *mention_share* of the plan (a corpus gives ~1.5k pairs next to tens of thousands from an ontology)
    mention_repeat: int | None = None
    mention_share: float = 0.3
    #: names of other concepts mined per (mention, name) pair as extra negatives: the base model's nearest
    #: dictionary names to the mention (0 = in-batch negatives only)
    mention_negatives: int = 2
    #: the same for each (name, synonym) pair: names of other concepts nearest to the synonym (the query side).
    #: None: 2 without *corpora*, 0 with. On HPO alone 2 gained 2.1 and 2.8 test points (12 and 20 minutes,
    #: paired z = 2.6 and 3.3), but cost BC5CDR 1.1 points (z = -4.2) in an HPO + MEDIC + corpora run
    #: (docs/training.md)
    synonym_negatives: int | None = None
    #: mine the mention and synonym negatives again every this many phase-1 steps, with the model being trained
    #: (BioSyn updates its candidates each epoch); 0: the base model's negatives serve the whole phase
    remine_every: int = 0
    #: fraction of distinct corpus mention texts held out (never trained on) for the ``val_mentions`` validation
    mention_val_fraction: float = 0.1
    #: peak phase-1 learning rate: 1e-4 suits the packaged MiniLM (2e-4 measured best at 8 minutes, see
    #: docs/training.md); 768-dim base models usually want 2e-5 to 5e-5
    lr: float = 1e-4
    scale: float = 20.0
    #: keep the token embeddings of the base model (half of MiniLM's weights): 23% more steps per minute on
    #: HPO, no accuracy gain measured (docs/training.md)
    freeze_embeddings: bool = False
    #: phase-1 budget; None = no limit (the pair plan is the last limit)
    steps: int | None = None
    pairs: int | None = None
    #: total minutes of phases 1 and 2 (validation included); phase 2 gets *distill_share* of it
    minutes: float | None = None
    distill_share: float = 0.2
    distill_steps: int | None = None
    distill_lr: float = 1e-5
    distill_definition_weight: float = 0.5
    checkpoint_every: int = 200
    keep: int = 4
    val_pool: int = 1000
    val_queries: int = 500
    #: each validation query also ranks against the concepts of its *val_neighbours* nearest names (base model)
    val_neighbours: int = 10
    #: phase-3 weights a of a * soup + (1 - a) * base; 0.5 is left out: in the 4 MEDIC runs where it won the
    #: validation, it tested 0.9 to 2.3 NCBI-disease dev points below a phase-1 or phase-2 model of its run
    interpolations: tuple[float, ...] = (0.75,)
    #: phase 3 replaces the last model by an average only when the average's validation gain is at least
    #: this many paired standard errors (see :func:`~linker.train.evaluate.paired_gain`); 0: the best score wins
    soup_margin: float = 1.0
    amp: str = "auto"
    device: str | None = None
    threads: int | None = None
    progress: bool = True
    #: keep the checkpoint weights (``checkpoints/*.pt``, several hundred MB) once the run is complete; the batch
    #: plans and mined negatives are kept anyway (they are small)
    keep_checkpoints: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
