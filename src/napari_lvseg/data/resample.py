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

from .normalize import from_grid, grid_window, to_grid


@dataclass(frozen=True)
class View:
    origin: tuple          # (y, x) user coordinate of the view's outer corner
    zoom: float            # model pixels per user pixel (2: the user's pixels are twice the training data's)
    size: int              # the model's grid

    @classmethod
    def around(cls, center, zoom: float, size: int, shape) -> "View":
        """The view of ``size`` model pixels centred on ``center`` (y, x; None: the image centre) at ``zoom``."""
        h, w = shape[-2:]
        if zoom == 1.0:   # a whole-pixel crop, placed as `to_grid` places it
            if center is None:
                return cls((float((h - size) // 2), float((w - size) // 2)), 1.0, size)
            return cls((float(round(center[0] - size / 2.0)), float(round(center[1] - size / 2.0))), 1.0, size)
        cy, cx = (h / 2.0 - 0.5, w / 2.0 - 0.5) if center is None else center
        half = size / (2.0 * zoom)
        return cls((cy + 0.5 - half, cx + 0.5 - half), float(zoom), size)

    @property
    def center(self) -> tuple:
        half = self.size / (2.0 * self.zoom)
        return self.origin[0] + half - 0.5, self.origin[1] + half - 0.5

    @property
    def box(self) -> tuple:
        """The view's corner in whole user pixels (what `to_grid` calls the box)."""
        return int(np.floor(self.origin[0] + 0.5)), int(np.floor(self.origin[1] + 0.5))

    def window(self, shape) -> tuple[slice, slice]:
        """The user pixels (y, x slices) the view covers."""
        extent = int(np.ceil(self.size / self.zoom))
        return grid_window(self.box, (extent, extent), shape)

    def user_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """User (y, x) coordinates of the model pixels' centres, one 1-D array per axis."""
        i = (np.arange(self.size) + 0.5) / self.zoom - 0.5
        return self.origin[0] + i, self.origin[1] + i


def sample_view(stack: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """(grid (Z, S, S) float32, valid (S, S) bool) of a stack (Z, H, W) in ``view``; pixels outside the image are 0
    and not valid."""
    stack = np.asarray(stack, np.float32)
    h, w = stack.shape[-2:]
    ys, xs = view.user_coordinates()
    valid = ((ys >= -0.5) & (ys <= h - 0.5))[:, None] & ((xs >= -0.5) & (xs <= w - 0.5))[None, :]
    if view.zoom == 1.0:
        grid, _ = to_grid(stack, view.size, _center_of_box(view))
        return grid, valid
    import torch
    import torch.nn.functional as F

    source = stack
    if view.zoom < 1.0:   # shrinking: smooth first (scikit-image's rule for the width)
        from scipy import ndimage

        sigma = (1.0 / view.zoom - 1.0) / 2.0
        ywin, xwin = view.window(stack.shape)
        margin = int(np.ceil(4 * sigma)) + 1
        rows = slice(max(ywin.start - margin, 0), min(ywin.stop + margin, h))
        cols = slice(max(xwin.start - margin, 0), min(xwin.stop + margin, w))
        source = stack.copy()
        source[:, rows, cols] = ndimage.gaussian_filter(stack[:, rows, cols], sigma=(0, sigma, sigma))
    gy = torch.from_numpy((2.0 * ys / max(h - 1, 1) - 1.0).astype(np.float32))
    gx = torch.from_numpy((2.0 * xs / max(w - 1, 1) - 1.0).astype(np.float32))
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].expand(len(stack), -1, -1, -1)
    out = F.grid_sample(torch.from_numpy(np.ascontiguousarray(source))[:, None], grid, mode="bilinear",
                        padding_mode="border", align_corners=True)[:, 0].numpy()
    out[:, ~valid] = 0.0
    return out, valid


def _center_of_box(view: View) -> tuple:
    """The centre `to_grid` turns back into ``view``'s whole-pixel box."""
    return view.origin[0] + view.size / 2.0, view.origin[1] + view.size / 2.0


def paste_view(grid: np.ndarray, view: View, shape, fill: float = 0.0) -> np.ndarray:
    """Values on the model's grid (..., S, S) back onto a user image of ``shape`` (last two axes): bilinear at the
    user's pixel centres, ``fill`` outside the view."""
    h, w = shape[-2:]
    if view.zoom == 1.0:
        return from_grid(grid, view.box, (h, w), fill=fill)
    import torch
    import torch.nn.functional as F

    lead = grid.shape[:-2]
    out = np.full(lead + (h, w), fill, dtype=np.float32)
    ywin, xwin = view.window((h, w))
    if ywin.stop <= ywin.start or xwin.stop <= xwin.start:
        return out
    size = view.size
    # model coordinates of the user pixels in the window
    iy = (np.arange(ywin.start, ywin.stop) + 0.5 - view.origin[0]) * view.zoom - 0.5
    ix = (np.arange(xwin.start, xwin.stop) + 0.5 - view.origin[1]) * view.zoom - 0.5
    inside = ((iy >= -0.5) & (iy <= size - 0.5))[:, None] & ((ix >= -0.5) & (ix <= size - 0.5))[None, :]
    gy = torch.from_numpy((2.0 * iy / (size - 1) - 1.0).astype(np.float32))
    gx = torch.from_numpy((2.0 * ix / (size - 1) - 1.0).astype(np.float32))
    flat = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)).reshape((-1, 1, size, size))
    sampler = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].expand(len(flat), -1, -1, -1)
    values = F.grid_sample(flat, sampler, mode="bilinear", padding_mode="border", align_corners=True)[:, 0].numpy()
    values = values.reshape(lead + values.shape[-2:])
    window = out[..., ywin, xwin]
    window[..., inside] = values[..., inside]
    out[..., ywin, xwin] = window
    return out
