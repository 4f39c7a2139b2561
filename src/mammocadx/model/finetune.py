"""Fine-tuned transfer learning: the ImageNet backbone trained on the lesion ROIs, on a CPU.

Frozen ImageNet features with a linear or RBF head stop at about AUC 0.72 on
CBIS-DDSM masses; every credible result fine-tunes the network. This module is
that step as one scikit-learn-style estimator, :class:`FineTuneHead`, so that
it plugs into the same cross-validation, leakage guards, bootstrap and reports
as the frozen-feature heads: its input rows ``X`` are the grey lesion ROIs
themselves (flattened ``M x M`` crops in [0, 1], cut with a margin around the
usual ROI so that shifted and scaled crops can be drawn), and it is fitted with
``fit(X, y, groups)`` and scored with ``decision_function(X)`` (the malignancy
logit, positive = towards malignant).

The recipe (each choice made on training rows only):

- **inner validation**: the training rows are split once by patient
  (stratified, grouped); the network trains on the inner-training part, and
  the epoch kept (early stopping), the operating point (Youden's J) and the
  record of validation AUC per epoch come from the inner-validation part.
  The outer test fold is never seen.
- **partial fine-tuning with cached activations**: the stem and the first
  ``freeze_through + 1`` blocks keep their ImageNet weights (and batch-norm
  statistics); their output is computed once per augmented view of each
  training ROI and cached (bf16/fp16), so each epoch only runs the later
  blocks, the 1x1 head convolution and a new binary linear layer. On Lite0 at
  224 px, freezing through block 3 (14x14 maps) trains 3.0 M of 3.4 M weights
  several times faster than full fine-tuning (``benchmarks/bench_finetune.py``).
- **augmentation**: each cached view is one draw of the 8 flips / 90-degree
  rotations (cycled), a crop of the ROI with scale jitter and a small shift of
  its centre, and a gamma (intensity) jitter; every epoch shows each training
  ROI in another view.
- **loss and optimiser**: class-balanced binary cross-entropy with label
  smoothing, AdamW, linear warm-up then cosine decay; bf16 autocast only where
  the CPU computes bf16 natively (fp32 otherwise, checked at run time).
- **test-time averaging**: the logit is the mean over the 8 flips/rotations of
  the central crop. The classifier is linear in the pooled features, so this is
  exactly the linear layer applied to the mean pooled feature over the views,
  which is how the fast ONNX path computes it.

After ``fit`` the network is available as a :class:`~mammocadx.features.backbones.Backbone`
(``backbone_``: the fine-tuned timm model without classifier) plus a linear
scikit-learn head (``linear_``), so Grad-CAM, the ONNX engine and the pickle-free
model files treat it like any other backbone and head.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from mammocadx.errors import ModelError
from mammocadx.preprocess.pseudocolor import pseudocolor
from mammocadx.records import to_uint8

if TYPE_CHECKING:
    import torch

    from mammocadx.features.backbones import Backbone

log = logging.getLogger(__name__)

#: Side of the ROI rows relative to the network's input. 1: the rows are the very ROIs every other mode
#: cuts (context 1.5 at the input size), so figures, Grad-CAM placement and the web page need nothing
#: special; shifted and zoomed-out training views reflect at the border.
ROI_MARGIN = 1.0


def roi_side(input_size: int, margin: float = ROI_MARGIN) -> int:
    """Side ``M`` (pixels) of the ROI rows a :class:`FineTuneHead` with this input size takes."""
    return int(round(input_size * margin))


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th of the 8 flips / 90-degree rotations of the last two axes (k = 0 is the identity)."""
    out = np.rot90(img, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class View:
    """One augmented view of a ROI: a crop (relative scale and centre shift), a gamma and a flip/rotation."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    gamma: float = 1.0
    flip: int = 0


def render_view(grey: np.ndarray, view: View, input_size: int, margin: float, colour: str) -> np.ndarray:
    """Grey ROI ``(M, M)`` in [0, 1] -> the pseudocolour RGB ``(S, S, 3)`` float32 the network sees.

    The central ``M / margin`` square (the whole row at the default margin 1) is the ROI
    the frozen modes use (``scale=1``); ``scale`` and ``dx, dy`` (fractions of that side)
    zoom and move it, mirroring tissue beyond the row's border.
    """
    m = grey.shape[0]
    side = m / margin * view.scale
    cx = m / 2.0 + view.dx * m / margin
    cy = m / 2.0 + view.dy * m / margin
    half = side / 2.0
    # Affine crop + resize in one step (no second interpolation); the identity view of a
    # row already at the input size is an exact copy. Beyond the row: mirrored tissue.
    s = input_size / side
    mat = np.array([[s, 0.0, -(cx - half) * s], [0.0, s, -(cy - half) * s]], dtype=np.float64)
    interp = cv2.INTER_AREA if side > input_size * 1.01 else cv2.INTER_LINEAR
    crop = cv2.warpAffine(grey.astype(np.float32), mat, (input_size, input_size), flags=interp,
                          borderMode=cv2.BORDER_REFLECT_101)
    crop = np.clip(crop, 0.0, 1.0)
    if view.gamma != 1.0:
        crop = crop ** view.gamma
    crop = dihedral(crop, view.flip)
    return pseudocolor(to_uint8(crop), colour).astype(np.float32)


#: ONNX Runtime sessions of frozen network prefixes, by (backbone, freeze_through, input size); None = eager.
_ENCODERS: dict[tuple[str, int, int], Any] = {}


def _checked_session(data: bytes, eager: Any, size: int, what: str, seed: int) -> Any:
    """ONNX Runtime session of ``data``, or None where it disagrees with ``eager`` (cosine < 0.999) on a probe."""
    import onnxruntime as ort
    import torch

    from mammocadx.features.extract import MIN_COSINE, cosine_rows
    from mammocadx.utils.system import available_cpus

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(torch.get_num_threads(), available_cpus()))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    probe = np.random.default_rng(seed).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.inference_mode():
        want = eager(torch.from_numpy(probe)).numpy().reshape(2, -1)
    cos = float(cosine_rows(session.run(None, {"x": probe})[0].reshape(2, -1), want).min())
    if cos < MIN_COSINE:
        log.warning("ONNX export of %s disagrees with eager (cosine %.5f): eager PyTorch used", what, cos)
        return None
    log.info("%s run by ONNX Runtime (cosine to eager %.6f)", what, cos)
    return session


def _build_encoder(net: Any, key: tuple[str, int, int]) -> Any:
    """Export ``stem + blocks[:k+1]`` of ``net`` to ONNX, open it in ONNX Runtime and check it against eager."""
    from mammocadx.features.onnx_export import export_onnx

    name, k, size = key

    def prefix(m: Any, x: Any) -> Any:
        h = m.bn1(m.conv_stem(x))
        for b in m.blocks[: k + 1]:
            h = b(h)
        return h

    what = f"frozen {name} blocks 0..{k}"
    return _checked_session(export_onnx(net, size, prefix, "activations", what), lambda x: prefix(net, x), size, what, 0)


class FineTuneHead(ClassifierMixin, BaseEstimator):
    """An ImageNet CNN fine-tuned end to end (partly frozen) on grey lesion ROIs.

    Parameters
    ----------
    backbone : str
        timm backbone with packaged ImageNet weights (``tf_efficientnet_lite0``,
        ``tf_efficientnet_lite1``, ``tf_efficientnet_lite2``).
    input_size : int
        Side of the network input (224 default, up to 320).
    margin : float
        Side of the ROI rows relative to ``input_size`` (see :func:`roi_side`); 1 = the
        rows are the usual ROIs at the input size.
    pseudocolor : {"grey", "sine"}
        Colour mapping of the grey crop (paper eqs. 1-4 for ``sine``).
    freeze_through : int
        Blocks ``0 .. freeze_through`` (and the stem) keep their ImageNet weights and their
        output is cached per view; ``-1`` trains every block (only the stem stays frozen).
    epochs : int
        Most epochs; the one kept is chosen on the inner validation split.
    patience : int
        Stop after this many epochs without a better inner-validation AUC.
    batch_size : int
    lr : float
        Peak learning rate of the fine-tuned blocks (the new linear layer gets 10x).
    weight_decay : float
    warmup_epochs : float
    label_smoothing : float
        Targets become ``eps / 2`` and ``1 - eps / 2``.
    n_views : int
        Augmented views cached per training ROI (flips/rotations cycle through them).
    scale_jitter, shift_jitter, gamma_jitter : float
        Crop side drawn in ``[1 - s, 1 + s]``, centre shift in ``[-d, d]`` of the
        ROI side, gamma ``exp(U(-g, g))``.
    val_fraction : float
        Patients of the training rows held out for inner validation.
    tta : bool
        Average the logit over the 8 flips/rotations at prediction time.
    precision : {"auto", "fp32", "bf16"}
        ``auto`` uses bf16 autocast where the CPU computes bf16 natively.
    random_state : int

    Attributes
    ----------
    net_ : torch.nn.Module
        The fine-tuned timm network without classifier (``forward_features`` -> last map).
    fc_ : torch.nn.Linear
        The binary linear layer on the pooled features.
    threshold_ : float
        Youden's J on the inner-validation scores of the kept epoch.
    selection_ : dict
        Inner split sizes, validation AUC per epoch, the kept epoch, timings, precision.
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite0", input_size: int = 224, margin: float = ROI_MARGIN,
                 pseudocolor: str = "grey", freeze_through: int = 4, epochs: int = 8, patience: int = 3,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.05, warmup_epochs: float = 1.0,
                 label_smoothing: float = 0.1, n_views: int = 8, scale_jitter: float = 0.15,
                 shift_jitter: float = 0.08, gamma_jitter: float = 0.25, val_fraction: float = 0.2,
                 tta: bool = True, precision: str = "auto", random_state: int = 0):
        self.backbone = backbone
        self.input_size = input_size
        self.margin = margin
        self.pseudocolor = pseudocolor
        self.freeze_through = freeze_through
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.label_smoothing = label_smoothing
        self.n_views = n_views
        self.scale_jitter = scale_jitter
        self.shift_jitter = shift_jitter
        self.gamma_jitter = gamma_jitter
        self.val_fraction = val_fraction
        self.tta = tta
        self.precision = precision
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    @property
    def roi_side(self) -> int:
        """Side of the ROI rows this head takes."""
        return roi_side(self.input_size, self.margin)

    def _check(self) -> None:
        if not 32 <= self.input_size <= 320:
            raise ModelError(f"fine-tuning input size must be in 32..320 px, got {self.input_size}")
        if self.pseudocolor not in ("grey", "sine"):
            raise ModelError(f"pseudocolour must be 'grey' or 'sine', got {self.pseudocolor!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ModelError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.margin < 1.0:
            raise ModelError(f"ROI margin must be >= 1, got {self.margin}")

    def _rows(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        m = self.roi_side
        if X.ndim == 2 and X.shape[1] == m * m:
            X = X.reshape(-1, m, m)
        if X.ndim != 3 or X.shape[1:] != (m, m):
            raise ModelError(f"expected ROI rows of {m}x{m} pixels (flattened or not), got shape {X.shape}")
        return X

    def _bf16(self) -> bool:
        if self.precision == "fp32":
            return False
        from mammocadx.features.extract import cpu_has_native_bf16

        native = cpu_has_native_bf16()
        if self.precision == "bf16" and not native:
            log.warning("bf16 requested but this CPU has no native bf16: emulated (slow and inexact)")
        return native or self.precision == "bf16"

    def _render(self, grey: np.ndarray, views: list[View]) -> np.ndarray:
        from mammocadx.features.backbones import backbone_spec

        spec = backbone_spec(self.backbone)
        rgb = np.stack([render_view(g, v, self.input_size, self.margin, self.pseudocolor) for g, v in zip(grey, views)])
        # Rendered at this head's input size (which may differ from the backbone's pretraining size): normalise only.
        mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((rgb.transpose(0, 3, 1, 2) - mean) / std, dtype=np.float32)

    def _build(self) -> None:
        import torch

        from mammocadx.features.backbones import load_backbone

        bb = load_backbone(self.backbone)
        net = copy.deepcopy(bb.model)
        net.reset_classifier(0)
        net.eval().requires_grad_(False)
        n_blocks = len(net.blocks)
        k = int(self.freeze_through)
        if not -1 <= k < n_blocks:
            raise ModelError(f"freeze_through must be in -1..{n_blocks - 1} for {self.backbone}, got {k}")
        self.net_ = net
        fc = torch.nn.Linear(int(net.num_features), 1)
        gen = torch.Generator().manual_seed(int(self.random_state))
        with torch.no_grad():
            fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * 0.01)
            fc.bias.zero_()
        self.fc_ = fc

    def _frozen(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net_
        h = net.bn1(net.conv_stem(x))
        for b in net.blocks[: int(self.freeze_through) + 1]:
            h = b(h)
        return h

    def _trainable_modules(self) -> list[torch.nn.Module]:
        net = self.net_
        return [*net.blocks[int(self.freeze_through) + 1:], net.conv_head, net.bn2]

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        """Frozen activations -> pooled features."""
        for m in self._trainable_modules():
            h = m(h)
        return h.mean(dim=(2, 3))

    def _encoder(self) -> Any:
        """ONNX Runtime session of the frozen part (ImageNet weights: the same for every fit), or None.

        Eager PyTorch runs the early, high-resolution depthwise blocks at a few
        images/s on a 2-core CPU; the exported graph (SAME padding frozen and
        folded, :mod:`mammocadx.features.onnx_export`) runs them several times
        faster. Checked against eager fp32 once per process (cosine >= 0.999).
        """
        if int(self.freeze_through) < 0:
            return None
        key = (self.backbone, int(self.freeze_through), int(self.input_size))
        if key in _ENCODERS:
            return _ENCODERS[key]
        from mammocadx.features.extract import onnxruntime_available

        session = None
        if onnxruntime_available():
            session = _build_encoder(self.net_, key)
        _ENCODERS[key] = session
        return session

    def _encode(self, grey: np.ndarray, views: list[View], bf16: bool) -> torch.Tensor:
        """Frozen-part activations of the given views, batched, stored in half precision."""
        import torch

        out = []
        bs = max(8, int(self.batch_size))
        session = self._encoder()
        store = torch.bfloat16 if bf16 else torch.float16
        with torch.inference_mode():
            for s in range(0, len(grey), bs):
                x = self._render(grey[s:s + bs], views[s:s + bs])
                if session is not None:
                    h = torch.from_numpy(session.run(None, {"x": x})[0])
                else:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        h = self._frozen(torch.from_numpy(x))
                out.append(h.to(store))
        return torch.cat(out)

    def _central_views(self) -> list[int]:
        return list(range(8)) if self.tta else [0]

    def _scorer(self) -> Any:
        """ONNX Runtime session of the whole fitted network (pooled features), checked against eager; or None."""
        if getattr(self, "_ort_full", None) is not None:
            return self._ort_full
        from mammocadx.features.extract import onnxruntime_available

        if not onnxruntime_available():
            return None
        from mammocadx.features.onnx_export import export_pooled_onnx

        what = f"fine-tuned {self.backbone}"
        session = _checked_session(export_pooled_onnx(self.net_, int(self.input_size), what),
                                   lambda x: self.net_.forward_features(x).mean(dim=(2, 3)),
                                   int(self.input_size), what, 1)
        if session is None:
            return None
        self._ort_full = session
        return session

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_ort_full", None)  # ONNX Runtime sessions cannot be pickled (CV worker processes)
        return state

    def _pooled(self, grey: np.ndarray, bf16: bool | None = None) -> np.ndarray:
        """Pooled features of the central crop, averaged over the test-time views: ``(N, D)`` float32."""
        import torch

        session = self._scorer()
        if session is not None:
            acc = None
            bs = max(8, int(self.batch_size))
            for k in self._central_views():
                f = np.concatenate([session.run(None, {"x": self._render(grey[s:s + bs], [View(flip=k)] * len(grey[s:s + bs]))})[0]
                                    for s in range(0, len(grey), bs)])
                acc = f if acc is None else acc + f
            return (acc / len(self._central_views())).astype(np.float32)
        bf16 = self._bf16() if bf16 is None else bf16
        acc = None
        flips = self._central_views()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for k in flips:
                h = self._encode(grey, [View(flip=k)] * len(grey), bf16)
                feats = []
                for s in range(0, len(h), 64):
                    feats.append(self._tail(h[s:s + 64].float()).float())
                f = torch.cat(feats)
                acc = f if acc is None else acc + f
        return (acc / len(flips)).numpy().astype(np.float32)

    # ------------------------------------------------------------------ fit
    def _inner_split(self, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_splits = max(2, int(round(1.0 / float(self.val_fraction))))
        n_pat_min = min(len(np.unique(groups[y == c])) for c in (0, 1))
        if n_pat_min < 2:
            raise ModelError(f"fine-tuning needs at least 2 patients per class for inner validation, got {n_pat_min}")
        cv = StratifiedGroupKFold(n_splits=min(n_splits, n_pat_min), shuffle=True, random_state=int(self.random_state))
        tr, va = next(cv.split(np.zeros(len(y)), y, groups))
        return tr, va

    def _draw_views(self, n: int, rng: np.random.Generator, v: int) -> list[View]:
        s, d, g = float(self.scale_jitter), float(self.shift_jitter), float(self.gamma_jitter)
        return [View(scale=float(rng.uniform(1 - s, 1 + s)), dx=float(rng.uniform(-d, d)), dy=float(rng.uniform(-d, d)),
                     gamma=float(np.exp(rng.uniform(-g, g))), flip=(v + int(o)) % 8)
                for o in rng.integers(0, 8, size=n)]

    def fit(self, X: Any, y: Any, groups: Any = None) -> "FineTuneHead":
        """Fine-tune on ROI rows ``X`` with labels ``y`` (1 malignant); inner validation grouped by ``groups``.

        Returns
        -------
        FineTuneHead
            ``self``, fitted.
        """
        import torch

        self._check()
        grey = self._rows(X)
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) != 2:
            raise ModelError("training needs both benign and malignant lesions")
        g = np.arange(len(y)) if groups is None else np.asarray(groups)
        t0 = time.perf_counter()
        self._fit(grey, y, g, torch)
        self.selection_["fit_seconds"] = round(time.perf_counter() - t0, 1)
        log.info("fine-tuned %s: kept epoch %d of %d (inner-validation AUC %.3f) in %.0f s",
                 self.backbone, self.selection_["best_epoch"], self.selection_["epochs_run"],
                 self.selection_["best_val_auc"], self.selection_["fit_seconds"])
        return self

    def _fit(self, grey: np.ndarray, y: np.ndarray, g: np.ndarray, torch: Any) -> None:
        # Own generators (never the global ones: exporting the encoder to ONNX in the first fit of a
        # process must not change what a later fit with the same seed draws).
        rng = np.random.default_rng(int(self.random_state))
        gen = torch.Generator().manual_seed(int(self.random_state))
        self.__dict__.pop("_ort_full", None)
        self._build()
        bf16 = self._bf16()
        tr, va = self._inner_split(y, g)
        self.classes_ = np.array([0, 1])
        t_enc = time.perf_counter()
        V = max(1, int(self.n_views))
        cache = [self._encode(grey[tr], self._draw_views(len(tr), rng, v), bf16) for v in range(V)]
        enc_s = time.perf_counter() - t_enc
        log.info("fine-tune: %d training ROIs x %d views encoded by the frozen blocks in %.0f s", len(tr), V, enc_s)
        ytr = torch.from_numpy(y[tr].astype(np.float32))
        n_pos = float(y[tr].sum())
        n_neg = float(len(tr) - n_pos)
        w_pos, w_neg = len(tr) / (2.0 * n_pos), len(tr) / (2.0 * n_neg)
        eps = float(self.label_smoothing)
        target = ytr * (1.0 - eps) + eps / 2.0
        weight = torch.where(ytr > 0.5, torch.tensor(w_pos), torch.tensor(w_neg))

        trainable = self._trainable_modules()
        for m in trainable:
            m.requires_grad_(True)
        self.fc_.requires_grad_(True)
        params = [{"params": [p for m in trainable for p in m.parameters()], "lr": float(self.lr)},
                  {"params": list(self.fc_.parameters()), "lr": float(self.lr) * 10.0}]
        opt = torch.optim.AdamW(params, weight_decay=float(self.weight_decay))
        bs = int(self.batch_size)
        steps_per_epoch = max(1, math.ceil(len(tr) / bs))
        total = steps_per_epoch * int(self.epochs)
        warm = max(1, int(round(float(self.warmup_epochs) * steps_per_epoch)))

        def lr_factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        def drop(f: torch.Tensor, p: float = 0.2) -> torch.Tensor:
            keep = (torch.rand(f.shape, generator=gen) >= p).to(f.dtype)
            return f * keep / (1.0 - p)

        val_cache = [self._encode(grey[va], [View(flip=k)] * len(va), bf16) for k in self._central_views()]
        history: list[dict[str, float]] = []
        best: tuple[float, int, dict[str, Any]] | None = None
        since_best = 0
        for epoch in range(int(self.epochs)):
            for m in trainable:
                m.train()
            t_ep = time.perf_counter()
            order = rng.permutation(len(tr))
            view_of = (epoch + rng.integers(0, V, size=len(tr))) % V
            loss_sum = 0.0
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                if len(idx) < 2:  # batch-norm needs two samples
                    continue
                h = torch.stack([cache[view_of[i]][i] for i in idx]).float()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logit = self.fc_(drop(self._tail(h))).float().squeeze(1)
                ti = torch.from_numpy(idx)
                loss = (torch.nn.functional.binary_cross_entropy_with_logits(logit, target[ti], reduction="none")
                        * weight[ti]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * len(idx)
            for m in trainable:
                m.eval()
            val_scores = self._scores_from_cache(val_cache, bf16)
            auc = float(roc_auc_score(y[va], val_scores)) if len(np.unique(y[va])) == 2 else float("nan")
            history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / len(tr), 5), "val_auc": round(auc, 5),
                            "seconds": round(time.perf_counter() - t_ep, 1)})
            log.info("fine-tune epoch %d/%d: loss %.4f, inner-validation AUC %.3f (%.0f s)", epoch + 1,
                     self.epochs, loss_sum / len(tr), auc, time.perf_counter() - t_ep)
            if best is None or auc > best[0]:
                state = {"tail": [copy.deepcopy(m.state_dict()) for m in trainable],
                         "fc": copy.deepcopy(self.fc_.state_dict()), "val_scores": val_scores}
                best = (auc, epoch + 1, state)
                since_best = 0
            else:
                since_best += 1
                if since_best >= int(self.patience):
                    break
        assert best is not None
        for m, sd in zip(trainable, best[2]["tail"]):
            m.load_state_dict(sd)
        self.fc_.load_state_dict(best[2]["fc"])
        for m in (self.net_, self.fc_):
            m.eval().requires_grad_(False)
        from mammocadx.model.selection import youden_threshold

        self.inner_split_ = (tr, va)
        self.threshold_ = 0.0
        # Scored again by the prediction path (ONNX Runtime fp32 where available, not the bf16 training
        # path), so that the threshold and any calibration fitted on them apply to predictions as they are.
        val_scores = self.decision_function(grey[va])
        self.threshold_ = float(youden_threshold(y[va], val_scores))
        self.val_scores_ = np.asarray(val_scores, dtype=float)
        self.val_labels_ = y[va].copy()
        self.selection_ = {
            "inner_split": "one stratified patient-grouped split of the training rows",
            "n_inner_train": int(len(tr)), "n_inner_val": int(len(va)),
            "best_epoch": int(best[1]), "best_val_auc": round(float(best[0]), 5),
            "epochs_run": len(history), "history": history, "precision": "bf16" if bf16 else "fp32",
            "cached_views": V, "encode_seconds": round(enc_s, 1),
            "trainable_parameters": int(sum(p.numel() for m in trainable for p in m.parameters())
                                        + sum(p.numel() for p in self.fc_.parameters())),
        }

    def held_out_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)``: the inner-validation rows (indices into the fit's rows) and their scores.

        Out-of-sample for this network (its epoch and threshold were chosen on them, its weights never
        trained on them): what calibration and operating points are fitted on instead of inner CV.
        """
        self._check_fitted()
        return self.inner_split_[1], self.val_scores_

    def selection_record(self) -> dict[str, Any]:
        """What fitting chose on the inner validation split (kept epoch, AUC per epoch, split sizes, timings)."""
        return dict(getattr(self, "selection_", {}) or {})

    def _scores_from_cache(self, caches: list[Any], bf16: bool) -> np.ndarray:
        import torch

        acc = None
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for h in caches:
                f = torch.cat([self._tail(h[s:s + 64].float()).float() for s in range(0, len(h), 64)])
                acc = f if acc is None else acc + f
            pooled = acc / len(caches)
            return self.fc_(pooled).float().squeeze(1).numpy().astype(float)

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "fc_") or not hasattr(self, "threshold_"):
            raise ModelError("this fine-tuned head is not fitted")

    def pooled_features(self, X: Any) -> np.ndarray:
        """Pooled fine-tuned features of ROI rows, averaged over the test-time views ``(N, D)``."""
        self._check_fitted()
        import torch

        with torch.inference_mode():
            return self._pooled(self._rows(X))

    def decision_function(self, X: Any) -> np.ndarray:
        """Malignancy logit of each ROI row (mean over test-time views; positive = towards malignant)."""
        f = self.pooled_features(X)
        return f.astype(np.float64) @ self.coef_.ravel() + float(self.intercept_[0])

    def predict(self, X: Any) -> np.ndarray:
        """1 (malignant) where the logit exceeds ``threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    @property
    def coef_(self) -> np.ndarray:
        """Weights of the linear layer ``(1, D)`` (float64)."""
        return self.fc_.weight.detach().double().numpy().copy()

    @property
    def intercept_(self) -> np.ndarray:
        """Bias of the linear layer ``(1,)`` (float64)."""
        return self.fc_.bias.detach().double().numpy().copy()

    # ------------------------------------------------------------------ as backbone + linear head
    def linear_head(self) -> LogisticRegression:
        """The binary linear layer as a fitted scikit-learn estimator (for Grad-CAM and model files)."""
        self._check_fitted()
        lr = LogisticRegression()
        lr.coef_ = self.coef_
        lr.intercept_ = self.intercept_
        lr.classes_ = np.array([0, 1])
        lr.n_features_in_ = int(self.coef_.shape[1])
        return lr

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every weight of the fine-tuned network (timm key names) as float32 arrays."""
        self._check_fitted()
        return {k: v.detach().cpu().numpy().copy() for k, v in self.net_.state_dict().items()}

    def as_backbone(self, weights_sha256: str) -> "Backbone":
        """The fine-tuned network as a :class:`~mammocadx.features.backbones.Backbone` (for Grad-CAM)."""
        from mammocadx.features.backbones import Backbone, backbone_spec

        self._check_fitted()
        spec = backbone_spec(self.backbone)
        return Backbone(name=self.backbone, model=self.net_, input_size=int(self.input_size), mean=spec.mean,
                        std=spec.std, interpolation=spec.interpolation, feature_dim=int(self.net_.num_features),
                        weights_path=None, weights_sha256=weights_sha256)

    def central_rgb(self, X: Any) -> np.ndarray:
        """The pseudocolour RGB of the central crop of each ROI row ``(N, S, S, 3)`` (what Grad-CAM explains)."""
        grey = self._rows(X)
        return np.stack([render_view(gr, View(), self.input_size, self.margin, self.pseudocolor) for gr in grey])

    # ------------------------------------------------------------------ files (no pickle)
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, meta)``: every weight as float32 arrays and the rest as JSON-friendly values."""
        self._check_fitted()
        arrays = {f"net.{k}": v for k, v in self.state_arrays().items()}
        arrays["fc.weight"] = self.fc_.weight.detach().numpy().copy()
        arrays["fc.bias"] = self.fc_.bias.detach().numpy().copy()
        meta = {"params": self.get_params(), "threshold": float(self.threshold_), "selection": self.selection_}
        return arrays, meta

    @classmethod
    def from_saved(cls, network: dict[str, np.ndarray], linear: Any, card: dict[str, Any]) -> "FineTuneHead":
        """Rebuild from a model folder's parts: the network's weights, the saved linear-layer pipeline, the card."""
        arrays = {f"net.{k}": v for k, v in network.items()}
        lin = linear.steps[-1][1]
        arrays["fc.weight"] = np.asarray(lin.coef_, np.float32)
        arrays["fc.bias"] = np.asarray(lin.intercept_, np.float32)
        net = (card.get("head") or {}).get("network") or {}
        if not isinstance(net.get("params"), dict):
            raise ModelError("model card: a fine-tuned model must record its network's parameters")
        meta = {"params": net["params"], "threshold": float(getattr(linear, "threshold_", card["threshold"])),
                "selection": (card.get("head") or {}).get("selection")}
        return cls.from_arrays(arrays, meta)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "FineTuneHead":
        """Inverse of :meth:`to_arrays` (strict: every weight must find its place with its shape)."""
        import torch

        head = cls(**meta["params"])
        head._check()
        head._build()
        net_sd = {k[4:]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if k.startswith("net.")}
        try:
            head.net_.load_state_dict(net_sd, strict=True)
            head.fc_.load_state_dict({"weight": torch.from_numpy(np.asarray(arrays["fc.weight"])),
                                      "bias": torch.from_numpy(np.asarray(arrays["fc.bias"]))}, strict=True)
        except (RuntimeError, KeyError) as exc:
            raise ModelError(f"the fine-tuned network's weights do not fit {head.backbone}: {exc}") from exc
        for m in (head.net_, head.fc_):
            m.eval().requires_grad_(False)
        head.classes_ = np.array([0, 1])
        head.threshold_ = float(meta["threshold"])
        head.selection_ = dict(meta.get("selection") or {})
        return head
