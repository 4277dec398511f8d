"""Mention finders: spans worth linking, each returned as a :class:`Proposal`.

* :func:`upstream_proposals` — the spans already in ``doc.ents`` (another NER, or the trained detector of
  :mod:`linker.train.mentions` placed before the linker in the pipeline);
* :class:`DictionaryMatcher` — ontology names found in the text (:mod:`linker.mentions.dictionary`);
* :func:`dense_spans` — candidate spans for embedding (:mod:`linker.mentions.dense`);
* :func:`arbitrate` — one non-overlapping set out of all of them (:mod:`linker.mentions.arbitration`).

Everything here proposes and chooses spans; :mod:`linker.component` searches, scores and writes.
"""

from linker.mentions.dense import CLAUSE_WORDS, dense_spans
from linker.mentions.dictionary import GENERIC, MODIFIERS, STOP, DictionaryMatcher, WordToken, stem, word_tokens
from linker.mentions.proposal import (ABBREVIATION, DENSE, DICTIONARY, SOURCES, UPSTREAM, Proposal,
                                      upstream_proposals)

__all__ = ["ABBREVIATION", "CLAUSE_WORDS", "DENSE", "DICTIONARY", "GENERIC", "MODIFIERS", "SOURCES", "STOP",
           "UPSTREAM", "DictionaryMatcher", "Proposal", "WordToken", "dense_spans", "stem", "upstream_proposals",
           "word_tokens"]
