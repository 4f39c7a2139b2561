"""``mammocadx evaluate`` and ``mammocadx train``."""
from __future__ import annotations

import argparse
import logging

from mammocadx.cli.common import (DATASETS, add_dataset_options, add_engine_options, add_model_options, build_cadx,
                                  command_line, dataset_options, engine_from_args, fit_answers_or_warn, running)
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
    g.add_argument("--train-dataset", choices=DATASETS, default=None,
                   help="external validation: fit once on every lesion of this dataset and test on every lesion of "
                        "--dataset (no cross-validation; --split, --folds and --repeats do not apply)")
    g.add_argument("--train-data", metavar="DIR", default=None, help="folder (or manifest CSV) of --train-dataset")
    g.add_argument("--folds", type=int, default=5, help="number of folds (default: 5)")
    g.add_argument("--repeats", type=int, default=5, help="repeats with different shuffles (default: 5)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the splits (default: 0)")
    g.add_argument("--gallery", type=int, default=2, metavar="N",
                   help="Grad-CAM gallery: N lesions of each outcome (TP/FP/FN/TN), explained by their out-of-fold "
                        "model; 0 = none (default: 2)")
    g.add_argument("--deletion", type=int, default=0, metavar="N",
                   help="deletion (faithfulness) check of the heat-maps on N test lesions, e.g. 12 (about 10 s a lesion on 2 cores); 0 = none (default: 0)")
    add_engine_options(p)
    p.add_argument("--out", required=True, metavar="DIR",
                   help=f"run folder to write: {OUTPUT_POLICY_HELP}; a run folder of an earlier run is replaced; "
                        "with --engine ray also features.parquet, predictions.parquet and engine.json")
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
    t.add_argument("--cv", type=int, default=5, metavar="K",
                   help="first cross-validate the same settings (patient-grouped K-fold, once) on the training "
                        "lesions and store the metrics with their 95%% intervals in the model card, where "
                        "'predict' and the web page show them; 0 = skip (default: 5)")
    t.add_argument("--operating-point", metavar="TARGET", default=None,
                   help="set the model's threshold to reach TARGET, sensitivity=0.90 or specificity=0.90, on "
                        "out-of-sample scores of the training lesions (inner out-of-fold; fine-tuned: its held-out "
                        "inner-validation lesions), recorded in the model card (default: the head's own threshold)")
    t.add_argument("--model-out", required=True, metavar="DIR",
                   help="model folder to write: created if missing; an existing folder is used only if it is empty or "
                        "a saved mammocadx model (then replaced), otherwise the command refuses and nothing is deleted")
    t.set_defaults(func=run_train)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx evaluate``."""
    from mammocadx.datasets import load_dataset
    from mammocadx.evaluate.run import evaluate, write_run
    from mammocadx.io.paths import output_dir

    from mammocadx.errors import ConfigError

    if args.train_data is not None and args.train_dataset is None:
        raise ConfigError("--train-data needs --train-dataset (external validation)")
    if args.train_dataset not in (None, "synthetic") and args.train_data is None:
        raise ConfigError(f"--train-dataset {args.train_dataset} needs --train-data (its folder or manifest)")
    engine = engine_from_args(args)
    with output_dir(args.out) as out:  # checked before the long work, not after
        records = load_dataset(args.dataset, args.data, **dataset_options(args))
        cadx = build_cadx(args)
        protocol, dataset = args.split, args.dataset
        if args.train_dataset is not None:
            from mammocadx.evaluate.external import combine_external

            train_args = argparse.Namespace(**{**vars(args), "dataset": args.train_dataset, "subset": None})
            train = load_dataset(args.train_dataset, args.train_data, **dataset_options(train_args))
            records = combine_external(train, records, args.train_dataset, args.dataset)
            protocol, dataset = "external", f"{args.train_dataset} -> {args.dataset}"
        with running(engine):
            cadx.featurizer.engine = engine
            ev = evaluate(cadx, records, protocol=protocol, folds=args.folds, repeats=args.repeats, seed=args.seed,
                          dataset=dataset)
            cadx.featurizer.engine = None  # the gallery and the report read their few images here
            out = write_run(ev, out, command=command_line(), gallery_per_group=args.gallery,
                            deletion_lesions=args.deletion)
            if engine is not None:
                from mammocadx.scale.outputs import write_engine_outputs

                write_engine_outputs(ev, engine, out)
    print(f"{ev.dataset}: {ev.result.protocol['n_lesions']} lesions, {ev.result.protocol['name']}")
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

    if args.operating_point is not None:
        from mammocadx.model.operating_point import parse_operating_point

        parse_operating_point(args.operating_point)  # a typo fails before the long work
    model_out = claim_output_dir(args.model_out, option="--model-out", owned=is_model_folder, marker=False,
                                 create=False)
    records = load_dataset(args.dataset, args.data, **dataset_options(args))
    if args.split == "official":
        records = [r for r in records if (r.split or "").lower() == "train"]
    from mammocadx.model.modes import RECOMMENDED_MODE

    cadx = build_cadx(args, default_mode=RECOMMENDED_MODE)
    fs = cadx.featurize(records)
    metrics = None
    if args.cv:
        from mammocadx.evaluate.run import card_metrics, evaluate

        ev = evaluate(cadx, fs.records, folds=args.cv, repeats=1, seed=0, dataset=args.dataset, features=fs,
                      inner_oof_folds=0)
        metrics = card_metrics(ev)
        print(f"cross-validated ({args.cv}-fold, patient-grouped): AUC {metrics['auc']:.3f} "
              f"[95% CI {metrics['auc_ci95'][0]:.3f}-{metrics['auc_ci95'][1]:.3f}]")
    cadx.fit_features(fs)
    fit_answers_or_warn(cadx, fs, args.operating_point)
    cadx.card["metrics"] = metrics
    cadx.card["training_data"]["dataset"] = args.dataset
    cadx.card["command"] = command_line()
    out = cadx.save(model_out)
    print(f"{cadx.config.mode} mode: trained on {len(fs.records)} lesions ({int(fs.y.sum())} malignant), "
          f"skipped {len(fs.skipped)}")
    ans = cadx.card.get("answers")
    if not ans:
        print(f"model folder: {out}")
        return 0
    print(f"calibrated probability: {ans['calibrator']['kind']} on {ans['scores']}; "
          f"'uncertain' when the {100 * (1 - ans['conformal']['alpha']):g}% conformal set holds both classes")
    op = cadx.card.get("operating_point")
    if op:
        print(f"operating point {', '.join(f'{k}={v:g}' for k, v in op['target'].items())}: threshold "
              f"{op['threshold']:+.4f} (head's own {op['head_threshold']:+.4f}); on those training scores "
              f"sensitivity {op['sensitivity']:.3f}, specificity {op['specificity']:.3f}")
    print(f"out-of-distribution guard: feature distance > {cadx.card['ood']['threshold']:.1f}, image size, bit depth, "
          "texture and ROI size checked against the training lesions")
    print(f"model folder: {out}")
    return 0
