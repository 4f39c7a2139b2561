"""What an evaluation run on an engine adds to its run folder: Parquet tables and ``engine.json``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.io.atomic import atomic_write_json
from mammocadx.model.modes import FINETUNE
from mammocadx.scale.parquet import write_features, write_table


def write_engine_outputs(ev: Any, engine: Any, out: str | Path) -> list[Path]:
    """``features.parquet`` (fine-tuned mode: not written, its rows are ROI pixels), ``predictions.parquet``
    (the rows of ``predictions.csv``, keyed by sample id) and ``engine.json`` into the run folder ``out``."""
    out = Path(out)
    fs = ev.features
    written = []
    if ev.cadx.kind != FINETUNE:
        written.append(write_features(out / "features.parquet", fs.records, fs.X))
    preds = sorted(ev.result.predictions, key=lambda p: (p.repeat, p.index))
    recs = [fs.records[p.index] for p in preds]
    written.append(write_table(out / "predictions.parquet", {
        "sample_id": [r.sample_id for r in recs],
        "image_id": [r.image_id for r in recs],
        "patient_id": [r.patient_id for r in recs],
        "label": [None if r.label is None else int(r.label) for r in recs],
        "score": np.array([p.score for p in preds], float),
        "prediction": np.array([p.prediction for p in preds], np.int64),
        "fold": np.array([p.fold for p in preds], np.int64),
        "repeat": np.array([p.repeat for p in preds], np.int64),
    }))
    atomic_write_json(out / "engine.json", json.loads(json.dumps(engine.describe(), default=str)))
    written.append(out / "engine.json")
    return written
