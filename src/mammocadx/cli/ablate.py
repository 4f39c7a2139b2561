"""``mammocadx ablate`` (one factor at a time, one table) and ``mammocadx compare`` (modes side by side)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mammocadx.cli.common import add_dataset_options, command_line, dataset_options
from mammocadx.io.paths import OUTPUT_POLICY_HELP

log = logging.getLogger(__name__)


def _protocol_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol (the same folds for every row)")
    g.add_argument("--folds", type=int, default=5, help="patient-grouped stratified folds (default: 5)")
    g.add_argument("--repeats", type=int, default=5, help="repeats with different shuffles (default: 5)")
    g.add_argument("--seed", type=int, default=0, help="seed of the splits and of the bootstrap (default: 0)")
    g.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (patients resampled) for the 95%% CIs (default: 2000)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ablate and compare commands."""
    from mammocadx.evaluate.ablation import ALL_FACTORS, DEFAULT_FACTORS

    p = sub.add_parser(
        "ablate", help="ablation table: change one factor at a time from the paper mode, same folds for every row",
        description="Evaluate the paper mode and, one factor at a time, its variants: sine vs grey pseudocolour, "
                    "breast segmentation on/off (when installed), backbone (Lite1/Lite2 when installed), PCA "
                    "components (404 capped / searched by inner CV / 32 / 8 / none), head (paper RBF-SVM vs "
                    "logistic regression or linear SVM with C by inner CV), ROI context (1.0 / 1.5 / 2.5). Every row "
                    "uses the same patient-grouped folds; each gives mean AUC ± sd over repeats and a patient-bootstrap "
                    "95%% CI. CNN features are cached, so rows that only change the head reuse them. Writes "
                    "OUT/ablation.{csv,md,json,png} and OUT/report.html.",
        epilog="example: mammocadx ablate --dataset mias --data ../shared/data/mini-mias --out runs/ablation "
               "--factors pseudocolor,pca,head",
    )
    add_dataset_options(p)
    p.add_argument("--factors", default=",".join(DEFAULT_FACTORS),
                   help=f"comma-separated factors of {','.join(ALL_FACTORS)} (default: {','.join(DEFAULT_FACTORS)}; "
                        "finetune fine-tunes a network in every fold of every repeat: add it with --repeats 1)")
    _protocol_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help=f"output folder: {OUTPUT_POLICY_HELP}")
    p.set_defaults(func=run_ablate)

    c = sub.add_parser(
        "compare", help="evaluate several modes (paper, best ...) on the same folds; one report with table 4",
        description="Evaluate each mode with patient-grouped stratified k-fold (same folds for all), write a run "
                    "folder per mode (metrics.json, predictions.csv, ROC per fold, confusion matrix), bootstrap 95%% "
                    "CIs, the comparison with published results in the layout of the paper's table 4 (protocols "
                    "named), and OUT/report.html.",
        epilog="example: mammocadx compare --dataset mias --data ../shared/data/mini-mias --modes paper,best --out runs/mias",
    )
    add_dataset_options(c)
    c.add_argument("--modes", default="paper,best", help="comma-separated modes, e.g. paper,best,finetune "
                   "(default: paper,best; finetune trains a network per fold: use --repeats 1 with it)")
    _protocol_options(c)
    c.add_argument("--gallery", type=int, default=0, metavar="N",
                   help="Grad-CAM gallery: N lesions per outcome (TP/FP/FN/TN) per mode, from out-of-fold models (default: 0)")
    c.add_argument("--out", required=True, metavar="DIR", help=f"output folder: {OUTPUT_POLICY_HELP}")
    c.set_defaults(func=run_compare)


def run_ablate(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx ablate``."""
    from mammocadx.io.paths import output_dir

    factors = [f.strip() for f in args.factors.split(",") if f.strip()]
    with output_dir(args.out) as out:
        _ablate_into(args, factors, out)
    return 0


def _ablate_into(args: argparse.Namespace, factors: list[str], out: Path) -> None:
    from mammocadx.datasets import load_dataset
    from mammocadx.evaluate.ablation import ablation_markdown, run_ablation, write_ablation
    from mammocadx.evaluate.html_report import write_html_report

    records = load_dataset(args.dataset, args.data, **dataset_options(args))
    rows = run_ablation(records, factors, folds=args.folds, repeats=args.repeats, seed=args.seed, n_boot=args.n_boot)
    paths = write_ablation(rows, out)
    import mammocadx

    write_html_report(out, {"dataset": args.dataset, "modes": {}, "ablation": rows, "ablation_png": "ablation.png",
                            "protocol": {"name": "patient-grouped stratified k-fold", "folds": args.folds,
                                         "repeats": args.repeats, "seed": args.seed, "grouping": "patient"},
                            "command": command_line(), "seed": args.seed,
                            "versions": {"mammocadx": mammocadx.__version__}},
                      title=f"mammocadx ablation: {args.dataset}")
    print(ablation_markdown(rows))
    print(f"written: {paths['md']}, {paths['csv']}, {out}/report.html")


def run_compare(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx compare``."""
    from mammocadx.datasets import load_dataset
    from mammocadx.evaluate.ablation import compare_modes
    from mammocadx.evaluate.table4 import to_markdown
    from mammocadx.io.paths import output_dir

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with output_dir(args.out) as out:
        records = load_dataset(args.dataset, args.data, **dataset_options(args))
        res = compare_modes(records, modes, out, args.dataset, folds=args.folds, repeats=args.repeats,
                            seed=args.seed, n_boot=args.n_boot, command=command_line(),
                            gallery_per_group=args.gallery)
    for name, m in res["modes"].items():
        auc = m["summary"]["auc"]
        lo, hi = m["ci"]["auc"]
        print(f"{name:<12} AUC {auc['mean']:.3f} ± {auc['sd']:.3f} over repeats, 95% CI [{lo:.3f}, {hi:.3f}]")
    print(to_markdown([r for r in res["table4"] if r.get("ours")]))
    print(f"report: {out}/report.html")
    return 0
