"""External validation: fit on one dataset, test on another (no cross-validation).

A model that is only ever tested on held-out patients of the dataset it was
developed on says little about another scanner, era or country. Here the
training dataset's lesions are all training rows and the test dataset's
lesions are all test rows of one split, so the run goes through the same
:func:`~mammocadx.evaluate.crossval.run_splits`, leakage guards, bootstrap
intervals and reports as any other protocol.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mammocadx.errors import EvaluationError
from mammocadx.records import LesionRecord


def combine_external(train: Sequence[LesionRecord], test: Sequence[LesionRecord], train_name: str,
                     test_name: str) -> list[LesionRecord]:
    """The training dataset's records (``split="train"``) followed by the test dataset's (``split="test"``).

    Patient and sample ids are prefixed with their side and dataset's name
    (``test:mias:mdb001``), so that two datasets that number their patients alike
    (two CSV manifests, say) never share a patient or a sample id.

    Raises
    ------
    EvaluationError
        If either side is empty or has a single class.
    """
    for name, recs in ((train_name, train), (test_name, test)):
        labels = {r.label for r in recs}
        if len(recs) == 0 or not labels >= {0, 1}:
            raise EvaluationError(f"external validation needs benign and malignant lesions in {name!r} "
                                  f"(got {len(recs)} lesions, labels {sorted(x for x in labels if x is not None)})")

    def tag(r: LesionRecord, name: str, split: str) -> LesionRecord:
        return replace(r, split=split, patient_id=f"{split}:{name}:{r.patient_id}",
                       sample_id=f"{split}:{name}:{r.sample_id}")

    return [tag(r, train_name, "train") for r in train] + [tag(r, test_name, "test") for r in test]
