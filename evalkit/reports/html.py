"""The report documents: ``report.md`` and a self-contained ``report.html``.

Both render the same sections. The HTML embeds its PNGs as base64 data URIs and its CSS
inline, loads nothing from anywhere, and escapes every piece of text it did not write.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from evalkit.references import ORIGIN
from evalkit.reports.plots import Plot
from evalkit.reports.tables import ESTIMATE, Table

NA = "n/a"
LEGEND = (
    (
        "pub",
        ORIGIN,
        "copied from the card the run names (an STM32 model zoo card, or the one recorded "
        "with evalkit's demo model); not re-measured here",
    ),
    (
        "meas",
        "measured",
        "computed by evalkit from this run (every unlabelled figure) or read from STEdgeAI "
        "on-board reports",
    ),
    ("est", ESTIMATE, "evalkit's static reading of the ONNX graph; not an on-board figure"),
)
# "$" too: GitHub reads $...$ as math.
_MD_SPECIAL = set("\\`*_<>&|[]$")


@dataclass(frozen=True)
class Section:
    """A heading, one line on what it answers, and its tables and figures in reading order."""

    title: str
    intro: str
    items: tuple[Table | Plot, ...]


def format_cell(value: Any, spec: str) -> str:
    """One cell as displayed: ``n/a`` for a missing figure, numbers in their column's format."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return NA
    if isinstance(value, str) or not spec:
        return str(value)
    if spec.endswith("d"):
        return format(int(value), spec)
    number = float(value)
    digits = spec.rsplit(".", 1)[-1].rstrip("f")
    if digits.isdigit() and round(number, int(digits)) == 0:
        number = 0.0  # no "-0.00": a zero delta has no sign
    return format(number, spec)


def display_rows(table: Table) -> list[list[str]]:
    """The table's cells as strings, row by row."""
    columns = list(table.frame.columns)
    return [
        [format_cell(v, table.formats.get(c, "")) for c, v in zip(columns, row, strict=True)]
        for row in table.frame.itertuples(index=False, name=None)
    ]


