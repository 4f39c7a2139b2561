"""The comparison table in the layout of the paper's table 4, protocols named.

Published rows are data (``mammocadx/data/published_results.json``), never code.
Our rows come from runs (mean over repeats of pooled out-of-fold metrics, with
bootstrap intervals where available). Every row names its dataset and its
protocol, so nobody compares an official-split number with a k-fold one, or a
CBIS-DDSM number with a mini-MIAS one.
"""
from __future__ import annotations

import csv
import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

#: Metric columns of the paper's table 4 (plus AUC), in its order.
TABLE4_COLUMNS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
COLUMN_TITLES = {"accuracy": "Accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
                 "precision": "Precision", "f1": "F1", "auc": "AUC"}


def published_rows() -> list[dict[str, Any]]:
    """Published rows (paper's table 4, its k-fold numbers, Petrini et al. 2022, reference points)."""
    text = resources.files("mammocadx").joinpath("data/published_results.json").read_text(encoding="utf-8")
    rows = json.loads(text)["rows"]
    for r in rows:
        r.setdefault("ours", False)
    return rows


def our_row(
    method: str,
    dataset: str,
    protocol: str,
    metrics: Mapping[str, float | None],
    ci: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """A row of ours: ``metrics`` point values, ``ci`` optional ``{metric: (lo, hi)}``."""
    row: dict[str, Any] = {"method": method, "dataset": dataset, "protocol": protocol, "source": "this run", "ours": True}
    for c in TABLE4_COLUMNS:
        v = metrics.get(c)
        row[c] = None if v is None else float(v)
        if ci and c in ci and ci[c] is not None:
            row[f"{c}_ci"] = [float(ci[c][0]), float(ci[c][1])]
    return row


def table4(ours: Sequence[dict[str, Any]], include_published: bool = True) -> list[dict[str, Any]]:
    """Our rows first, then the published ones; every row has ``method``, ``dataset``, ``protocol``."""
    rows = list(ours) + (published_rows() if include_published else [])
    for r in rows:
        for key in ("method", "dataset", "protocol"):
            if not r.get(key):
                raise ValueError(f"table 4 row {r.get('method')!r} lacks {key!r}")
    return rows


def _cell(r: Mapping[str, Any], c: str) -> str:
    v = r.get(c)
    if v is None:
        return "N/A"
    ci = r.get(f"{c}_ci")
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: method | dataset | protocol | metrics (``value [95 % CI]``)."""
    head = ["Method", "Dataset", "Protocol"] + [COLUMN_TITLES[c] for c in TABLE4_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"**{r['method']}**" if r.get("ours") else str(r["method"])
        lines.append("| " + " | ".join([name, str(r["dataset"]), str(r["protocol"])] + [_cell(r, c) for c in TABLE4_COLUMNS]) + " |")
    return "\n".join(lines) + "\n"


def to_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """HTML ``<table>`` of the rows (ours highlighted)."""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ["Method", "Dataset", "Protocol", "Source"]
                   + [COLUMN_TITLES[c] for c in TABLE4_COLUMNS])
    body = []
    for r in rows:
        cls = ' class="ours"' if r.get("ours") else ""
        cells = [html.escape(str(r.get(k, ""))) for k in ("method", "dataset", "protocol", "source")]
        cells += [html.escape(_cell(r, c)) for c in TABLE4_COLUMNS]
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="table4"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def write_table4(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, stem: str = "table4") -> dict[str, Path]:
    """Write ``table4.json``, ``table4.csv`` and ``table4.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(list(rows), indent=2), encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "dataset", "protocol", "source", "ours"] + [x for c in TABLE4_COLUMNS for x in (c, f"{c}_lo", f"{c}_hi")])
        for r in rows:
            vals: list[Any] = [r["method"], r["dataset"], r["protocol"], r.get("source", ""), int(bool(r.get("ours")))]
            for c in TABLE4_COLUMNS:
                ci = r.get(f"{c}_ci") or [None, None]
                vals += [r.get(c), ci[0], ci[1]]
            w.writerow(["" if v is None else v for v in vals])
    paths["md"].write_text(to_markdown(rows), encoding="utf-8")
    return paths
