"""The one-page report of a case: key figures, the AHA segment table, the bullseye, a strip of the slices with the
label outlines; as PDF or PNG, with a CSV of the same figures beside it. matplotlib is imported only here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_lvseg import labels as lb
from napari_lvseg.analysis import aha, mass, thresholds
from napari_lvseg.errors import LvsegError

FORMATS = (".pdf", ".png")
SEGMENT_COLUMNS = ("case", "model", "segment", "name", "level", "myocardium_px", "infarct_px", "infarct_pct",
                   "no_reflow_px", "no_reflow_pct", "transmurality_pct", "transmurality_max_pct",
                   "transmurality_class")


@dataclass
class CaseReport:
    case: str
    model: str
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple | None
    aha: aha.AhaResult
    masses: dict
    methods: list

    def summary(self) -> dict:
        m = self.masses
        myo = m["myocardium_px"]
        return {"myocardium_px": myo, "infarct_px": m["infarct_px"], "no_reflow_px": m["no_reflow_px"],
                "infarct_pct": 100.0 * m["infarct_px"] / myo if myo else math.nan,
                "no_reflow_pct": 100.0 * m["no_reflow_px"] / myo if myo else math.nan,
                "myocardium_g": m["myocardium_g"], "infarct_g": m["infarct_g"], "no_reflow_g": m["no_reflow_g"]}

    def csv_rows(self) -> list[dict]:
        """One row per segment (`SEGMENT_COLUMNS`), then ``segment='total'`` with the masses (empty where the
        pixel size is unknown, ``note`` saying so), the insertion angle and the reference methods' infarct %."""
        rows = [{"case": self.case, "model": self.model, **{k: r[k] for k in SEGMENT_COLUMNS[2:]}}
                for r in self.aha.rows]
        total = {"case": self.case, "model": self.model, "segment": "total", "name": "LV", "level": "",
                 **self.summary(), "insertion_deg": self.aha.insertion.angle_deg,
                 "insertion_source": self.aha.insertion.source, "density_g_per_ml": mass.DENSITY_G_PER_ML,
                 "note": self.masses.get("note", "")}
        for method in self.methods[1:]:
            total[f"{method['method']}_infarct_pct"] = method["infarct_pct"]
        rows.append(total)
        return rows


def build(image, labels, case: str, model: str, spacing=None, *, levels=None, insertion=None) -> CaseReport:
    """Everything the report shows, from an image and its labels (both (Z, Y, X), or one slice)."""
    image, labels = np.asarray(image), np.asarray(labels)
    if image.shape != labels.shape:
        raise LvsegError(f"image shape {image.shape} and label shape {labels.shape} differ", case)
    if not lb.region(labels, "myocardium").any():
        raise LvsegError("the labels hold no myocardium: nothing to report", case)
    if image.ndim == 2:
        image, labels = image[None], labels[None]
    result = aha.analyse(labels, image, levels=levels, insertion=insertion)
    methods = thresholds.reference_methods(image, labels) if (labels == lb.MYOCARDIUM).sum() >= 2 else []
    return CaseReport(case, model, image, labels.astype(np.uint8), spacing, result,
                      mass.masses(labels, spacing), methods)


def _fmt(value, digits=1, unit="") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{unit}"


