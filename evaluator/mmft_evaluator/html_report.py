"""The self-contained HTML report: one table comparing the models side by side with relative changes against a
baseline model (like the seed's results table), then the confusion matrices and curves embedded as data URIs."""

from __future__ import annotations

import base64
import html
from pathlib import Path

ROWS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("precision", "Precision"),
    ("recall", "Recall (sensitivity)"),
    ("specificity", "Specificity"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC (average precision)"),
)
COUNT_ROWS = (("tp", "True positives"), ("fp", "False positives"), ("tn", "True negatives"), ("fn", "False negatives"))

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.35rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}.up{color:#17703a}.down{color:#b3261e}.muted{color:#777}
.error{color:#b3261e}figure{display:inline-block;margin:.5rem}img{max-width:100%}
"""


def relative_change(value: float | None, baseline: float | None) -> str:
    if value is None or baseline is None or baseline == 0:
        return ""
    change = (value - baseline) / abs(baseline) * 100
    css = "up" if change > 0 else "down" if change < 0 else "muted"
    return f' <span class="{css}">({change:+.1f}%)</span>'


def _value(result: dict, key: str) -> str:
    value = result.get("metrics", {}).get(key)
    if value is None:
        reason = result.get("metrics", {}).get("undefined", {}).get(key, "")
        return f'<span class="muted" title="{html.escape(reason)}">n/a</span>'
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def _image(path: Path | None, caption: str) -> str:
    if path is None or not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">' \
           f"<figcaption>{html.escape(caption)}</figcaption></figure>"


def render_report(summary: dict, images: dict[str, Path | None]) -> str:
    """``summary`` is the metrics.json document; ``images`` maps captions to PNG paths (None: not drawn)."""
    models: dict = summary["models"]
    baseline_name = summary.get("baseline")
    baseline = models.get(baseline_name, {}) if baseline_name else {}
    ok = {name: result for name, result in models.items() if not result.get("error")}
    header = "".join(f"<th>{html.escape(name)}</th>" for name in ok)
    lines = []
    for key, label in ROWS:
        cells = []
        for name, result in ok.items():
            change = "" if name == baseline_name else relative_change(
                result["metrics"].get(key), baseline.get("metrics", {}).get(key))
            cells.append(f"<td>{_value(result, key)}{change}</td>")
        lines.append(f"<tr><td>{label}</td>{''.join(cells)}</tr>")
    for key, label in COUNT_ROWS:
        lines.append(f"<tr><td>{label}</td>{''.join(f'<td>{_value(r, key)}</td>' for r in ok.values())}</tr>")
    lines.append("<tr><td>Threshold</td>" + "".join(
        f"<td>{r['threshold']:.4g}</td>" if r.get("threshold") is not None else '<td class="muted">n/a</td>'
        for r in ok.values()) + "</tr>")
    if any(r.get("unparsed") for r in ok.values()):
        lines.append("<tr><td>Unparseable answers (counted as negative)</td>" + "".join(
            f"<td>{r.get('unparsed', 0):,}</td>" for r in ok.values()) + "</tr>")
    failures = "".join(
        f'<li class="error"><b>{html.escape(name)}</b> ({html.escape(result.get("spec", ""))}): '
        f"{html.escape(result['error'])}</li>"
        for name, result in models.items() if result.get("error"))
    settings = summary.get("settings", {})
    settings_rows = "".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(str(value))}</td></tr>"
        for key, value in settings.items())
    specs = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(result.get('spec', ''))}</td></tr>"
        for name, result in models.items())
    figures = "".join(_image(path, caption) for caption, path in images.items())
    best = summary.get("best")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>mmft evaluation</title>
<style>{_STYLE}</style></head><body>
<h1>Model evaluation</h1>
<p>{summary.get('examples', 0):,} test examples ({summary.get('positives', 0):,} positive).
Best by balanced accuracy: <b>{html.escape(best or 'none')}</b>.
Relative changes are against <b>{html.escape(baseline_name or 'none')}</b>.</p>
<table><tr><th>Metric</th>{header}</tr>{''.join(lines)}</table>
{f'<h2>Models that failed</h2><ul>{failures}</ul>' if failures else ''}
<h2>Charts</h2>{figures}
<h2>Models</h2><table><tr><th>Name</th><th>Spec</th></tr>{specs}</table>
<h2>Settings</h2><table>{settings_rows}</table>
</body></html>
"""
