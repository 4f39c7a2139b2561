"""``mammocadx demo``: the whole pipeline on the built-in synthetic cohort, in a minute or two."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mammocadx.cli.common import command_line, fit_answers_or_warn
from mammocadx.io.paths import OUTPUT_POLICY_HELP

log = logging.getLogger(__name__)

MODES = ("paper", "best")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the demo command."""
    p = sub.add_parser(
        "demo", help="run the whole pipeline on the built-in synthetic cohort (no data needed)",
        description="Generate the built-in synthetic cohort (seeded mammogram-like images with benign and malignant "
                    "masses), evaluate the paper's pipeline and our best frozen-feature mode on the same patient-grouped "
                    "5-fold cross-validation (repeated), and the recommended fine-tuned mode on the same folds (once), "
                    "train a fine-tuned model on the cohort's train split, and score and explain a held-out case. Writes everything under OUT; open OUT/evaluation/report.html.",
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help=f"output folder (default: runs/demo): {OUTPUT_POLICY_HELP}")
    p.add_argument("--data", metavar="DIR", help="where the synthetic cohort is generated (default: user cache)")
    p.add_argument("--repeats", type=int, default=5, help="cross-validation repeats (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cohort and the folds (default: 0)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx demo``."""
    from mammocadx.io.paths import output_dir

    with output_dir(args.out) as out:
        return _demo_into(args, out)


def _demo_into(args: argparse.Namespace, out: Path) -> int:
    from mammocadx.datasets.synthetic import load_synthetic
    from mammocadx.evaluate.ablation import compare_modes
    from mammocadx.explain import explain_prediction
    from mammocadx.model.cadx import CADx

    records = load_synthetic(Path(args.data) if args.data else None, seed=args.seed)
    print(f"synthetic cohort: {len(records)} lesions, {sum(r.label for r in records)} malignant, "
          f"{len({r.patient_id for r in records})} patients ({records[0].image_path.parent.parent})")
    res = compare_modes(records, MODES, out / "evaluation", "synthetic", folds=5, repeats=args.repeats,
                        seed=args.seed, command=command_line(), gallery_per_group=1)
    for mode in MODES:
        s, ci = res["modes"][mode]["summary"], res["modes"][mode]["ci"]
        print(f"{mode:>6} mode: AUC {s['auc']['mean']:.3f} ± {s['auc']['sd']:.3f} [95 % CI {ci['auc'][0]:.3f}-"
              f"{ci['auc'][1]:.3f}], sensitivity {s['sensitivity']['mean']:.2f}, specificity "
              f"{s['specificity']['mean']:.2f} (patient-grouped 5-fold x {args.repeats})")

    # The recommended mode (the network fine-tuned on the ROIs), cross-validated once on the same folds:
    # each fold fine-tunes a network, so it is not repeated.
    from mammocadx.evaluate.run import card_metrics, evaluate, write_run
    from mammocadx.model.modes import RECOMMENDED_MODE

    cadx = CADx.from_mode(RECOMMENDED_MODE)
    ev = evaluate(cadx, records, folds=5, repeats=1, seed=args.seed, dataset="synthetic")
    write_run(ev, out / "evaluation" / RECOMMENDED_MODE, command=command_line(), gallery_per_group=1)
    metrics = card_metrics(ev)
    print(f"{RECOMMENDED_MODE} mode: AUC {metrics['auc']:.3f} [95 % CI {metrics['auc_ci95'][0]:.3f}-"
          f"{metrics['auc_ci95'][1]:.3f}], sensitivity {metrics['sensitivity']:.2f}, specificity "
          f"{metrics['specificity']:.2f} (patient-grouped 5-fold x 1)")

    # A model for 'predict' and 'serve', fitted on the cohort's train split so the case below is unseen.
    train = [r for r in records if r.split == "train"]
    fs = cadx.featurize(train)
    cadx.fit_features(fs)
    fit_answers_or_warn(cadx, fs)
    cadx.card["training_data"]["dataset"] = "synthetic (train split)"
    cadx.card["training_data"]["seed"] = args.seed
    cadx.card["metrics"] = metrics
    model_dir = cadx.save(out / "model")
    case = next(r for r in records if r.split == "test" and r.label == 1)
    pred = cadx.predict(case.image_path, case.roi)
    print(f"held-out case {case.sample_id} (truth: {case.label_name}): {pred.label}, score {pred.score:+.3f} "
          f"(operating point {pred.threshold:+.3f}; positive = towards malignant)")
    written = explain_prediction(cadx, case.image_path, case.roi, out / "explain")
    if written:
        print(f"Grad-CAM of that decision: {written[0].parent}")
    print(f"report: {out / 'evaluation' / 'report.html'}\nmodel:  {model_dir}  (try: mammocadx serve {model_dir})")
    return 0
