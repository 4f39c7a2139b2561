"""The full HTML report of a run: one self-contained file a person opens in a browser.

Sections: protocol; per mode the metrics with bootstrap 95 % intervals, the ROC
curves per fold with their mean (the paper's figure 8) and the confusion matrix
(figure 7); the mean ROCs of all modes; the comparison table in the layout of
the paper's table 4 with every row's protocol; the ablation table when present;
a Grad-CAM gallery when images are given; the exact command, versions and seed.

Images are embedded as base64 ``data:`` URIs (no network, no external CSS/JS),
so the file can be mailed or archived on its own.
"""
from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mammocadx.evaluate.metrics import METRICS
from mammocadx.io.atomic import atomic_write_text
from mammocadx.evaluate.table4 import to_html as table4_html


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2329;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #d8dde3;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}td,th{border:1px solid #cfd6de;padding:.3em .6em;text-align:right;vertical-align:top}
th{background:#f1f4f7;text-align:left}td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}
tr.ours td{background:#eef6ee;font-weight:600}
.figs img{max-width:48%;margin:.5%;border:1px solid #e4e8ec}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;width:230px}.gallery img{width:100%}
.gallery figcaption{font-size:.82em;color:#444}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.6em 1em}
code,pre{background:#f4f5f7;padding:.1em .3em;border-radius:3px}pre{padding:.6em;white-space:pre-wrap}
.muted{color:#5c6670;font-size:.9em}
"""


def write_page(path: str | Path, title: str, body: str) -> Path:
    """The one HTML writer: a self-contained page (shared style, nothing from the network), written atomically.

    Parameters
    ----------
    path : path
        The ``.html`` file.
    title : str
        Page title (escaped here).
    body : str
        The page's body, already HTML.
    """
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head><body>\n"
           f"{body}\n</body></html>\n")
    return atomic_write_text(path, doc)


def _img(path: str | Path | None, alt: str, base: Path | None = None) -> str:
    """``<img>`` with the file embedded as base64 (empty string if the file is missing)."""
    if path is None:
        return ""
    p = Path(path)
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.is_file():
        return ""
    mime = mimetypes.guess_type(p.name)[0] or "image/png"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "n/a" if f != f else f"{f:.{digits}f}"


def _metrics_table(mode: Mapping[str, Any]) -> str:
    summary = mode.get("summary") or {}
    ci = mode.get("ci") or {}
    rows = []
    for m in METRICS:
        s = summary.get(m) or {}
        lo_hi = ci.get(m)
        ci_txt = f"[{_num(lo_hi[0])}, {_num(lo_hi[1])}]" if lo_hi else "n/a"
        rows.append(f"<tr><th>{m}</th><td>{_num(s.get('mean'))}</td><td>{ci_txt}</td><td>{_num(s.get('sd'))}</td>"
                    f"<td>{_num(s.get('min'))} – {_num(s.get('max'))}</td></tr>")
    return ("<table><tr><th>metric</th><th>mean over repeats</th><th>95 % CI (patient bootstrap)</th>"
            "<th>sd over repeats</th><th>range over repeats</th></tr>" + "".join(rows) + "</table>")


def _protocol_text(p: Mapping[str, Any]) -> str:
    if not p:
        return ""
    parts = [f"<b>{html.escape(str(p.get('name', '')))}</b>"]
    if p.get("folds"):
        parts.append(f"{p.get('folds')} folds × {p.get('repeats')} repeats, seed {p.get('seed')}")
    if p.get("n_lesions") is not None:
        parts.append(f"{p.get('n_lesions')} lesions ({p.get('n_malignant')} malignant) from {p.get('n_patients')} patients")
    parts.append(f"grouped by {html.escape(str(p.get('grouping', 'patient')))}")
    parts.append("AUC from the decision function")
    return "; ".join(parts) + "."


def _selection_text(mode: Mapping[str, Any]) -> str:
    folds = mode.get("folds") or []
    counts = [f.get("pca_components") for f in folds if f.get("pca_components") is not None]
    thr = [f.get("threshold") for f in folds if f.get("threshold") is not None]
    out = []
    if counts:
        out.append(f"PCA components used per fold (capped or searched on the training folds only): {', '.join(str(c) for c in counts)}")
    if thr and any(abs(float(t)) > 0 for t in thr):
        out.append("thresholds per fold (training folds only): " + ", ".join(_num(t) for t in thr))
    return "<p class='muted'>" + "<br>".join(html.escape(o) for o in out) + "</p>" if out else ""


def _ablation_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = ("<tr><th>factor</th><th>setting</th><th>configuration</th><th>AUC mean ± sd (repeats)</th>"
            "<th>AUC 95 % CI</th><th>accuracy</th><th>sensitivity</th><th>specificity</th></tr>")
    body = []
    for r in rows:
        ci = r.get("auc_ci") or [None, None]
        cls = ' class="ours"' if r.get("baseline") else ""
        body.append(
            f"<tr{cls}><td>{html.escape(str(r.get('factor', '')))}</td><td>{html.escape(str(r.get('setting', '')))}</td>"
            f"<td>{html.escape(str(r.get('label', '')))}</td>"
            f"<td>{_num(r.get('auc_mean'))} ± {_num(r.get('auc_sd'))}</td><td>[{_num(ci[0])}, {_num(ci[1])}]</td>"
            f"<td>{_num(r.get('accuracy_mean'))}</td><td>{_num(r.get('sensitivity_mean'))}</td>"
            f"<td>{_num(r.get('specificity_mean'))}</td></tr>")
    return "<table>" + head + "".join(body) + "</table>"


def write_html_report(
    run_dir: str | Path,
    results: Mapping[str, Any],
    title: str = "mammocadx evaluation",
    gradcam: Sequence[tuple[str | Path, str]] | None = None,
    filename: str = "report.html",
) -> Path:
    """Write ``run_dir/report.html``.

    Parameters
    ----------
    run_dir : path
        Folder the report goes into; relative image paths are resolved against it.
    results : dict
        ``{"dataset": str, "protocol": {...}, "modes": {name: mode}, "table4": [rows],
        "ablation": [rows], "mean_roc_png": path, "ablation_png": path, "command": str,
        "versions": {...}, "seed": int, "notes": [str]}``. A ``mode`` is
        ``{"summary": {metric: {"mean", "sd", "min", "max"}}, "ci": {metric: (lo, hi)},
        "config": {...}, "folds": [...], "roc_png": path, "confusion_png": path, "description": str}``
        (``summary``/``folds``/``config`` as in ``metrics.json``). Every key is optional
        except ``modes``.
    gradcam : list of (image path, caption), optional
        Grad-CAM overlays to show in a gallery.

    Returns
    -------
    Path
        The report file.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    e = html.escape
    parts: list[str] = [
        f"<h1>{e(title)}</h1>",
        f"<p class='muted'>Dataset: {e(str(results.get('dataset', '')))} · written "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>",
        "<p class='note'>Research use only; not a medical device. Every score below is out-of-fold: it was "
        "produced by a model that never saw that patient. Everything fitted (scaler, PCA, component count, "
        "threshold, classifier) was fitted inside the training folds. Intervals resample patients.</p>",
    ]
    proto = results.get("protocol") or {}
    if proto:
        parts.append(f"<h2>Protocol</h2><p>{_protocol_text(proto)}</p>")
    for note in results.get("notes") or []:
        parts.append(f"<p>{e(str(note))}</p>")
    modes: Mapping[str, Any] = results.get("modes") or {}
    for name, mode in modes.items():
        parts.append(f"<h2>Mode <code>{e(name)}</code></h2>")
        if mode.get("description"):
            parts.append(f"<p>{e(str(mode['description']))}</p>")
        if mode.get("protocol") and not proto:
            parts.append(f"<p>{_protocol_text(mode['protocol'])}</p>")
        parts.append(_metrics_table(mode))
        parts.append(_selection_text(mode))
        figs = _img(mode.get("roc_png"), f"ROC per fold and mean, {name}", run_dir) + \
            _img(mode.get("confusion_png"), f"confusion matrix, {name}", run_dir)
        if figs:
            parts.append(f"<div class='figs'>{figs}</div>")
        if mode.get("posthoc"):  # calibration, operating points, breast level, abstention, subgroups
            from mammocadx.evaluate.calibration_report import POSTHOC_FIGURES, posthoc_html

            parts.append(posthoc_html(mode["posthoc"]).replace("h2>", "h3>"))
            figs = "".join(_img(f"{name}/{f}", f, run_dir) for f in POSTHOC_FIGURES)
            parts.append(f"<div class='figs'>{figs}</div>" if figs else "")
        if mode.get("config"):
            cfg = ", ".join(f"{k}={v}" for k, v in mode["config"].items() if not isinstance(v, dict))
            parts.append(f"<p class='muted'>Configuration: {e(cfg)}</p>")
    if results.get("mean_roc_png"):
        parts.append("<h2>Mean ROC of the modes</h2><div class='figs'>" + _img(results["mean_roc_png"], "mean ROC", run_dir) + "</div>")
    if results.get("table4"):
        parts.append("<h2>Comparison with published results (layout of the paper's table 4)</h2>"
                     "<p>Rows differ in dataset and protocol: compare only rows with the same dataset <i>and</i> "
                     "protocol. k-fold CV without patient grouping inflates results (Petrini et al. 2022: "
                     "0.848 official split vs 0.934 5-fold on the same data). Our rows: mean over repeats "
                     "[95 % patient-bootstrap CI].</p>")
        parts.append(table4_html(results["table4"]))
    if results.get("ablation"):
        parts.append("<h2>Ablations</h2><p>One factor changed at a time from the baseline (highlighted); the "
                     "same folds for every row.</p>")
        parts.append(_ablation_table(results["ablation"]))
        if results.get("ablation_png"):
            parts.append("<div class='figs'>" + _img(results["ablation_png"], "ablation forest plot", run_dir) + "</div>")
    if gradcam:
        items = "".join(f"<figure>{_img(p, c, run_dir)}<figcaption>{e(str(c))}</figcaption></figure>" for p, c in gradcam)
        parts.append(f"<h2>Grad-CAM gallery</h2><div class='gallery'>{items}</div>")
    parts.append("<h2>Reproduce</h2>")
    if results.get("command"):
        parts.append(f"<pre>{e(str(results['command']))}</pre>")
    if results.get("seed") is not None:
        parts.append(f"<p>Seed: {e(str(results['seed']))}</p>")
    versions = results.get("versions") or {}
    if versions:
        parts.append("<p class='muted'>Versions: " + e(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    return write_page(run_dir / filename, title, "\n".join(parts))
