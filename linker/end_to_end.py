"""End-to-end evaluation: find and link mentions in annotated documents with a spaCy pipeline and score them
(mention-level strict and overlap P/R/F1 per gold type, and the document-level concept measure of the
BioCreative V CDR disease task; :mod:`linker.metrics`).

:func:`evaluate_end_to_end` runs the whole pipeline. A sweep over the linker's settings (``linker
train-pipeline``) need not run the mention detector again for every setting, since the detector's spans do not
depend on them and are most of the pipeline's time: :func:`detect` runs the components before
``concept_linker`` once, and :func:`evaluate_detected` runs each setting's linker (and whatever follows it) on
copies of those Docs. Both give the figures :func:`evaluate_end_to_end` gives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from spacy.language import Language
from spacy.tokens import Doc

from linker.errors import LinkerError
from linker.extensions import pipe_texts
from linker.gold import GoldMention, read_documents

if TYPE_CHECKING:
    from linker.evaluate import IdMapper

COMPONENT = "concept_linker"


def annotated_documents(docs: str | os.PathLike[str], gold: Sequence[GoldMention]) -> list[Any]:
    """The documents of *docs*, checked to hold every document the gold mentions name."""
    documents = read_documents(docs)
    missing = sorted({m.doc_id for m in gold} - {d.doc_id for d in documents})
    if missing:
        raise LinkerError(f"{docs}: {len(missing)} document(s) of the gold mentions are missing (e.g. {missing[0]}); "
                          "pass the documents file that goes with the mentions")
    return documents


def _linker_at(nlp: Language) -> int:
    """Where ``concept_linker`` is in *nlp* (after the last component when there is none)."""
    return nlp.pipe_names.index(COMPONENT) if COMPONENT in nlp.pipe_names else len(nlp.pipe_names)


def detect(nlp: Language, documents: Sequence[Any]) -> list[Doc]:
    """The documents through the components of *nlp* that come before ``concept_linker`` (tokenizer, detector;
    all of them in a pipeline without the linker, such as a detector folder)."""
    with nlp.select_pipes(enable=nlp.pipe_names[:_linker_at(nlp)]):
        return list(pipe_texts(nlp, (d.text for d in documents)))


def _link(nlp: Language, detected: Sequence[Doc]) -> Iterator[Doc]:
    """Copies of *detected* through ``concept_linker`` and the components after it."""
    docs: Iterator[Doc] = (doc.copy() for doc in detected)
    for _, component in nlp.pipeline[_linker_at(nlp):]:
        docs = component.pipe(docs) if hasattr(component, "pipe") else map(component, docs)
    return docs


def _open(index: Any, config: Mapping[str, Any], pipeline: str | os.PathLike[str] | None, *,
          linker_only: bool = False) -> Language:
    """The pipeline with *config*, its linker given the *index* already open here, warmed up (the linker alone
    with *linker_only*: the components before it need not load)."""
    from linker.pipeline import load_pipeline

    nlp = load_pipeline(index.path, pipeline=pipeline, **config)
    component = nlp.get_pipe(COMPONENT)
    if hasattr(component, "set_index"):
        component.set_index(index)  # the index (and encoder) already open here
    if linker_only:  # loading is not annotating: docs/s counts the pipeline's work only
        list(_link(nlp, [nlp.make_doc("warm up: fever")]))
    else:
        nlp("warm up: fever")
    return nlp


def evaluate_end_to_end(docs: str | os.PathLike[str], gold: Sequence[GoldMention], index: Any, mapper: IdMapper,
                        config: Mapping[str, Any], *, pipeline: str | os.PathLike[str] | None = None
                        ) -> dict[str, Any]:
    """Find and link mentions in *docs* with the spaCy pipeline (:func:`linker.pipeline.load_pipeline`);
    P/R/F1 of (span, concept), strict and overlapping, per gold type, and the document-level concept
    measure of the BioCreative V CDR task (:mod:`linker.metrics`).

    Gold mentions without any id are left out (nothing could match them); gold ids absent from the index
    stay in (they count against recall, as they would for any system). A prediction is the mention's
    ``concept_id`` (its best concept when it passed the linker's threshold); the predictions carry no type,
    so per-type rows report recall only (precision and F1 are None).
    """
    documents = annotated_documents(docs, gold)
    nlp = _open(index, config, pipeline)
    started = time.perf_counter()
    processed = list(pipe_texts(nlp, (d.text for d in documents)))
    return _score(documents, processed, gold, mapper, time.perf_counter() - started,
                  {"pipeline": str(pipeline) if pipeline is not None else None, "pipeline_config": dict(config)})


def evaluate_detected(detected: Sequence[Doc], documents: Sequence[Any], gold: Sequence[GoldMention],
                      index: Any, mapper: IdMapper, config: Mapping[str, Any], *,
                      pipeline: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """:func:`evaluate_end_to_end` of *pipeline* with *config* on Docs that its components before the linker
    have already processed (:func:`detect`); docs/s counts the linker's work alone."""
    nlp = _open(index, config, pipeline, linker_only=True)
    started = time.perf_counter()
    processed = list(_link(nlp, detected))
    return _score(documents, processed, gold, mapper, time.perf_counter() - started,
                  {"pipeline": str(pipeline) if pipeline is not None else None, "pipeline_config": dict(config),
                   "detected_once": True})


def _score(documents: Sequence[Any], processed: Sequence[Doc], gold: Sequence[GoldMention], mapper: IdMapper,
           seconds: float, about: dict[str, Any]) -> dict[str, Any]:
    from linker import metrics
    from linker.pipeline import doc_mentions

    predicted = [metrics.annotation(document.doc_id, m.start, m.end, m.concept_ids)
                 for document, doc in zip(documents, processed) for m in doc_mentions(doc) if m.concept_ids]
    gold_rows = [metrics.annotation(m.doc_id, m.start, m.end, m.ids, m.type or None) for m in gold if m.ids]
    result = metrics.evaluate(predicted, gold_rows, id_map=mapper.expand, by_type=True)
    for mode in (result["strict"], result["overlap"]):
        for name, prf in mode.items():
            if name != "all" and prf["n_pred"] == 0:
                prf["precision"] = prf["f1"] = None
    return {"documents": len(documents), "gold": len(gold_rows), "predicted": len(predicted), **about,
            "seconds": round(seconds, 3), "docs_per_second": round(len(documents) / seconds, 2) if seconds > 0 else None,
            **result}
