"""The model's square view of a user's image: a ``size`` x ``size`` grid centred on the LV at a zoom, and the way back.

A view is (origin, zoom): model pixel ``i`` looks at user coordinate ``origin + (i + 0.5) / zoom - 0.5`` (pixel
centres at integer coordinates, on both axes alike). At zoom 1 the origin is a whole pixel and the view is a plain
crop (`to_grid`), so images already on the training scale are read exactly as before; at any other zoom the image is
sampled bilinearly (smoothed first when shrinking, so that fine structure does not alias), and probabilities go back
onto the user's grid the same way, pixel for pixel of the original image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .normalize import from_grid, to_grid


@dataclass(frozen=True)
class View:
    origin: tuple          # (y, x) user coordinate of the view's outer corner
    zoom: float            # model pixels per user pixel (2: the user's pixels are twice the training data's)
    size: int              # the model's grid

    @classmethod
    def around(cls, center, zoom: float, size: int, shape) -> View:
        """The view of ``size`` model pixels centred on ``center`` (y, x; None: the image centre) at ``zoom``; at
        zoom 1 placed as `to_grid` places its crop."""
        h, w = shape[-2:]
        if zoom == 1.0:
            if center is None:
                return cls((float((h - size) // 2), float((w - size) // 2)), 1.0, size)
            return cls((float(round(center[0] - size / 2.0)), float(round(center[1] - size / 2.0))), 1.0, size)
        cy, cx = (h / 2.0 - 0.5, w / 2.0 - 0.5) if center is None else center
        half = size / (2.0 * zoom)
        return cls((cy + 0.5 - half, cx + 0.5 - half), float(zoom), size)

    @property
    def box(self) -> tuple:
        """The view's corner in whole user pixels (what `to_grid` calls the box)."""
        return int(np.floor(self.origin[0] + 0.5)), int(np.floor(self.origin[1] + 0.5))

    def window(self, shape) -> tuple[slice, slice]:
        """The user pixels (y, x slices) whose centres the view covers (its span [origin - 1/2, origin - 1/2 + size /
        zoom), half open), within an image of ``shape``."""
        extent = self.size / self.zoom
        return tuple(slice(min(max(int(np.ceil(o - 0.5)), 0), n), min(max(int(np.ceil(o + extent - 0.5)), 0), n))
                     for o, n in zip(self.origin, shape[-2:]))

    def to_user(self, y: float, x: float) -> tuple:
        """User (y, x) of a model-grid position."""
        return self.origin[0] + (y + 0.5) / self.zoom - 0.5, self.origin[1] + (x + 0.5) / self.zoom - 0.5

    def user_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """User (y, x) coordinates of the model pixels' centres, one 1-D array per axis."""
        return self.to_user(np.arange(self.size), np.arange(self.size))

    @property
    def center(self) -> tuple:
        return self.to_user((self.size - 1) / 2.0, (self.size - 1) / 2.0)


def _bilinear(values: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``values`` (N, H, W) at the (ys x xs) positions (array coordinates, pixel centres at integers; outside: the
    nearest edge value)."""
    import torch
    import torch.nn.functional as F

    h, w = values.shape[-2:]
    gy = torch.from_numpy((2.0 * np.asarray(ys) / max(h - 1, 1) - 1.0).astype(np.float32))
    gx = torch.from_numpy((2.0 * np.asarray(xs) / max(w - 1, 1) - 1.0).astype(np.float32))
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].expand(len(values), -1, -1, -1)
    source = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[:, None]
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0].numpy()


def sample_view(stack: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """(grid (Z, S, S) float32, valid (S, S) bool) of a stack (Z, H, W) in ``view``; pixels outside the image are 0
    and not valid."""
    stack = np.asarray(stack, np.float32)
    h, w = stack.shape[-2:]
    ys, xs = view.user_coordinates()
    valid = ((ys >= -0.5) & (ys <= h - 0.5))[:, None] & ((xs >= -0.5) & (xs <= w - 0.5))[None, :]
    if view.zoom == 1.0:
        grid, _ = to_grid(stack, view.size, (view.origin[0] + view.size / 2.0, view.origin[1] + view.size / 2.0))
        return grid, valid
    source = stack
    if view.zoom < 1.0:   # shrinking: smooth first (scikit-image's rule for the width), over the window only
        from scipy import ndimage

        sigma = (1.0 / view.zoom - 1.0) / 2.0
        margin = int(np.ceil(4 * sigma)) + 1
        rows, cols = (slice(max(s.start - margin, 0), min(s.stop + margin, n))
                      for s, n in zip(view.window(stack.shape), (h, w)))
        source = stack.copy()
        source[:, rows, cols] = ndimage.gaussian_filter(stack[:, rows, cols], sigma=(0, sigma, sigma))
    out = _bilinear(source, ys, xs)
    out[:, ~valid] = 0.0
    return out, valid


def view_on_image(grid: np.ndarray, view: View, shape) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Values on the model's grid (..., S, S) at the user pixels of ``view.window(shape)``: (values (..., h, w),
    inside (h, w) bool: the pixels the grid covers, (y, x) slices of the window)."""
    ywin, xwin = view.window(shape)
    lead, size = grid.shape[:-2], view.size
    # model coordinates of the window's user pixels
    iy = (np.arange(ywin.start, ywin.stop) + 0.5 - view.origin[0]) * view.zoom - 0.5
    ix = (np.arange(xwin.start, xwin.stop) + 0.5 - view.origin[1]) * view.zoom - 0.5
    inside = ((iy >= -0.5) & (iy < size - 0.5))[:, None] & ((ix >= -0.5) & (ix < size - 0.5))[None, :]
    if not inside.size:
        return np.zeros(lead + inside.shape, np.float32), inside, (ywin, xwin)
    values = _bilinear(np.asarray(grid, np.float32).reshape((-1, size, size)), iy, ix)
    return values.reshape(lead + inside.shape), inside, (ywin, xwin)


def paste_view(grid: np.ndarray, view: View, shape, fill: float = 0.0) -> np.ndarray:
    """Values on the model's grid (..., S, S) back onto a user image of ``shape`` (last two axes): bilinear at the
    user's pixel centres, ``fill`` outside the view."""
    h, w = shape[-2:]
    if view.zoom == 1.0:
        return from_grid(grid, view.box, (h, w), fill=fill)
    values, inside, (ywin, xwin) = view_on_image(grid, view, shape)
    out = np.full(grid.shape[:-2] + (h, w), fill, dtype=np.float32)
    out[..., ywin, xwin] = np.where(inside, values, np.float32(fill))
    return out
