"""Post-processing of a segmentation: the defaults a model card may override, the check of its options, the
class weights applied before the argmax, and the anatomical clean-up of a case's labels in 3-D.

Used by `inference` (segmenting), by the model card's validation (`models/card.py`) and by the training experiments
(the post-processing search in training/run.py).
"""

from __future__ import annotations

import numpy as np

from .errors import LvsegError
from .labels import CAVITY, INFARCT, MYOCARDIUM, N_CLASSES, NO_REFLOW

# Post-processing defaults; a model card may override them ("postprocess" in its extra fields).
# The weights scale the infarct and no-reflow probabilities before the argmax: networks trained on these
# rare classes under-segment them (on validation the default predicted 0.60x the true infarct volume).
DEFAULT_POSTPROCESS = {"largest_component": True, "min_infarct_voxels": 0, "min_no_reflow_voxels": 0,
                       "infarct_weight": 1.0, "no_reflow_weight": 1.0, "lesions_touch_cavity": None}
# Where a lesion (infarct + no-reflow) must touch the LV cavity to stay one: nowhere (None), somewhere in its 3-D
# component ("3d"), or in every slice it crosses ("2d": a slice without cavity keeps no lesion). Infarcts grow from
# the endocardium: in the 60 EMIDEC crops, lesion components touching no cavity hold 0.2 % of the lesion voxels in
# 3-D, 2.2 % in 2-D. Out of fold it did not raise Dice (training/RESULTS.md), so it is off by default.
LESION_REACH = (None, "3d", "2d")


def check_postprocess(options: dict | None, name: str = "model card") -> dict:
    """Post-processing options (a model card's, say) merged over the defaults, with a one-line error naming ``name``
    for a value that cannot work; `segment` calls this before any forward pass."""
    o = {**DEFAULT_POSTPROCESS, **(options or {})}
    try:
        weights = (float(o["infarct_weight"]), float(o["no_reflow_weight"]))
    except (TypeError, ValueError):
        weights = (0.0, 0.0)
    if not min(weights) > 0:
        raise LvsegError(f"post-processing class weights must be positive numbers, not {o['infarct_weight']!r} and "
                         f"{o['no_reflow_weight']!r}", name)
    o["infarct_weight"], o["no_reflow_weight"] = weights
    for key in ("min_infarct_voxels", "min_no_reflow_voxels"):
        value = o[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise LvsegError(f"post-processing {key} must be a number of voxels (0 or more), not {value!r}", name)
    if not isinstance(o["largest_component"], bool):
        raise LvsegError(f"post-processing largest_component must be true or false, not {o['largest_component']!r}",
                         name)
    if o["lesions_touch_cavity"] is False:
        o["lesions_touch_cavity"] = None
    if o["lesions_touch_cavity"] not in LESION_REACH:
        raise LvsegError(f"post-processing lesions_touch_cavity must be one of {LESION_REACH}, "
                         f"not {o['lesions_touch_cavity']!r}", name)
    return o


def labels_from_probabilities(prob: np.ndarray, options: dict | None = None, name: str = "model card") -> np.ndarray:
    """Labels (N, Y, X) uint8 from probabilities (N, 5, Y, X): the argmax after the options' class weights."""
    o = check_postprocess(options, name)
    weights = (o["infarct_weight"], o["no_reflow_weight"])
    if weights != (1.0, 1.0):
        scale = np.ones(N_CLASSES, np.float32)
        scale[INFARCT], scale[NO_REFLOW] = weights
        prob = prob * scale[None, :, None, None]
    return prob.argmax(1).astype(np.uint8)


def postprocess(labels: np.ndarray, options: dict | None = None) -> np.ndarray:
    """Anatomical clean-up of a predicted stack (Z, Y, X) in 3-D: `clean_anatomy`, then `apply_minimum_volumes`."""
    o = {**DEFAULT_POSTPROCESS, **(options or {})}
    if labels.ndim == 2:
        return postprocess(labels[None], o)[0]
    return apply_minimum_volumes(clean_anatomy(labels, o), o)


def clean_anatomy(labels: np.ndarray, options: dict | None = None) -> np.ndarray:
    """The part of `postprocess` that ignores the minimum volumes, on a stack (Z, Y, X):

    - keep the largest connected LV component (cavity + wall), dropping stray blobs;
    - with ``lesions_touch_cavity``, a lesion that does not touch the cavity becomes normal myocardium;
    - no-reflow not touching infarct becomes infarct (no-reflow only exists inside an infarct).
    """
    from scipy import ndimage

    o = check_postprocess(options, "post-processing options")
    out = labels.copy()
    if o["largest_component"] and out.any():
        comp, n = ndimage.label(out > 0)
        if n > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            out[comp != int(np.argmax(sizes))] = 0
    if o["lesions_touch_cavity"]:
        _drop_lesions_away_from_cavity(out, per_slice=o["lesions_touch_cavity"] == "2d")
    nr = out == NO_REFLOW
    if nr.any():
        comp, n = ndimage.label(nr)
        near_infarct = ndimage.binary_dilation(out == INFARCT, iterations=1)
        for i in range(1, n + 1):
            if not (near_infarct & (comp == i)).any():
                out[comp == i] = INFARCT
    return out


def _drop_lesions_away_from_cavity(labels: np.ndarray, per_slice: bool) -> None:
    """In place: lesion components (3-D, or 2-D in each slice) with no voxel beside the cavity become myocardium."""
    from scipy import ndimage

    for stack in (labels[z:z + 1] for z in range(len(labels))) if per_slice else (labels,):
        lesion = np.isin(stack, (INFARCT, NO_REFLOW))
        if not lesion.any():
            continue
        # beside = in-plane neighbours only: the cavity of the next slice is no evidence for this slice's wall
        beside = ndimage.binary_dilation(stack == CAVITY, structure=ndimage.generate_binary_structure(3, 1)
                                         * np.array([0, 1, 0])[:, None, None])
        comp, n = ndimage.label(lesion)
        touching = np.unique(comp[beside & lesion])
        stack[lesion & ~np.isin(comp, touching)] = MYOCARDIUM


def apply_minimum_volumes(labels: np.ndarray, options: dict | None = None) -> np.ndarray:
    """A case total of no-reflow below ``min_no_reflow_voxels`` becomes infarct, then a total of infarct below
    ``min_infarct_voxels`` becomes myocardium: false positives in cases without them are what per-case Dice
    punishes hardest. Kept apart from `clean_anatomy` so that a search over volumes cleans each case once."""
    o = {**DEFAULT_POSTPROCESS, **(options or {})}
    out = labels.copy()
    if 0 < np.count_nonzero(out == NO_REFLOW) < o["min_no_reflow_voxels"]:
        out[out == NO_REFLOW] = INFARCT
    lesion = np.isin(out, (INFARCT, NO_REFLOW))
    if 0 < np.count_nonzero(lesion) < o["min_infarct_voxels"]:
        out[lesion] = MYOCARDIUM
    return out


def postprocessed_labels(prob: np.ndarray, options: dict | None = None) -> np.ndarray:
    """A case's final labels (N, Y, X) from its probabilities (N, 5, Y, X): `labels_from_probabilities`, then
    `postprocess` in 3-D, both with ``options``."""
    return postprocess(labels_from_probabilities(prob, options), options)
