"""The HTML pieces the run report's page is built of: escaped text, tables, embedded figures."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence

import numpy as np

from components.run_report import plots


def escape(value) -> str:
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(figure, alt: str) -> str:
    """An <img> of a Matplotlib figure, embedded as PNG."""
    return f'<img src="{png_data_uri(plots.png_bytes(figure))}" alt="{escape(alt)}">'


def cell(value) -> str:
    if isinstance(value, float):
        text = "n/a" if math.isnan(value) else f"{value:.3g}"
        return f'<td class="number">{text}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="number">{value}</td>'
    return f"<td>{escape(value)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def paragraph(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<p{attribute}>{escape(text)}</p>"


def section(title: str, parts: Iterable[str], anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'
