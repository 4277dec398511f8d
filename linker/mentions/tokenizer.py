"""The tokenizer of the trained mention detector: spaCy's English rules, split further where biomedical
names have boundaries inside what English treats as one word ("(PAN)-induced", "BRCA1/2", "Na+-K+").

The extra patterns are saved with the pipeline (spaCy writes the tokenizer's patterns to disk), so a
pipeline loaded with ``spacy.load`` tokenizes as it was trained, without this module.
"""

from __future__ import annotations

from spacy.language import Language
from spacy.util import compile_infix_regex, compile_suffix_regex

#: infixes: hyphens, slashes, plus signs and brackets between any two characters
EXTRA_INFIXES = (r"[\-\u2010-\u2015/+]", r"[\(\)\[\]]")
#: suffixes: a full stop after a single capital or digit ("type B.", "IVA.")
EXTRA_SUFFIXES = (r"(?<=\b[A-Z0-9])\.",)


def biomedical_tokenizer(nlp: Language) -> Language:
    """Add :data:`EXTRA_INFIXES` and :data:`EXTRA_SUFFIXES` to *nlp*'s tokenizer (in place) and return *nlp*."""
    tokenizer = nlp.tokenizer
    infixes = list(nlp.Defaults.infixes or ()) + list(EXTRA_INFIXES)
    suffixes = list(nlp.Defaults.suffixes or ()) + list(EXTRA_SUFFIXES)
    tokenizer.infix_finditer = compile_infix_regex(infixes).finditer  # type: ignore[attr-defined]
    tokenizer.suffix_search = compile_suffix_regex(suffixes).search  # type: ignore[attr-defined]
    return nlp
