"""The AHA 17-segment bullseye: rings basal (1-6, outer), mid (7-12), apical (13-16), apex (17, centre).

Drawn in the AHA layout as seen from the apex, whatever the image's angles: segment 1 (anterior) at the top, the
septum (2-3, 8-9, 14) on the left, the lateral wall on the right. Colour: infarct % of the segment's myocardium
or its transmurality class; no-reflow segments hatched and marked "NR"; segments not imaged grey with "n/a".
matplotlib is imported only here, and only when a plot is made.
"""

from __future__ import annotations

import math
from pathlib import Path

from napari_lvseg.errors import LvsegError

RINGS = {"basal": (0.75, 1.0), "mid": (0.5, 0.75), "apical": (0.25, 0.5)}
VALUES = ("infarct_pct", "transmurality")
CLASS_COLOURS = ("#f4f4f4", "#fde0c5", "#f9a36b", "#e4572e", "#8c1c13")   # 0, 1-25, 26-50, 51-75, 76-100 %
NO_DATA = "#b0b0b0"


def wedge_span(segment: int) -> tuple[float, float]:
    """(start, end) degrees of a segment's wedge in the plot, counter-clockwise from 3 o'clock."""
    if segment <= 12:
        k = (segment - 1) % 6   # 1 and 7 anterior at 60-120, then counter-clockwise: septum on the left
        return 60.0 + 60.0 * k, 120.0 + 60.0 * k
    if segment <= 16:
        k = segment - 13        # 13 anterior at 45-135, 14 septal on the left
        return 45.0 + 90.0 * k, 135.0 + 90.0 * k
    raise LvsegError(f"segment {segment} has no wedge (17 is the centre disc)")


def bullseye_figure(rows, value: str = "infarct_pct", title: str | None = None, ax=None, fontsize: float = 7.0):
    """Draw the bullseye of `aha.analyse` rows (a list of dicts, or an AhaResult) on ``ax`` (a new Figure's
    axes if None); returns the Figure. ``value``: 'infarct_pct' (a 0-100 % colour scale) or 'transmurality'
    (the five classes, in %)."""
    if value not in VALUES:
        raise LvsegError(f"bullseye value must be one of {', '.join(VALUES)}, got {value!r}")
    rows = getattr(rows, "rows", rows)
    by_seg = {int(r["segment"]): r for r in rows}
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Wedge

    from napari_lvseg.analysis.aha import TRANSMURALITY_CLASSES

    if ax is None:
        fig = Figure(figsize=(4.2, 4.6))
        ax = fig.add_subplot(111)
    fig = ax.figure
    cmap = matplotlib.colormaps["Reds"]

    def colour(row):
        if not row or not row.get("imaged"):
            return NO_DATA
        if value == "transmurality":
            cls = row.get("transmurality_class") or "0"
            return CLASS_COLOURS[TRANSMURALITY_CLASSES.index(cls)]
        pct = row.get("infarct_pct")
        return NO_DATA if pct is None or math.isnan(pct) else cmap(0.05 + 0.9 * min(max(pct, 0.0), 100.0) / 100.0)

    def text(row, seg):
        if not row or not row.get("imaged"):
            return f"{seg}\nn/a"
        figure = (f"{row['infarct_pct']:.0f}%" if value == "infarct_pct" else row["transmurality_class"])
        return f"{seg}{' NR' if row.get('no_reflow') else ''}\n{figure}"

    def dark(fill) -> bool:
        r, g, b = matplotlib.colors.to_rgb(fill)
        return 0.299 * r + 0.587 * g + 0.114 * b < 0.5

    for seg in range(1, 18):
        row = by_seg.get(seg)
        fill = colour(row)
        hatch = "////" if row and row.get("no_reflow") else None
        if seg == 17:
            patch, cx, cy = Circle((0, 0), 0.25), 0.0, 0.0
        else:
            level = "basal" if seg <= 6 else "mid" if seg <= 12 else "apical"
            inner, outer = RINGS[level]
            start, end = wedge_span(seg)
            patch = Wedge((0, 0), outer, start, end, width=outer - inner)
            mid, rad = math.radians((start + end) / 2), (inner + outer) / 2
            cx, cy = rad * math.cos(mid), rad * math.sin(mid)
        patch.set_facecolor(fill)
        patch.set_edgecolor("black")
        patch.set_linewidth(1.0)
        if hatch:
            patch.set_hatch(hatch)
        ax.add_patch(patch)
        # on a hatched segment the figures sit on a patch of its own colour: the hatching does not cross them
        box = dict(boxstyle="round,pad=0.05", facecolor=fill, edgecolor="none") if hatch else None
        ax.text(cx, cy, text(row, seg), ha="center", va="center", fontsize=fontsize, bbox=box, linespacing=1.0,
                color="white" if dark(fill) else "black", fontweight="bold" if row and row.get("no_reflow") else None)
    ax.set_xlim(-1.12, 1.12)
    ax.set_ylim(-1.12, 1.12)
    ax.set_aspect("equal")
    ax.axis("off")
    # where the septum and the anterior wall are in this layout, so nobody reads it mirrored
    ax.text(0, 1.06, "anterior", ha="center", va="bottom", fontsize=7)
    ax.text(-1.06, 0, "septal", ha="right", va="center", fontsize=7, rotation=90)
    ax.text(1.06, 0, "lateral", ha="left", va="center", fontsize=7, rotation=270)
    ax.text(0, -1.06, "inferior", ha="center", va="top", fontsize=7)
    if value == "infarct_pct":
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        bar = fig.colorbar(ScalarMappable(Normalize(0, 100), matplotlib.colors.ListedColormap(
            [cmap(0.05 + 0.9 * i / 255) for i in range(256)])), ax=ax, orientation="horizontal", fraction=0.05,
            pad=0.02, shrink=0.8)
        bar.set_label("infarct % of segment myocardium (hatched, NR: no-reflow)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    else:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=c, edgecolor="black", label=f"{k} %") for k, c in
                   zip(TRANSMURALITY_CLASSES, CLASS_COLOURS)]
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////", label="no-reflow"))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=6,
                  frameon=False, title="transmurality (mean over the segment)", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def save_bullseye(rows, path, value: str = "infarct_pct", title: str | None = None, dpi: int = 150) -> Path:
    """The bullseye as a PNG, written atomically."""
    from napari_lvseg.io.atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise LvsegError("the bullseye is written as .png", path)
    fig = bullseye_figure(rows, value, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path
