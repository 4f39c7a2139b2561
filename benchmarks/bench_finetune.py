"""Fine-tuning speed: a plain eager fp32 full fine-tuning loop vs mammocadx's path, same ROIs, one run.

Prints training images/s of

(a) the plain way: the whole backbone trained in eager fp32 (NCHW, AdamW,
    batch 32), each ROI augmented and rendered on the fly, every epoch;
(b) :class:`mammocadx.model.finetune.FineTuneHead`: stem and early blocks frozen
    with their activations cached once per augmented view, bf16 autocast where
    the CPU has native bf16, the later blocks and the new linear layer trained;

and their ratio. Images/s counts training ROI-epochs per wall second and, for
(b), includes building the activation cache and the per-epoch inner validation
(everything ``fit`` does), so the ratio is what a user gains per fit.

ROIs: the CBIS-DDSM mass ROIs of ``../shared/data/cbis-ddsm-mass-800-train``
(or ``$MAMMOCADX_SHARED_DATA``) when present, else the synthetic cohort.

    python benchmarks/bench_finetune.py [--n 256] [--epochs 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def load_rows(n: int, side: int, context: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    from mammocadx.datasets import load_dataset
    from mammocadx.io.images import read_image
    from mammocadx.preprocess.roi import RoiConfig, extract_roi

    env = os.environ.get("MAMMOCADX_SHARED_DATA")
    data = (Path(env) if env else REPO.parent / "shared" / "data") / "cbis-ddsm-mass-800-train"
    if (data / "manifest.csv").is_file():
        records, what = load_dataset("manifest", data), "CBIS-DDSM-800 mass ROIs"
    else:
        from mammocadx.datasets.synthetic import make_cohort  # noqa: F401 - only where shared data is absent

        records, what = load_dataset("synthetic", None), "synthetic cohort ROIs"
    rng = np.random.default_rng(0)
    records = [records[i] for i in sorted(rng.choice(len(records), size=min(n, len(records)), replace=False))]
    cfg = RoiConfig(size=side, context=context)
    rows = np.stack([extract_roi(read_image(r.image_path).pixels, r.roi, cfg) for r in records])
    y = np.array([r.label for r in records])
    g = np.array([r.patient_id for r in records])
    return rows, y, g, f"{what} ({len(records)})"


def plain_loop(rows: np.ndarray, y: np.ndarray, epochs: int, head: object) -> float:
    """Images/s of full eager fp32 fine-tuning with on-the-fly augmentation (the same views as ours)."""
    import torch

    from mammocadx.features.backbones import backbone_spec, load_backbone
    from mammocadx.model.finetune import View, render_view

    spec = backbone_spec(head.backbone)
    net = copy.deepcopy(load_backbone(head.backbone).model)
    net.reset_classifier(0)
    net.train().requires_grad_(True)
    fc = torch.nn.Linear(net.num_features, 1)
    opt = torch.optim.AdamW([*net.parameters(), *fc.parameters()], lr=1e-4, weight_decay=0.05)
    rng = np.random.default_rng(0)
    target = torch.from_numpy(y.astype(np.float32))
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        order = rng.permutation(len(rows))
        for s in range(0, len(order), 32):
            idx = order[s:s + 32]
            views = [View(scale=float(rng.uniform(0.85, 1.15)), dx=float(rng.uniform(-0.08, 0.08)),
                          dy=float(rng.uniform(-0.08, 0.08)), gamma=float(np.exp(rng.uniform(-0.25, 0.25))),
                          flip=int(rng.integers(0, 8))) for _ in idx]
            rgb = np.stack([render_view(rows[i], v, head.input_size, head.margin, head.pseudocolor)
                            for i, v in zip(idx, views)])
            x = torch.from_numpy(spec.preprocess_array(rgb))
            logit = fc(net.forward_features(x).mean(dim=(2, 3))).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target[torch.from_numpy(idx)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(idx)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256, help="ROIs (default 256)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each path (default 3)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    import torch

    from mammocadx.model.finetune import FineTuneHead
    from mammocadx.utils.system import available_cpus

    torch.set_num_threads(available_cpus())
    head = FineTuneHead(epochs=a.epochs, patience=a.epochs, random_state=0)
    rows, y, g, what = load_rows(a.n, head.roi_side, 1.5 * head.margin)
    print(f"ROIs: {what}; {torch.get_num_threads()} threads; {a.epochs} epochs each")
    t0 = time.perf_counter()
    head.fit(rows.reshape(len(rows), -1), y, g)
    ours_s = time.perf_counter() - t0
    sel = head.selection_
    ours = sel["n_inner_train"] * sel["epochs_run"] / ours_s
    plain = plain_loop(rows[: sel["n_inner_train"]], y[: sel["n_inner_train"]], a.epochs, head)
    out = {"rois": what, "epochs": a.epochs, "threads": torch.get_num_threads(),
           "plain_eager_fp32_full_img_per_s": round(plain, 2),
           "ours_img_per_s": round(ours, 2), "ratio": round(ours / plain, 2),
           "ours_precision": sel["precision"], "ours_cache_build_s": sel["encode_seconds"], "ours_fit_s": round(ours_s, 1),
           "ours_trainable_parameters": sel["trainable_parameters"]}
    print(f"plain eager fp32 full fine-tuning : {plain:7.2f} training images/s")
    print(f"mammocadx FineTuneHead ({sel['precision']}) : {ours:7.2f} training images/s "
          f"(fit {ours_s:.0f} s incl. {sel['encode_seconds']:.0f} s activation cache)")
    print(f"ratio                             : {ours / plain:7.2f}x")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
