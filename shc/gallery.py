"""The retrieval gallery: each query and its top-K as one self-contained HTML page or the classic PNG grid.

Input is shc.retrieval.search_results' dict plus one thumbnail source per image (a path, or uint8 pixels of an
in-memory dataset). Relevant results (a label shared with the query) are framed green, others red, unknown grey;
the Hamming distance is written under each result.
"""
from __future__ import annotations

import base64
import html
import io
import os

import numpy as np
from PIL import Image

from shc.atomic import atomic_write, write_text

THUMB_PX = 96
FRAME = {True: "#1a9641", False: "#d7191c", None: "#9e9e9e"}
CSS = """body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}
h1{font-size:18px} .query{display:flex;align-items:flex-start;gap:6px;margin:10px 0;padding:8px;background:#fff;
border-radius:6px;box-shadow:0 1px 2px #0002} figure{margin:0;text-align:center;font-size:11px;width:%dpx}
figure img{width:%dpx;height:%dpx;object-fit:contain;border:3px solid;border-radius:3px;background:#000;
image-rendering:pixelated} .probe img{border-color:#2b83ba} .probe{margin-right:12px}
figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}""" % (THUMB_PX + 6, THUMB_PX, THUMB_PX)


def thumbnail(source) -> Image.Image:
    """An RGB thumbnail of a path or uint8 pixels ((H, W) or (H, W, C)); small images scaled up pixel-exact."""
    if isinstance(source, (str, os.PathLike)):
        from shc.data.files import load_rgb
        img = load_rgb(source)
    else:
        pixels = np.asarray(source)
        img = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
        img = img.convert("RGB")
    if max(img.size) < THUMB_PX:
        factor = THUMB_PX // max(img.size)
        return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    img = img.copy()
    img.thumbnail((THUMB_PX, THUMB_PX))
    return img


def _data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _label_text(label) -> str:
    if label is None:
        return ""
    return ", ".join(map(str, label)) if isinstance(label, list) else str(label)


def _figure(img, caption: str, title: str, css_class: str, colour: str) -> str:
    return (f'<figure class="{css_class}" title="{html.escape(title)}"><img src="{_data_uri(img)}" '
            f'style="border-color:{colour}" alt="{html.escape(title)}"><figcaption>{html.escape(caption)}'
            f"</figcaption></figure>")


def write_html(results: dict, query_sources: list, item_source, out, title: str = "shc retrieval") -> None:
    """One HTML page, thumbnails embedded: ``query_sources[q]`` is query q's image, ``item_source(index)`` a
    database item's (path or pixels; None draws a grey tile)."""
    rows = []
    for query, source in zip(results["queries"], query_sources):
        cells = [_figure(thumbnail(source), f"query {_label_text(query['label'])}".strip(), query["image"],
                         "probe", FRAME[None])]
        for r in query["results"]:
            src = item_source(r["index"])
            img = thumbnail(src) if src is not None else Image.new("RGB", (THUMB_PX, THUMB_PX), "#ccc")
            caption = f"d={r['distance']} {_label_text(r['label'])}"
            tip = f"#{r['index']} {r['path'] or ''} distance {r['distance']} label {_label_text(r['label'])}"
            cells.append(_figure(img, caption, tip, "result", FRAME[r["relevant"]]))
        rows.append(f'<div class="query">{"".join(cells)}</div>')
    summary = (f"{len(results['queries'])} queries, top {results['k']} of {results['database']['size']} "
               f"database items, {results['bits']} bits, Hamming distance d under each; green: shares the "
               f"query's label, red: does not, grey: unknown")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
            f'{"".join(rows)}</body></html>\n')
    write_text(out, page)


PNG_MAX_QUERIES = 100
PNG_MAX_RESULTS = 30


def write_png(results: dict, query_sources: list, item_source, out, title: str = "shc retrieval") -> None:
    """The paper-style grid: one row per query, the query then its top-K with the distance above each; at most
    PNG_MAX_QUERIES rows and PNG_MAX_RESULTS results a row (a figure is for looking at: the rest are in the
    JSON and the HTML), the title saying so."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = results["queries"][:PNG_MAX_QUERIES]
    cols = 1 + min(results["k"], PNG_MAX_RESULTS)
    if len(queries) < len(results["queries"]) or cols <= results["k"]:
        title += (f" (the first {len(queries)} of {len(results['queries'])} queries, top {cols - 1} of "
                  f"{results['k']})")
    fig, axes = plt.subplots(len(queries), cols, figsize=(1.1 * cols, 1.25 * len(queries)), squeeze=False)
    for row, (query, source) in zip(axes, zip(queries, query_sources)):
        _tile(row[0], thumbnail(source), f"query {_label_text(query['label'])}".strip(), FRAME[None])
        for ax, r in zip(row[1:], query["results"][:cols - 1]):
            src = item_source(r["index"])
            _tile(ax, thumbnail(src) if src is not None else None, f"d={r['distance']}", FRAME[r["relevant"]])
        for ax in row[1 + len(query["results"]):]:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def _tile(ax, img, caption: str, colour: str) -> None:
    if img is not None:
        ax.imshow(np.asarray(img), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    ax.set_title(caption, fontsize=7, pad=2)

