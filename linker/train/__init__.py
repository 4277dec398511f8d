"""The BioLORD recipe: adapt a sentence-embedding model to an ontology (see :func:`linker.train.recipe.train`)."""

from __future__ import annotations

from linker.train.pairs import Pair, PairSet, build_pairs, split_of
from linker.train.recipe import PHASES, TrainConfig, train

__all__ = ["PHASES", "Pair", "PairSet", "TrainConfig", "build_pairs", "split_of", "train"]
