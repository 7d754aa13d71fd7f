"""The bullseye: segments in the AHA layout, coloured by the figures, no-reflow hatched, a PNG written."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.analysis import bullseye
from napari_lvseg.analysis.aha import SEGMENT_LEVEL, SEGMENT_NAMES
from napari_lvseg.errors import LvsegError


def rows():
    out = []
    for s in SEGMENT_NAMES:
        pct = 60.0 if s in (7, 8) else 0.0
        out.append({"segment": s, "name": SEGMENT_NAMES[s], "level": SEGMENT_LEVEL[s], "imaged": s != 17,
                    "infarct_pct": pct if s != 17 else float("nan"), "transmurality_pct": pct,
                    "transmurality_class": ("51-75" if pct else "0") if s != 17 else "", "no_reflow": s == 8})
    return out


def patches(fig):
    from matplotlib.patches import Circle, Wedge

    ax = fig.axes[0]
    return [p for p in ax.patches if isinstance(p, (Wedge, Circle))]


def test_layout_septum_left_anterior_top():
    assert bullseye.wedge_span(1) == (60.0, 120.0)     # anterior at the top
    assert bullseye.wedge_span(2) == (120.0, 180.0)    # anteroseptal upper left
    assert bullseye.wedge_span(14) == (135.0, 225.0)   # apical septal on the left
    with pytest.raises(LvsegError):
        bullseye.wedge_span(17)


def test_colours_hatching_and_png(tmp_path):
    fig = bullseye.bullseye_figure(rows(), "transmurality")
    shapes = patches(fig)
    assert len(shapes) == 17
    by_seg = dict(zip(range(1, 18), shapes))
    import matplotlib.colors as mc

    assert mc.to_hex(by_seg[7].get_facecolor()) == bullseye.CLASS_COLOURS[3]   # 51-75
    assert mc.to_hex(by_seg[1].get_facecolor()) == bullseye.CLASS_COLOURS[0]
    assert mc.to_hex(by_seg[17].get_facecolor()) == bullseye.NO_DATA           # not imaged
    assert by_seg[8].get_hatch() and not by_seg[7].get_hatch()                  # no-reflow only in 8
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "8 NR\n51-75" in texts and "17\nn/a" in texts
    infarct = bullseye.bullseye_figure(rows(), "infarct_pct")
    seg = dict(zip(range(1, 18), patches(infarct)))
    assert np.mean(seg[7].get_facecolor()[:3]) < np.mean(seg[1].get_facecolor()[:3])   # more infarct, darker
    out = bullseye.save_bullseye(rows(), tmp_path / "b.png", title="phantom")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(LvsegError, match="png"):
        bullseye.save_bullseye(rows(), tmp_path / "b.jpg")
    with pytest.raises(LvsegError, match="value"):
        bullseye.bullseye_figure(rows(), "colour")
