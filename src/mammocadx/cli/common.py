"""Argument helpers shared by several commands."""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def parse_roi(text: str) -> tuple[float, ...]:
    """Parse ``X,Y,R`` (circle) or ``X,Y,W,H`` (box) in image pixels, x from the left, y from the top."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--roi takes numbers separated by commas, got {text!r}") from exc
    if len(values) not in (3, 4):
        raise argparse.ArgumentTypeError("--roi takes X,Y,R (circle) or X,Y,W,H (box)")
    if any(v <= 0 for v in values[2:]) or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"--roi: the size (R, or W and H) must be positive, got {text!r}")
    return values


DATASETS = ("mias", "synthetic", "cbis-ddsm", "manifest", "folder")


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """--dataset/--data and the reader options shared by evaluate, train and ablate."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="synthetic",
                   help="reader: mini-MIAS folder (Info.txt + images), the built-in synthetic cohort, a CBIS-DDSM "
                        "TCIA tree with its case-description CSVs, a CSV manifest, or a folder with benign/ and "
                        "malignant/ sub-folders (default: synthetic). A manifest is a CSV, one row per lesion: "
                        "path (relative to the CSV's folder), label (benign/malignant, B/M or 0/1), patient_id; "
                        "optional split (train/test), laterality (L/R), view (CC/MLO) and the lesion as "
                        "box_x,box_y,box_w,box_h or cx,cy,r (image pixels, x from the left, y from the top) or "
                        "mask_path; rows whose image is missing are listed in skipped.csv")
    g.add_argument("--data", metavar="DIR",
                   help="dataset folder (or manifest CSV); for synthetic, where the cohort is generated "
                        "(default: the user cache)")
    g.add_argument("--subset", choices=("mass", "calc", "all"), default=None,
                   help="abnormality subset: CBIS-DDSM (default: mass, as the paper) and mini-MIAS (mass = "
                        "circumscribed, spiculated and ill-defined masses; calc = calcifications; default: all)")
    g.add_argument("--allow-outside", action="store_true",
                   help="manifest: accept absolute image paths and paths outside the manifest's folder")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Pipeline options shared by evaluate, train and ablate."""
    g = p.add_argument_group("model")
    g.add_argument("--mode", default=None,
                   help="'paper' (the paper's method), 'best' (frozen features + tuned logistic regression), "
                        "'finetune' (the network fine-tuned on the ROIs: the recommended mode), or a research mode "
                        "(paper-search, paper-grey, linear-svm) (default: paper for evaluate/compare, finetune for "
                        "train)")
    g.add_argument("--backbone", default=None,
                   help="timm backbone (default: tf_efficientnet_lite0, ImageNet weights from its package)")
    g.add_argument("--weights", metavar="PATH", help="weight file for backbones without packaged weights (e.g. nasnetalarge)")
    g.add_argument("--pseudocolor", choices=("sine", "grey"), default=None,
                   help="sine = the paper's equations 1-4; grey = replicated channels (default: the mode's; paper: sine, best: grey)")
    g.add_argument("--context", type=float, default=None,
                   help="ROI side as a multiple of the lesion size, >= 1 (default: 1.5)")
    g.add_argument("--segment", action=argparse.BooleanOptionalAction, default=None,
                   help="automatic breast segmentation (labels, background, pectoral muscle masked) before the ROI step")
    g.add_argument("--n-components", type=int, default=None,
                   help="PCA components of the paper head (paper: 404), capped at n_train-1 when the training set is smaller")
    g.add_argument("--C", type=float, default=None, help="SVM C of the paper head (paper: 1)")
    g.add_argument("--gamma", default=None, help="SVM RBF gamma: 'auto' = 1/#features (paper), 'scale', or a number")
    g.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="finetune mode: network input side in pixels, 32-320 (default: 224)")
    g.add_argument("--epochs", type=int, default=None,
                   help="finetune mode: most training epochs; the one kept is chosen on an inner validation split "
                        "of the training rows (default: the mode's)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                   help="CNN precision on CPU: bf16 where the CPU supports it and features agree with fp32 (default: auto)")


def dataset_options(args: argparse.Namespace) -> dict:
    """Reader keyword options from parsed arguments."""
    if args.dataset == "cbis-ddsm":
        return {"subset": args.subset or "mass"}
    if args.dataset == "mias" and args.subset not in (None, "all"):
        from mammocadx.datasets.mias import MASS_CLASSES

        return {"classes": set(MASS_CLASSES) if args.subset == "mass" else {"CALC"}}
    if args.dataset == "manifest" and getattr(args, "allow_outside", False):
        return {"allow_outside": True}
    return {}


def build_cadx(args: argparse.Namespace, default_mode: str | None = None):
    """A CADx from the model options (``None`` = not given: settings are resolved once, by ``model.config.resolve``).

    ``default_mode`` is the mode when ``--mode`` is not given (``None``: the paper's).
    """
    from mammocadx.model.cadx import CADx

    return CADx.from_mode(args.mode or default_mode, backbone=args.backbone, weights=args.weights,
                          pseudocolor=args.pseudocolor, context=args.context, segment=args.segment,
                          precision=args.precision, n_components=args.n_components, C=args.C, gamma=args.gamma,
                          input_size=getattr(args, "input_size", None), epochs=getattr(args, "epochs", None))


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, for reports."""
    import shlex
    import sys

    return "mammocadx " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def fit_answers_or_warn(cadx: Any, fs: Any, operating_point: str | None = None) -> None:
    """``cadx.fit_answers(fs, operating_point)``; when they cannot be fitted (e.g. a fine-tuned network's
    inner-validation split is too small), the model is kept without them and a warning says why, unless an
    operating point was asked for (then the error stands)."""
    from mammocadx.errors import ModelError

    try:
        cadx.fit_answers(fs, operating_point=operating_point)
    except ModelError as exc:
        if operating_point is not None:
            raise
        log.warning("the model is saved without calibrated probability, 'uncertain' and OOD guard: %s", exc.reason)


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """--engine and the Ray options of the commands that read many images (evaluate, train, extract, predict)."""
    g = p.add_argument_group("engine (where images are read and features computed)")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: a Ray Data pipeline, decoding in parallel tasks and "
                        "running the CNN in actors that load it once (pip install 'mammocadx[ray]'; docs/scale.md)")
    g.add_argument("--address", metavar="ADDR", default=None,
                   help="--engine ray: join the Ray cluster at ADDR ('auto', host:6379 or ray://host:10001); "
                        "default: start a local Ray on this machine")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="--engine ray: images decoded at once, 1 CPU each (default: every CPU)")
    g.add_argument("--actors", type=int, default=None, metavar="N",
                   help="--engine ray: CNN actors, 1 CPU and one engine thread each (default: 1)")


def engine_from_args(args: argparse.Namespace) -> Any:
    """The engine the options ask for, checked but not started (``None`` for the local engine).

    Called before any long work, so a Ray option without ``--engine ray``, or a missing Ray, fails at once.
    """
    from mammocadx.scale.engines import create_engine

    return create_engine(args.engine, address=args.address, workers=args.workers, actors=args.actors)


@contextlib.contextmanager
def running(engine: Any) -> Iterator[Any]:
    """``engine`` started for the block (nothing to start for the local engine, ``None``)."""
    if engine is None:
        yield None
        return
    with engine:
        yield engine
