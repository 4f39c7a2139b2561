"""``mammocadx evaluate`` and ``mammocadx train``."""
from __future__ import annotations

import argparse
import logging

from mammocadx.cli.common import add_dataset_options, add_model_options, build_cadx, command_line, dataset_options
from mammocadx.io.paths import OUTPUT_POLICY_HELP

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the evaluate and train commands."""
    p = sub.add_parser(
        "evaluate", help="cross-validate (patient-grouped) or hold-out-test a CADx; writes a run folder",
        description="Evaluate the CADx on a dataset with patient-grouped stratified k-fold (repeated) or the "
                    "dataset's official train/test split. Writes OUT/metrics.json, predictions.csv, roc.png, "
                    "confusion.png and report.html.",
        epilog="example: mammocadx evaluate --dataset mias --data ../shared/data/mini-mias --folds 5 --repeats 5 --out runs/mias",
    )
    add_dataset_options(p)
    add_model_options(p)
    g = p.add_argument_group("protocol")
    g.add_argument("--split", choices=("kfold", "official"), default="kfold",
                   help="kfold: patient-grouped stratified k-fold; official: the dataset's train/test split (default: kfold)")
    g.add_argument("--folds", type=int, default=5, help="number of folds (default: 5)")
    g.add_argument("--repeats", type=int, default=5, help="repeats with different shuffles (default: 5)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the splits (default: 0)")
    g.add_argument("--gallery", type=int, default=2, metavar="N",
                   help="Grad-CAM gallery: N lesions of each outcome (TP/FP/FN/TN), explained by their out-of-fold "
                        "model; 0 = none (default: 2)")
    g.add_argument("--deletion", type=int, default=0, metavar="N",
                   help="deletion (faithfulness) check of the heat-maps on N test lesions, e.g. 12 (about 10 s a lesion on 2 cores); 0 = none (default: 0)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help=f"run folder to write: {OUTPUT_POLICY_HELP}; a run folder of an earlier run is replaced")
    p.set_defaults(func=run_evaluate)

    t = sub.add_parser(
        "train", help="fit a CADx on a whole dataset and save the model folder",
        description="Fit the CADx on every lesion of the dataset (or its official train split) and save a model "
                    "folder (arrays + JSON model card, no pickle) for 'mammocadx predict' and 'mammocadx serve'.",
        epilog="example: mammocadx train --dataset mias --data ../shared/data/mini-mias --model-out models/mias",
    )
    add_dataset_options(t)
    add_model_options(t)
    t.add_argument("--split", choices=("all", "official"), default="all",
                   help="train on all lesions, or only on the official train split (default: all)")
    t.add_argument("--model-out", required=True, metavar="DIR",
                   help="model folder to write: created if missing; an existing folder is used only if it is empty or "
                        "a saved mammocadx model (then replaced), otherwise the command refuses and nothing is deleted")
    t.set_defaults(func=run_train)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx evaluate``."""
    from mammocadx.datasets import load_dataset
    from mammocadx.evaluate.run import evaluate, write_run
    from mammocadx.io.paths import output_dir

    with output_dir(args.out) as out:  # checked before the long work, not after
        records = load_dataset(args.dataset, args.data, **dataset_options(args))
        cadx = build_cadx(args)
        ev = evaluate(cadx, records, protocol=args.split, folds=args.folds, repeats=args.repeats, seed=args.seed,
                      dataset=args.dataset)
        out = write_run(ev, out, command=command_line(), gallery_per_group=args.gallery,
                        deletion_lesions=args.deletion)
    print(f"{args.dataset}: {ev.result.protocol['n_lesions']} lesions, {ev.result.protocol['name']}")
    print(ev.result.text())
    if ev.features.skipped:
        print(f"skipped {len(ev.features.skipped)} lesions (see {out}/skipped.csv)")
    print(f"run folder: {out}  (open {out}/report.html)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx train``."""
    from mammocadx.datasets import load_dataset
    from mammocadx.io.paths import claim_output_dir
    from mammocadx.model.persist import is_model_folder

    model_out = claim_output_dir(args.model_out, option="--model-out", owned=is_model_folder, marker=False,
                                 create=False)
    records = load_dataset(args.dataset, args.data, **dataset_options(args))
    if args.split == "official":
        records = [r for r in records if (r.split or "").lower() == "train"]
    cadx = build_cadx(args)
    fs = cadx.featurize(records)
    cadx.fit_features(fs)
    cadx.card["training_data"]["dataset"] = args.dataset
    cadx.card["command"] = command_line()
    out = cadx.save(model_out)
    print(f"trained on {len(fs.records)} lesions ({int(fs.y.sum())} malignant), skipped {len(fs.skipped)}")
    print(f"model folder: {out}")
    return 0
