"""The report page: HTML text from a :class:`~unetkit.report.collect.RunContent`.

Self-contained by construction: inline CSS, a few lines of inline script (sortable tables, one
opacity slider for the label layers of every overlay), images as ``data:`` URIs, no external
reference of any kind. Every value from the run is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from unetkit.report.collect import RunContent, curves_png

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;
color:#1d1d1f}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:12px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f0f0f0;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:14px}.ov figure{margin:0}
.stack{position:relative;display:inline-block}.stack img{display:block;width:300px;
image-rendering:pixelated}.stack img.layer{position:absolute;left:0;top:0}
.pair{display:flex;gap:6px}.note{color:#8a5a00}
"""

SCRIPT = """
function sortTable(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th);
const rows=[...t.tBodies[0].rows],asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
const key=r=>{const v=r.cells[i].dataset.v??r.cells[i].textContent;const n=parseFloat(v);
return isNaN(n)?v:n};rows.sort((a,b)=>{const x=key(a),y=key(b);
return (x>y?1:x<y?-1:0)*(asc?1:-1)});rows.forEach(r=>t.tBodies[0].appendChild(r))}
function setOpacity(v){document.querySelectorAll('img.layer').forEach(
i=>i.style.opacity=v/100);document.getElementById('opv').textContent=v+'%'}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return '<td data-v="">-</td>'
        shown = f"{int(value)}" if value.is_integer() and abs(value) < 1e9 else f"{value:.4g}"
        return f'<td data-v="{value:.6g}">{shown}</td>'
    return f"<td>{esc(value)}</td>"


def table(rows: Sequence[Mapping[str, Any]], table_id: str) -> str:
    """A sortable table (click a header) of dict rows; columns in first-seen order."""
    if not rows:
        return "<p>none</p>"
    columns: list[str] = []
    for r in rows:
        columns += [c for c in r if c not in columns]
    head = "".join(f'<th onclick="sortTable(this)">{esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(_cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows
    )
    return (
        f'<table class="sortable" id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def markdown(text: str) -> str:
    """The small Markdown of a model card (headings, tables, code blocks, paragraphs)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre>{esc(chr(10).join(lines[i + 1 : j]))}</pre>")
            i = j + 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= {"-", ":"} for c in cells):
                    rows.append(cells)
                i += 1
            out.append(
                "<table>"
                + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
                + "</table>"
            )
            continue
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 2, 6)
            out.append(f"<h{level}>{esc(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{esc(line)}</p>")
        i += 1
    return "\n".join(out)


def _per_class(content: RunContent) -> list[dict[str, Any]]:
    """Per-class rows: the best validation epoch's Dice, and the evaluation's when given."""
    rows: list[dict[str, Any]] = []
    best = None
    scored = [r for r in content.history if r.get("val_dice")]
    if scored:
        best = max(scored, key=lambda r: float(r["val_dice"]))
    evaluation = (content.evaluation or {}).get("per_class", {})
    for c, name in enumerate(content.class_names):
        row: dict[str, Any] = {"class": name if name == str(c) else f"{c} {name}"}
        if best is not None:
            row["val Dice (best epoch)"] = _number(best.get(f"dice_{name}", "nan"))
        if str(c) in evaluation:
            for metric in ("dice", "iou", "hd95"):
                value = evaluation[str(c)].get(metric)
                row[f"eval {metric}"] = float("nan") if value is None else float(value)
        rows.append(row)
    return rows


def _evaluation_images(evaluation: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in evaluation.get("per_image", []):
        row: dict[str, Any] = {"image": entry.get("name", "?")}
        per_class = entry.get("per_class", {})
        dices = [v.get("dice") for k, v in per_class.items() if k != "0"]
        dices = [d for d in dices if d is not None]
        row["dice (foreground mean)"] = sum(dices) / len(dices) if dices else float("nan")
        for k, v in per_class.items():
            row[f"dice {k}"] = float("nan") if v.get("dice") is None else float(v["dice"])
        row["pixel error"] = _number(entry.get("pixel_error"))
        rows.append(row)
    rows.sort(key=lambda r: (math.isnan(r["dice (foreground mean)"]), r["dice (foreground mean)"]))
    return rows


def _overlays(content: RunContent) -> str:
    if not content.overlays:
        return "<p>no validation overlays (see the notes above)</p>"
    figures = []
    for ov in content.overlays:
        pair = "".join(
            f'<div class="stack"><img alt="{esc(ov.name)} image" src="{ov.image}">'
            f'<img class="layer" alt="{esc(ov.name)} {what}" src="{uri}"><div>{what}</div></div>'
            for what, uri in (("truth", ov.truth), ("prediction", ov.prediction))
        )
        figures.append(
            f'<div class="ov"><figure><div class="pair">{pair}</div>'
            f"<figcaption>{esc(ov.name)}</figcaption></figure></div>"
        )
    slider = (
        '<p>label opacity <input type="range" id="opacity" min="0" max="100" value="50" '
        'oninput="setOpacity(this.value)"> <span id="opv">50%</span></p>'
    )
    return slider + '<div class="gallery">' + "".join(figures) + "</div>"


def render(content: RunContent, curves: str | None = None) -> str:
    """The whole page."""
    curves = curves if curves is not None else curves_png(content.history)
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in content.notes)
    per_image = content.per_image
    evaluation = ""
    if content.evaluation is not None:
        mean = ", ".join(f"{k} {v:.4f}" for k, v in content.evaluation["mean"].items()
                         if isinstance(v, int | float))  # fmt: skip
        evaluation = (
            f"<h3>Evaluation (--evaluation)</h3><p>{esc(mean)}</p>"
            + table(_evaluation_images(content.evaluation), "eval-images")
        )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>unetkit report: {esc(content.run.name)}</title>",
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>",
        f"<h1>unetkit report: {esc(content.run.resolve().name)}</h1>",
        notes,
        "<h2>Data</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in content.data_lines) + "</ul>",
        "<h2>Training curves</h2>",
        f'<img alt="training curves" src="{curves}">' if curves else "<p>no metrics.csv</p>",
        "<h2>Validation overlays (worst first)</h2>",
        _overlays(content),
        "<h2>Metrics per class</h2>",
        table(_per_class(content), "per-class"),
        "<h2>Metrics per image (worst first)</h2>",
        table(per_image, "per-image"),
        evaluation,
        "<h2>Metrics per epoch</h2>",
        table([{k: _number(v) for k, v in r.items()} for r in content.history], "epochs"),
        "<h2>Architecture (unetkit info)</h2>",
        f"<pre>{esc(content.architecture)}</pre>",
        "<h2>Model card</h2>",
        markdown(content.card),
        "<h2>Resolved config</h2>",
        f"<pre>{esc(content.config_yaml)}</pre>",
        "<script>setOpacity(document.getElementById('opacity')?.value ?? 50)</script>"
        if content.overlays
        else "",
        "</body></html>",
    ]
    return "\n".join(parts)