def figure(report: CaseReport):
    """The report page (A4 portrait) as a matplotlib Figure."""
    from matplotlib.figure import Figure

    from napari_lvseg.analysis.bullseye import bullseye_figure

    fig = Figure(figsize=(8.27, 11.69))
    grid = fig.add_gridspec(4, 2, height_ratios=[1.3, 3.0, 3.5, 1.5], hspace=0.25, wspace=0.1,
                            left=0.05, right=0.97, top=0.96, bottom=0.03)
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    s = report.summary()
    known = report.masses["known"]
    mass_text = (f"LV myocardial mass {mass.format_mass(s['myocardium_g'])}"
                 f"   infarct {mass.format_mass(s['infarct_g'])}"
                 f"   no-reflow {mass.format_mass(s['no_reflow_g'])}   (1.05 g/ml)") if known else \
        f"LV myocardial mass: {mass.UNKNOWN} ({s['myocardium_px']} myocardium pixels)"
    head.text(0, 1, f"LGE report: {report.case}", fontsize=14, fontweight="bold", va="top")
    head.text(0, 0.74, f"labels: {report.model}", fontsize=8, va="top")
    head.text(0, 0.58, mass_text, fontsize=9, va="top")
    head.text(0, 0.42, f"infarct {_fmt(s['infarct_pct'])} % of LV myocardium   no-reflow {_fmt(s['no_reflow_pct'])} %"
              "   (infarct includes no-reflow, as EMIDEC)", fontsize=9, va="top", fontweight="bold")
    methods = "   ".join(f"{m['method']} {_fmt(m['infarct_pct'])} %" for m in report.methods[1:])
    head.text(0, 0.26, f"threshold methods in the same myocardium: {methods or 'no remote myocardium'}",
              fontsize=8, va="top")
    head.text(0, 0.12, report.aha.insertion.describe(), fontsize=7, va="top", color="0.3")
    head.text(0, 0.01, "slice levels, base to apex: " + _levels_text(report), fontsize=7, va="top", color="0.3")

    bullseye_figure(report.aha, "infarct_pct", "infarct % per AHA segment", ax=fig.add_subplot(grid[1, 0]),
                    fontsize=6)
    bullseye_figure(report.aha, "transmurality", "transmurality class", ax=fig.add_subplot(grid[1, 1]),
                    fontsize=6)

    table_ax = fig.add_subplot(grid[2, :])
    table_ax.axis("off")
    header = ["seg", "name", "myo px", "infarct %", "no-reflow %", "transmural % (mean)", "max %", "class"]
    cells = [[str(r["segment"]), r["name"], str(r["myocardium_px"]) if r["imaged"] else "not imaged",
              _fmt(r["infarct_pct"]), _fmt(r["no_reflow_pct"]), _fmt(r["transmurality_pct"]),
              _fmt(r["transmurality_max_pct"], 0), r["transmurality_class"] or "-"] for r in report.aha.rows]
    table = table_ax.table(cellText=cells, colLabels=header, loc="upper center", cellLoc="center",
                           colWidths=[0.06, 0.22, 0.1, 0.1, 0.12, 0.16, 0.08, 0.1])
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    table.scale(1, 1.18)
    for (row, _col), cell in table.get_celld().items():
        if row == 0:
            cell.set_facecolor("#e8e8e8")
        elif report.aha.rows[row - 1]["no_reflow"]:
            cell.set_facecolor("#fff1e6")

    _slice_strip(fig, grid[3, :], report)
    return fig


def _levels_text(report) -> str:
    order = range(len(report.labels)) if not report.aha.apex_first else range(len(report.labels) - 1, -1, -1)
    short = {"basal": "b", "mid": "m", "apical": "a", "apex": "x", None: "-"}
    return "".join(short[report.aha.levels[z]] for z in order) + " (b basal, m mid, a apical, x apex cap)"


def _slice_strip(fig, cell, report) -> None:
    """The slices holding myocardium, base to apex, each with its label outlines (cavity yellow, myocardium blue,
    infarct red, no-reflow green), cropped to the LV."""
    levels = report.aha.levels
    order = list(range(len(levels)))
    if report.aha.apex_first:
        order = order[::-1]
    shown = [z for z in order if levels[z] is not None]
    labels, image = report.labels, report.image
    lv = np.argwhere((labels[shown] > 0).any(axis=0))
    (y0, x0), (y1, x1) = lv.min(axis=0), lv.max(axis=0) + 1
    pad = max(4, int(0.15 * max(y1 - y0, x1 - x0)))
    y0, x0 = max(0, y0 - pad), max(0, x0 - pad)
    y1, x1 = min(labels.shape[1], y1 + pad), min(labels.shape[2], x1 + pad)
    sub = cell.subgridspec(1, max(len(shown), 6), wspace=0.03)
    for i, z in enumerate(shown):
        ax = fig.add_subplot(sub[0, i])
        img = image[z, y0:y1, x0:x1]
        lo, hi = np.percentile(img, [1, 99])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        lab = labels[z, y0:y1, x0:x1]
        for value in (lb.CAVITY, lb.MYOCARDIUM, lb.INFARCT, lb.NO_REFLOW):
            mask = lab == value if value != lb.MYOCARDIUM else lb.region(lab, "myocardium")
            if mask.any() and not mask.all():
                ax.contour(mask.astype(float), [0.5], colors=[lb.COLORS[value][:3]], linewidths=0.7)
        ax.set_title(f"z{z} {levels[z]}", fontsize=6.5)
        ax.axis("off")


def write(report: CaseReport, path) -> tuple[Path, Path]:
    """The page as ``path`` (.pdf or .png) and its CSV beside it (same name, .csv), each written atomically."""
    from napari_lvseg.io.atomic import atomic_path
    from napari_lvseg.metrics import write_csv

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LvsegError("a report is written as .pdf or .png", path)
    fig = figure(report)
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp, format=suffix[1:], dpi=150)
    csv_path = path.with_suffix(".csv")
    write_csv(report.csv_rows(), csv_path)
    return path, csv_path
