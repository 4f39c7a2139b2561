"""``mammocadx demo``: the whole pipeline on the built-in synthetic cohort, in a minute or two."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mammocadx.cli.common import command_line

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the demo command."""
    p = sub.add_parser(
        "demo", help="run the whole pipeline on the built-in synthetic cohort (no data needed)",
        description="Generate the built-in synthetic cohort (seeded mammogram-like images with benign and malignant "
                    "masses), evaluate the paper's pipeline with patient-grouped 5-fold cross-validation, train a "
                    "model on all cases, and score and explain one case. Writes everything under OUT.",
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default: runs/demo)")
    p.add_argument("--data", metavar="DIR", help="where the synthetic cohort is generated (default: user cache)")
    p.add_argument("--repeats", type=int, default=5, help="cross-validation repeats (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cohort and the folds (default: 0)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx demo``."""
    from mammocadx.datasets.synthetic import load_synthetic
    from mammocadx.evaluate.run import evaluate, write_run
    from mammocadx.model.cadx import CADx

    out = Path(args.out)
    records = load_synthetic(Path(args.data) if args.data else None, seed=args.seed)
    print(f"synthetic cohort: {len(records)} lesions, {sum(r.label for r in records)} malignant, "
          f"{len({r.patient_id for r in records})} patients ({records[0].image_path.parent.parent})")
    cadx = CADx.paper()
    ev = evaluate(cadx, records, folds=5, repeats=args.repeats, seed=args.seed, dataset="synthetic")
    run_dir = write_run(ev, out / "evaluation", command=command_line(), title="synthetic cohort — paper mode",
                        gallery_per_group=1, deletion_lesions=4)
    print(ev.result.text())
    # A model for 'predict' and 'serve': fitted on the cohort's train split, so the case scored below is unseen.
    fs = ev.features
    train = [i for i, r in enumerate(fs.records) if r.split == "train"]
    cadx.fit_features(type(fs)(X=fs.X[train], records=[fs.records[i] for i in train]), seed=args.seed)
    cadx.card["training_data"]["dataset"] = "synthetic (train split)"
    cadx.card["metrics"] = {"protocol": ev.result.protocol, "auc": ev.result.summary()["auc"]}
    model_dir = cadx.save(out / "model")
    case = next(r for r in records if r.split == "test" and r.label == 1)
    pred = cadx.predict(case.image_path, case.roi)
    print(f"held-out case {case.sample_id} (truth: {case.label_name}): {pred.label}, score {pred.score:+.3f} "
          f"(threshold {pred.threshold:g}; positive = towards malignant)")
    try:
        from mammocadx.explain import explain_prediction
    except ImportError:
        explain_prediction = None
    if explain_prediction is not None:
        written = explain_prediction(cadx, case.image_path, case.roi, out / "explain")
        if written:
            print(f"Grad-CAM of that decision: {written[0].parent}")
    print(f"evaluation: {run_dir}/report.html\nmodel: {model_dir}")
    return 0
