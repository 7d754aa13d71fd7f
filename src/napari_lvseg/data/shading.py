"""A receive coil's shading, measured on the heart itself: the smooth multiplicative field that the LV's two
homogeneous tissues (blood pool and normal myocardium) show once a first pass has labelled them.

An uncorrected surface coil makes one side of the heart brighter than the other. Normal myocardium on the bright side
then looks like infarct, and the model, which judges enhancement by contrast, mislabels it. Fitting
``log I = tissue offset + a y + b x`` over the first pass's cavity and normal-myocardium pixels gives the field's
gradient across the heart; dividing it out and reading the image again restores what the model learnt. Where the
field is strong, segmenting reads the view flattened instead (`inference.STRONG_SHADING_FLATTENED`): the plane
measures how strong, and a curved field is more than a plane. On 12 unseen
cases the fitted field varies 1.03-1.14x across unshaded hearts and 1.46-2.63x under a 1.7x-2.5x shading
(training/RESULTS.md, "Robustness to another scanner's images"), so a threshold between tells them apart.
"""

from __future__ import annotations

import numpy as np

from ..labels import CAVITY, MYOCARDIUM

# Correct only where the field varies more than this across the heart: unshaded hearts fit 1.03-1.14x.
SHADING_TRIGGER = 1.25
MIN_PIXELS = 200   # fewer labelled pixels cannot say which way a field runs
MAX_NON_POSITIVE = 0.05   # share of labelled pixels at or below zero beyond which the image is taken as signed
# `flatten`'s Gaussian, as a share of the view: 0.1 read shaded crops as well, 0.25 and 0.35 worse (training/RESULTS.md,
# "The view under a strong coil's field")
FLATTEN_SIGMA = 0.15


def tissue_field(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(field (Y, X), its max / min over the heart) of a stack (Z, Y, X) of raw intensities and its labels: a plane
    in log intensity fitted over the cavity and normal-myocardium pixels of every slice (one offset per tissue), the
    field scaled to mean 1 over those pixels; None where too few pixels are labelled or more than `MAX_NON_POSITIVE`
    of them are not positive (the fit is in logs)."""
    image = np.asarray(image, np.float64)
    labels = np.asarray(labels)
    labelled = (labels == CAVITY) | (labels == MYOCARDIUM)
    # the fit is in logs: a few zeros (a padded border, a clipped pixel) are left out; many non-positive values are
    # a signed image (PSIR), whose nulled myocardium has no log to fit
    chosen = labelled & (image > 0)
    if np.count_nonzero(chosen) < MIN_PIXELS or np.count_nonzero(chosen) < (1 - MAX_NON_POSITIVE) * np.count_nonzero(
            labelled):
        return None
    _, ys, xs = np.nonzero(chosen)
    h, w = image.shape[-2:]
    cy, cx, scale = ys.mean(), xs.mean(), float(max(h, w))
    y, x = (ys - cy) / scale, (xs - cx) / scale
    tissue = labels[chosen]
    design = np.stack([tissue == CAVITY, tissue == MYOCARDIUM, y, x], axis=1).astype(np.float64)
    if np.linalg.matrix_rank(design) < 4:   # one tissue only, or a line of pixels: no plane to fit
        return None
    coef, *_ = np.linalg.lstsq(design, np.log(image[chosen]), rcond=None)
    on_heart = coef[2] * y + coef[3] * x
    yy, xx = np.mgrid[:h, :w]
    plane = coef[2] * (yy - cy) / scale + coef[3] * (xx - cx) / scale
    field = np.exp(plane - on_heart.mean())
    return field.astype(np.float32), float(np.exp(on_heart.max() - on_heart.min()))


def shading_to_correct(image: np.ndarray, labels: np.ndarray, trigger: float = SHADING_TRIGGER):
    """The field to divide ``image`` by before reading it again, or None where the heart shows no shading worth it
    (`tissue_field` varies less than ``trigger`` across it, or cannot be fitted); and the field's range (or None)."""
    found = tissue_field(image, labels)
    if found is None:
        return None, None
    field, spread = found
    return (field if spread > trigger else None), spread


def flatten(grid: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Each slice of ``grid`` (Z, S, S) divided by its own smoothed intensity (a Gaussian of ``sigma`` pixels over the
    valid pixels only): a coil's shading, whatever its shape, is gone, with the slowest changes of the anatomy."""
    from scipy import ndimage

    keep = valid.astype(np.float32)
    weight = ndimage.gaussian_filter(keep, sigma)
    out = np.empty_like(grid)
    for k, plane in enumerate(grid):
        smooth = ndimage.gaussian_filter(np.clip(plane, 0, None) * keep, sigma) / np.maximum(weight, 1e-3)
        out[k] = plane / np.maximum(smooth, 1e-3 * max(float(smooth.max()), 1e-6))
    return out
