"""Per-slice intensity normalisation, identical in training and inference (and recorded in model cards)."""

from __future__ import annotations

import numpy as np

DEFAULT_NORMALIZATION = {"method": "percentile", "per": "slice", "low": 1.0, "high": 99.0}


def normalize_slices(image: np.ndarray, normalization: dict | None = None) -> np.ndarray:
    """Map each 2-D slice of ``image`` (Y, X) or (Z, Y, X) so its low/high percentiles become 0/1.

    Per slice rather than per volume because LGE intensity drifts between slices (coil, inversion time).
    Values outside the percentile range are clipped to [-0.5, 1.5]: keeps the bright infarct tail
    without letting a stray hot pixel dominate.
    """
    norm = {**DEFAULT_NORMALIZATION, **(normalization or {})}
    data = np.asarray(image, dtype=np.float32)
    flat = data.reshape((-1,) + data.shape[-2:])
    low, high = np.percentile(flat, [norm["low"], norm["high"]], axis=(1, 2))
    # a flat slice stays flat: resampling leaves float rounding (1e-5 of the value) that must not become contrast
    flat_slice = high - low <= 1e-6 + 1e-4 * np.maximum(np.abs(low), np.abs(high))
    scale = np.where(flat_slice, 1.0, high - low)
    low = np.where(flat_slice, high, low)
    out = (flat - low[:, None, None]) / scale[:, None, None]
    return np.clip(out, -0.5, 1.5).reshape(data.shape).astype(np.float32)


def normalize_view(grid: np.ndarray, valid: np.ndarray, normalization: dict | None = None) -> np.ndarray:
    """`normalize_slices` of a model's view (Z, S, S) over its pixels inside the image (``valid`` (S, S)): the model
    reads crops of the LV, in training and in segmenting alike, so the percentiles are the view's, not those of a
    whole field of view. Outside the image: 0."""
    if valid.all():
        return normalize_slices(grid, normalization)
    out = np.zeros_like(grid, dtype=np.float32)
    out[..., valid] = normalize_slices(grid[..., valid][..., None], normalization)[..., 0]
    return out


def labels_center(labels: np.ndarray):
    """Centroid (y, x) of all LV labels of a slice or stack (one crop for every slice), or None."""
    mask = np.any(labels > 0, axis=0) if labels.ndim == 3 else labels > 0
    ys, xs = np.nonzero(mask)
    return (float(ys.mean()), float(xs.mean())) if len(ys) else None


def to_grid(array: np.ndarray, size: int, center=None, fill=0):
    """Crop/pad the last two axes of ``array`` to ``size`` x ``size`` around ``center`` (y, x).

    Returns the new array and the box ``(y0, x0)``: position of the grid's origin in the input
    (may be negative where the grid overhangs the input); `from_grid` pastes back with it.
    """
    h, w = array.shape[-2:]
    cy, cx = (h / 2.0, w / 2.0) if center is None else center
    y0, x0 = int(round(cy - size / 2.0)), int(round(cx - size / 2.0))
    if center is None:
        y0, x0 = (h - size) // 2, (w - size) // 2
    out = np.full(array.shape[:-2] + (size, size), fill, dtype=array.dtype)
    ys, xs = grid_window((y0, x0), (size, size), (h, w))
    if ys.stop > ys.start and xs.stop > xs.start:
        out[..., ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = array[..., ys, xs]
    return out, (y0, x0)


def grid_window(box, grid_shape, shape) -> tuple[slice, slice]:
    """(y, x) slices of an array of ``shape`` (last two axes) that a grid of ``grid_shape`` placed at ``box``
    covers (empty where they do not meet)."""
    (y0, x0), (gy, gx), (h, w) = box, grid_shape[-2:], shape[-2:]
    return slice(max(y0, 0), max(min(y0 + gy, h), 0)), slice(max(x0, 0), max(min(x0 + gx, w), 0))


def from_grid(grid: np.ndarray, box, shape, fill=0) -> np.ndarray:
    """Inverse of `to_grid`: paste ``grid`` back into an array of ``shape`` (other pixels = fill)."""
    y0, x0 = box
    h, w = shape[-2:]
    out = np.full(tuple(grid.shape[:-2]) + (h, w), fill, dtype=grid.dtype)
    ys, xs = grid_window(box, grid.shape, shape)
    if ys.stop > ys.start and xs.stop > xs.start:
        out[..., ys, xs] = grid[..., ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def neighbours(position, count: int, context: int) -> np.ndarray:
    """Indices of slice ``position`` (an int or array) of a ``count``-slice stack and of its ``context``
    neighbours up and down, along a new last axis; past the stack's ends the end slice repeats."""
    return np.clip(np.asarray(position)[..., None] + np.arange(-context, context + 1), 0, count - 1)


def with_context(slices: np.ndarray, context: int) -> np.ndarray:
    """Network input (N, 1 + 2*context, S, S) from a case's slices (N, S, S) in their stack order.

    Channel ``context`` is the slice itself, the others its neighbours (a lone 2-D slice is its own).
    """
    slices = np.asarray(slices, dtype=np.float32)
    return slices[neighbours(np.arange(len(slices)), len(slices), max(context, 0))]


def model_context(model) -> int:
    """Neighbour slices a segmentation network reads on each side: (input channels - 1) / 2."""
    channels = getattr(model, "in_channels", None)  # an ensemble's method (its widest member); MONAI's int
    if callable(channels):
        channels = channels()
    if channels is None:
        params = model.architecture_params() if hasattr(model, "architecture_params") else {}
        channels = params.get("in_channels", 1)
    return max(0, (int(channels) - 1) // 2)
