"""Self-contained HTML pages of plotly figures and PNG images, shared by the report and the figures.

plotly.js is inlined once, in the first figure of a page, and images are embedded as base64
``data:`` URIs, so a page opens offline, e-mailed or archived, with no file beside it needed.
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Mapping, Optional

import plotly.graph_objects as go
from PIL import Image

LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=30, t=60, b=60))
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222}
table{border-collapse:collapse;font-size:13px}table td,table th{border:1px solid #ccc;
padding:4px 6px;text-align:right}table td:first-child{text-align:left}.caption{font-size:13px;color:#555}
table.trials td:nth-last-child(-n+3),table.legend td{text-align:left}div.scroll{max-height:32em;overflow:auto}
section{margin:2.5em 0}figure.png{display:inline-block;margin:0 1em 1em 0}figure.png img{max-width:100%}"""


def plotly_sections(figures: Mapping[str, Optional[go.Figure]],
                    captions: Optional[Mapping[str, str]] = None) -> list[str]:
    """One ``<section>`` per figure, titled by its key; plotly.js inlined in the first. A figure that is
    None is left out, unless ``captions`` (trusted HTML under the title) has a line for it: why it is missing."""
    sections, first = [], True
    captions = captions or {}
    for title, fig in figures.items():
        if fig is None and title not in captions:
            continue
        cap = f'<p class="caption">{captions[title]}</p>' if title in captions else ""
        div = ""
        if fig is not None:
            # plotly writes div_id raw into an HTML attribute and a script: letters, digits and '-' only
            div = fig.to_html(full_html=False, include_plotlyjs=first, div_id=re.sub(r"[^a-z0-9]+", "-", title.lower()))
            first = False
        sections.append(f"<section><h2>{html.escape(title)}</h2>{cap}{div}</section>")
    return sections


def _png(path: Path, max_side: int) -> bytes:
    """The PNG's bytes, re-encoded at most ``max_side`` px on its longer side (0: as it is)."""
    if not max_side:
        return path.read_bytes()
    img = Image.open(path)
    if max(img.size) <= max_side:
        return path.read_bytes()
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_section(title: str, intro: str, images: Mapping[str, Path], max_side: int = 0) -> str:
    """A ``<section>`` of PNG files embedded as data URIs, each with its caption; ``intro`` is trusted HTML.
    ``max_side``: embed a smaller copy of larger images (photos), keeping the page light; the files keep full size."""
    figs = "".join(
        f'<figure class="png"><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(_png(Path(path), max_side)).decode()}"><figcaption class="caption">{html.escape(caption)}'
        f"</figcaption></figure>" for caption, path in images.items())
    return f'<section><h2>{html.escape(title)}</h2><p class="caption">{intro}</p>{figs}</section>'


def write_page(path: str | Path, title: str, body: str) -> Path:
    """Write one HTML page with the shared style; ``body`` is trusted HTML (escape what goes into it)."""
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
