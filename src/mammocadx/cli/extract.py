"""``mammocadx extract``: the deep features of every lesion of a dataset, as Parquet keyed by sample id."""
from __future__ import annotations

import argparse
import logging
import time

from mammocadx.cli.common import (add_dataset_options, add_engine_options, add_model_options, build_cadx,
                                  command_line, dataset_options, engine_from_args, running)
from mammocadx.io.paths import OUTPUT_POLICY_HELP

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the extract command."""
    p = sub.add_parser(
        "extract", help="write the CNN features of every lesion of a dataset (Parquet, keyed by sample id)",
        description="Read every lesion of a dataset, cut its ROI and write its frozen ImageNet CNN features to "
                    "OUT/features.parquet (sample_id, image_id, patient_id, label, image, features), with "
                    "OUT/skipped.csv for inputs that could not be read and OUT/extract.json (settings, counts, "
                    "seconds). Features are cached: a run stopped half-way and started again computes only what "
                    "is missing. With --engine ray the images are decoded in parallel on a local Ray or a cluster.",
        epilog="example: mammocadx extract --dataset mias --data ../shared/data/mini-mias --engine ray --out runs/mias-features",
    )
    add_dataset_options(p)
    add_model_options(p)
    add_engine_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help=f"folder to write: {OUTPUT_POLICY_HELP}")
    p.set_defaults(func=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx extract``."""
    from mammocadx.datasets import load_dataset
    from mammocadx.errors import ConfigError
    from mammocadx.io.atomic import atomic_write_csv, atomic_write_json, json_data
    from mammocadx.io.paths import output_dir
    from mammocadx.model.modes import FINETUNE
    from mammocadx.scale.parquet import write_features

    cadx = build_cadx(args)
    if cadx.kind == FINETUNE:
        raise ConfigError("extract writes frozen CNN features; a fine-tuned network has none before it is "
                          "trained: use --mode paper or best (and their --backbone/--pseudocolor)")
    engine = engine_from_args(args)
    with output_dir(args.out) as out:
        records = load_dataset(args.dataset, args.data, **dataset_options(args))
        t0 = time.perf_counter()
        with running(engine):
            cadx.featurizer.engine = engine
            fs = cadx.featurize(records)
            engine_info = engine.describe() if engine is not None else {"engine": "local"}
        seconds = time.perf_counter() - t0
        write_features(out / "features.parquet", fs.records, fs.X)
        if fs.skipped:
            atomic_write_csv(out / "skipped.csv",
                             ({"sample_id": r.sample_id, "image": str(r.image_path), "reason": why}
                              for r, why in fs.skipped), ["sample_id", "image", "reason"])
        atomic_write_json(out / "extract.json", json_data({
            "dataset": args.dataset, "n_lesions": len(records), "n_written": len(fs.records),
            "n_skipped": len(fs.skipped), "feature_dim": int(fs.X.shape[1]), "seconds": round(seconds, 3),
            "featurizer": cadx.featurizer.settings(), "extractor": cadx.extractor.describe(),
            "engine": engine_info, "command": command_line()}))
    print(f"{len(fs.records)} lesions x {fs.X.shape[1]} features in {seconds:.1f} s "
          f"({engine_info['engine']} engine); skipped {len(fs.skipped)}")
    print(f"features: {out / 'features.parquet'}")
    return 0
