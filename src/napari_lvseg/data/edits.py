"""Edits of a real case's mask for synthetic datasets: the simulator's lesion edits, picked at random, that keep the
LV's wall and cavity as they are (so the real image stays a valid context for rendering).

Kinds (``EDITS``): ``grow`` / ``shrink`` the infarct by 1-3 px, ``move`` it 30-150 degrees along the wall
(`fusion.move_infarct`), ``add_no_reflow`` (10-40 % of an infarct), ``remove_no_reflow``, ``new_infarct`` (grown
from endocardial seeds, 10-50 % of the wall, after clearing any lesion), ``clear`` (the lesion becomes normal
myocardium) and ``fusion`` (a donor's lesion, `fusion.fuse_from_donor`; the dataset builder picks the donor).
``unchanged`` (not in ``all``) keeps the real mask: its image re-rendered in its own surroundings, the pairs that
ask whether a network learns real anatomy from a generator's images ("train on synthetic, test on real"). On a
stack (Z, Y, X) the same edit applies to every slice where it can (``move``: one angle for all), and ``new_infarct``
is `simulator.simulate_stack` with the geometry left unchanged: one lesion through neighbouring slices.
"""

from __future__ import annotations

import numpy as np

from ..errors import LvsegError
from ..labels import CAVITY, INFARCT, NO_REFLOW
from . import simulator
from .fusion import FusionRejected, donor_problems, move_infarct

EDITS = ("grow", "shrink", "move", "add_no_reflow", "remove_no_reflow", "new_infarct", "clear", "fusion")
UNCHANGED = "unchanged"
_NEEDS_INFARCT = ("grow", "shrink", "move", "add_no_reflow", "clear")
_NO_GEOMETRY = {"max_rotation": 0.0, "scale": (1.0, 1.0), "elastic": 0.0}


def check_edits(kinds) -> tuple:
    """The edit kinds as a tuple; 'all' stands for every kind; an unknown kind is an error naming the known ones."""
    kinds = tuple(kinds)
    if "all" in kinds:
        return EDITS
    unknown = [k for k in kinds if k not in EDITS + (UNCHANGED,)]
    if unknown or not kinds:
        raise LvsegError(f"unknown mask edit {', '.join(unknown) or '(none)'}: choose from {', '.join(EDITS)}, all "
                         f"or {UNCHANGED}")
    return kinds


def applicable(labels, kind: str) -> bool:
    """Whether ``kind`` can change something in this slice or stack (``fusion``: whether it has an LV to receive;
    ``move``: whether its lesion can move, one connected piece touching the endocardium in each slice)."""
    labels = np.asarray(labels)
    lesion = np.isin(labels, (INFARCT, NO_REFLOW))
    if kind == "move":   # every lesion slice one connected lesion touching the endocardium (`fusion.donor_problems`)
        stack = labels[None] if labels.ndim == 2 else labels
        with_lesion = [s for s in stack if np.isin(s, (INFARCT, NO_REFLOW)).any()]
        return bool(with_lesion) and not any(donor_problems(s) for s in with_lesion)
    if kind in _NEEDS_INFARCT:
        return bool((labels == INFARCT).any() if kind == "add_no_reflow" else lesion.any())
    if kind == "remove_no_reflow":
        return bool((labels == NO_REFLOW).any())
    return bool((labels == CAVITY).any())


def edit_mask(labels, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(edited labels, what was done) for a slice (Y, X) or stack (Z, Y, X); ``fusion`` is not made here (it needs a
    donor). `FusionRejected` where a move has no anatomically possible result."""
    labels = np.asarray(labels, np.uint8)
    if kind == UNCHANGED:
        return labels.copy(), {}
    if kind not in EDITS or kind == "fusion":
        raise LvsegError(f"edit_mask makes {', '.join(k for k in EDITS if k != 'fusion')}, not '{kind}'")
    if kind in ("grow", "shrink"):
        pixels = int(rng.integers(1, 4))
        fn = simulator.grow_infarct if kind == "grow" else simulator.shrink_infarct
        return fn(labels, pixels), {"pixels": pixels}
    if kind == "move":
        degrees = float(rng.choice([-1, 1]) * rng.uniform(30, 150))
        stack = labels[None] if labels.ndim == 2 else labels
        out = np.stack([move_infarct(s, degrees) if np.isin(s, (INFARCT, NO_REFLOW)).any() else s for s in stack])
        return (out[0] if labels.ndim == 2 else out), {"degrees": round(degrees, 1)}
    if kind == "add_no_reflow":
        fraction = float(rng.uniform(0.1, 0.4))
        return simulator.add_no_reflow(labels, rng, fraction=fraction), {"fraction": round(fraction, 3)}
    if kind == "remove_no_reflow":
        return simulator.remove_no_reflow(labels), {}
    if kind == "clear":
        out = labels.copy()
        out[np.isin(out, (INFARCT, NO_REFLOW))] = simulator.MYOCARDIUM
        return out, {}
    if labels.ndim == 3:   # new_infarct of a stack: one lesion through neighbouring slices, the geometry kept
        return simulator.simulate_stack(labels, rng, p_infarct=1.0, **_NO_GEOMETRY), {}
    fraction = (0.1, 0.5)
    out = simulator.grow_infarct_from_seeds(labels, rng, fraction)
    if rng.random() < 0.5:
        out = simulator.place_no_reflow(out, rng)
    return out, {}


__all__ = ["EDITS", "FusionRejected", "applicable", "check_edits", "edit_mask"]