def _md(text: str) -> str:
    """Backslash-escape Markdown's punctuation (CommonMark allows it on any ASCII punctuation)."""
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in text)


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned."""
    columns = [str(c) for c in table.frame.columns]
    align = ["---:" if table.formats.get(c) else ":---" for c in columns]
    lines = [
        "| " + " | ".join(_md(c) for c in columns) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(_md(v) for v in row) + " |" for row in display_rows(table)),
    ]
    return "\n".join(lines)


def markdown_document(
    title: str, header: Table, sections: Sequence[Section], lead: Table | None = None
) -> str:
    """``report.md``: the same content as the HTML, figures linked as files beside it."""
    parts = [f"# {_md(title)}", ""]
    if lead is not None:
        parts += [
            f"## {_md(lead.title)}",
            "",
            f"*{_md(lead.caption)}*",
            "",
            markdown_table(lead),
            "",
        ]
    parts += [f"- **{_md(label)}**: {_md(meaning)}" for _, label, meaning in LEGEND]
    parts += ["", markdown_table(header), ""]
    for section in sections:
        parts += [f"## {_md(section.title)}", "", _md(section.intro), ""]
        for item in section.items:
            parts += [f"### {_md(item.title)}", ""]
            if isinstance(item, Table):
                if item.caption:
                    parts += [f"*{_md(item.caption)}*", ""]
                if not item.frame.empty:
                    parts += [markdown_table(item), ""]
                parts += [f"> Note: {_md(note)}" + "\n" for note in item.notes]
            elif item.path is None:
                parts += [f"> Not drawn: {_md(item.note)}", ""]
            else:
                parts += [
                    f"![{_md(item.title)}]({item.path.name})",
                    "",
                    f"*{_md(item.caption)}*",
                    "",
                ]
    return "\n".join(parts).rstrip() + "\n"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _label_class(column: str) -> str:
    """CSS class of a column header by where its figures come from."""
    lowered = column.lower()
    if "published" in lowered and "measured" in lowered:
        return ""  # a comparison of the two belongs to neither
    for css, word in (("pub", "published"), ("est", ESTIMATE), ("meas", "measured")):
        if word in lowered:
            return f' class="{css}"'
    return ""


def html_table(table: Table, css: str = "data") -> str:
    """A table with escaped cells; negative deltas marked, origin of each column coloured."""
    columns = [str(c) for c in table.frame.columns]
    head = "".join(f"<th{_label_class(c)}>{_e(c)}</th>" for c in columns)
    body = []
    for shown in display_rows(table):
        cells = []
        for column, text in zip(columns, shown, strict=True):
            spec = table.formats.get(column, "")
            classes = ["num"] if spec else []
            if spec.startswith("+") and text.startswith("-"):
                classes.append("neg")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _item(item: Table | Plot) -> str:
    anchor = _slug(item.name)
    if isinstance(item, Table):
        parts = [
            f'<h3 id="{anchor}">{_e(item.title)}</h3>',
            f'<p class="cap">{_e(item.caption)}</p>',
        ]
        if not item.frame.empty:
            parts.append(html_table(item))
        parts += [f'<p class="note">Note: {_e(note)}</p>' for note in item.notes]
        return "\n".join(parts)
    if item.path is None:
        heading = f'<h3 id="{anchor}">{_e(item.title)}</h3>'
        return f'{heading}\n<p class="note">Not drawn: {_e(item.note)}</p>'
    data = base64.b64encode(item.path.read_bytes()).decode("ascii")
    return (
        f'<figure id="{anchor}"><img src="data:image/png;base64,{data}" alt="{_e(item.title)}">'
        f"<figcaption><b>{_e(item.title)}.</b> {_e(item.caption)}</figcaption></figure>"
    )


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;
 margin:0;background:#fafafa}
main{max-width:1280px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{margin:0 0 4px;font-size:26px}h2{margin-top:40px;border-bottom:2px solid #ddd;
 padding-bottom:4px}h3{margin:26px 0 4px;font-size:17px}
.cap{margin:2px 0 8px;color:#444}.note{margin:4px 0;color:#6a4b00;background:#fff8e1;
 padding:4px 8px;border-left:3px solid #e0b000;font-size:14px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:14px;margin:6px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.neg{color:#b00020}th.pub{background:#fff1c1}th.meas{background:#d9f2e3}
th.est{background:#e8e0f8}table.kv td:first-child{font-weight:600;white-space:nowrap}
.legend span{display:inline-block;padding:2px 8px;margin:2px 6px 2px 0;border-radius:4px;
 font-size:13px}.pub{background:#fff1c1}.meas{background:#d9f2e3}.est{background:#e8e0f8}
section.verdict{margin:14px 0 18px;padding:4px 16px 10px;border:2px solid #2f6f4f;
 border-radius:6px;background:#f4fbf7}section.verdict h3{margin-top:8px}
section.verdict td:first-child{font-weight:600;white-space:nowrap}
figure{margin:18px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:14px;margin-top:4px}nav a{margin-right:14px}
"""


def html_document(
    title: str, header: Table, sections: Sequence[Section], lead: Table | None = None
) -> str:
    """``report.html``: one file a person can open and read without the terminal; ``lead``
    (the verdict box) comes first, right under the title."""
    legend = "".join(
        f'<span class="{css}"><b>{_e(label)}</b>: {_e(meaning)}</span>'
        for css, label, meaning in LEGEND
    )
    nav = "".join(f'<a href="#section-{_slug(s.title)}">{_e(s.title)}</a>' for s in sections)
    body = [
        f"<h1>{_e(title)}</h1>",
        *([f'<section class="verdict">{_item(lead)}</section>'] if lead is not None else []),
        f'<div class="legend">{legend}</div>',
        html_table(header, css="kv"),
        f"<nav>{nav}</nav>",
    ]
    for section in sections:
        body.append(f'<h2 id="section-{_slug(section.title)}">{_e(section.title)}</h2>')
        body.append(f'<p class="cap">{_e(section.intro)}</p>')
        body += [_item(item) for item in section.items]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )
