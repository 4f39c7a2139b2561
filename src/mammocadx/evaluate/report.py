"""A short HTML report of a run that a person opens in a browser (self-contained, no network)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from mammocadx.evaluate.html_report import write_page
from mammocadx.evaluate.metrics import METRICS


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _head_text(cfg: dict[str, Any]) -> str:
    """The mode's head in words, with the settings that head takes (not SVM settings for a logistic regression)."""
    from mammocadx.errors import ConfigError
    from mammocadx.model.config import CADxConfig
    from mammocadx.model.heads import HEADS
    from mammocadx.model.modes import get_mode

    try:
        config = CADxConfig.from_dict(cfg)
    except ConfigError:
        return "n/a"
    settings = ", ".join(f"{k}={v}" for k, v in config.card_dict()["head"].items())
    return HEADS[get_mode(config.mode).head].description + (f" ({settings})" if settings else "")


def write_report(run_dir: Path, metrics: dict[str, Any], title: str = "mammocadx run") -> Path:
    """Write ``report.html`` next to ``metrics.json``, ``roc.png`` and ``confusion.png``."""
    p = metrics["protocol"]
    ci = metrics.get("ci95") or {}

    def _ci(m: str) -> str:
        lo, hi = ci.get(m, (None, None))
        return f"{_fmt(lo)} – {_fmt(hi)}"

    rows = "".join(
        f"<tr><th>{m}</th><td>{_fmt(s.get('mean'))}</td><td>{_fmt(s.get('sd'))}</td><td>{_ci(m)}</td>"
        f"<td>{_fmt(s.get('min'))} – {_fmt(s.get('max'))}</td></tr>"
        for m, s in ((m, metrics["summary"][m]) for m in METRICS)
    )
    cfg = metrics["config"]
    proto = (f"{html.escape(str(p.get('name')))}: {p.get('folds')} folds × {p.get('repeats')} repeats, seed {p.get('seed')}; "
             f"{p.get('n_lesions')} lesions ({p.get('n_malignant')} malignant) from {p.get('n_patients')} patients; "
             f"grouped by {p.get('grouping')}; AUC from the head's decision function.")
    skipped = metrics.get("skipped") or []
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{html.escape(s['sample_id'])}: {html.escape(s['reason'])}</li>" for s in skipped[:50])
        skipped_html = f"<h2>Skipped inputs ({len(skipped)})</h2><ul>{items}</ul>"
    gradcam_html = _gradcam_section(metrics.get("gradcam"))
    from mammocadx.evaluate.calibration_report import POSTHOC_FIGURES, posthoc_html

    posthoc = posthoc_html(metrics, [f for f in POSTHOC_FIGURES if (run_dir / f).is_file()])
    body = f"""<h1>{html.escape(title)}</h1>
<p class="note">Research use only; not a medical device. Numbers are out-of-fold: every score was produced by a
model that never saw that patient.</p>
<h2>Protocol</h2><p>{proto}</p>
<p>Mode <b>{html.escape(str(cfg['mode']))}</b>: backbone <code>{html.escape(str(cfg['backbone']))}</code>,
pseudocolour <code>{html.escape(str(cfg['pseudocolor']))}</code>, ROI context {cfg['context']},
segmentation {'on' if cfg['segment'] else 'off'}; head: {html.escape(_head_text(cfg))}.</p>
<h2>Metrics (mean over repeats of pooled out-of-fold predictions)</h2>
<table><tr><th>metric</th><th>mean</th><th>sd over repeats</th><th>95 % CI (patient bootstrap)</th><th>range over repeats</th></tr>{rows}</table>
<div class="figs"><img src="roc.png" alt="ROC curves"><img src="confusion.png" alt="confusion matrix"></div>
{posthoc}
{gradcam_html}
{skipped_html}
<h2>Reproduce</h2><p><code>{html.escape(str(metrics.get('command')))}</code></p>
<p>Versions: {html.escape(', '.join(f'{k} {v}' for k, v in metrics.get('versions', {}).items()))}</p>
"""
    return write_page(run_dir / "report.html", title, body)


_GROUP_NAMES = {"TP": "true positive", "FP": "false positive", "FN": "false negative", "TN": "true negative"}


def _gradcam_section(g: dict[str, Any] | None) -> str:
    """Gallery figures and the deletion-check table, when the run has them."""
    if not g:
        return ""
    parts = ["<h2>Grad-CAM of the decision (out-of-fold models)</h2>",
             "<p>Each lesion is explained by the model of the fold in which it was a test lesion. Warm colours mark "
             "the regions that pushed the score towards the class the model chose.</p>"]
    for e in g.get("gallery", []):
        panel = next((f for f in e["files"] if f.endswith("_gradcam.png")), None)
        if panel:
            parts.append(f"<figure><img style='max-width:100%' src='{html.escape(panel)}' alt='Grad-CAM'>"
                         f"<figcaption>{_GROUP_NAMES.get(e['group'], e['group'])}: {html.escape(e['sample_id'])} "
                         f"(truth {html.escape(e['label'])}, score {e['score']:+.3f}, fold {e['fold']})</figcaption></figure>")
    d = g.get("deletion")
    if d:
        a = d["aggregate"]
        p = a.get("wilcoxon_p_greater")
        parts.append(
            "<h3>Faithfulness: deletion check</h3><p>Pixels are deleted most-salient first and the score is "
            "recomputed; a faithful map moves the score more than random maps of the same smoothness. "
            f"Area under the score-drop curve, {a['n']} test lesions: heat-map {_fmt(a['mean_auc_drop_salient'])}, "
            f"random {_fmt(a['mean_auc_drop_random'])}; the heat-map wins on {100 * a['fraction_salient_better']:.0f} % "
            f"of lesions (one-sided Wilcoxon p = {'n/a' if p is None else f'{p:.3g}'}).</p>")
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(str(r['id']))}</td><td>{r.get('fold', '')}</td>"
            f"<td>{_fmt(r['score'])}</td><td>{_fmt(r['auc_drop_salient'])}</td><td>{_fmt(r['auc_drop_random'])}</td></tr>"
            for r in d["per_image"])
        parts.append("<table><tr><th>lesion</th><th>fold</th><th>score</th><th>drop (heat-map)</th>"
                     f"<th>drop (random)</th></tr>{rows}</table>")
    return "\n".join(parts)
