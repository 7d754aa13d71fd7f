"""Procedural LGE short-axis phantom: a labelled image stack that looks roughly like the EMIDEC crops.

Used for tests and demos where real data is absent. Deterministic by seed.

Figures measured on emidec-lge-128 (60 cases, 409 slices, intensities clipped to about 1790..3152):
class means over all voxels: background 2344, cavity 2477, normal myocardium 2253, infarct 2553,
no-reflow 2440 (median of per-case means: 2325, 2474, 2263, 2506, 2317). Order: infarct > blood >
background > myocardium; no-reflow < infarct. Within one slice the class spread is about 70-170
(blood, myocardium, infarct) and 200-450 for the background (dark lungs, bright fat). Geometry:
cavity radius 13-30 px (median 22), wall 7-13 px (median 9); the first slice is the apex (radius
about 15) and the last the base (about 24), the LV centred at (65, 64) +- 3 px.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import BACKGROUND, CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW

LOW, HIGH = 1790.0, 3152.0  # the clipping range of the real crops
# Tissue levels before noise and bias, set so the phantom's class means land near the real ones.
LEVELS = {"tissue": 2390.0, "lung": 1750.0, "fat": 2850.0, "blood": 2490.0,
          "myocardium": 2240.0, "infarct": 2620.0, "no_reflow": 2200.0}
_FLOOR = 1650.0  # signal zero of the Rician noise and the bias field (below the clipping range)
_NOISE_SIGMA = 45.0


def _harmonics(rng, n_slices: int, amplitude: float, n_orders: int = 2) -> np.ndarray:
    """(Z, 2, K) coefficients of a radius modulation sum(a cos + b sin) over orders 2.., drifting over z."""
    base = rng.normal(0, amplitude, (2, n_orders))
    return (base[None] + rng.normal(0, amplitude / 3, (n_slices, 2, n_orders))).astype(np.float32)


def _modulation(trig: list, coeffs: np.ndarray) -> np.ndarray:
    """1 + the harmonic radius modulation; ``trig`` holds (cos k theta, sin k theta) for k = 2, 3, ..."""
    out = np.ones_like(trig[0][0])
    for k, (cos, sin) in enumerate(trig):
        out += coeffs[:, 0, k, None, None] * cos + coeffs[:, 1, k, None, None] * sin
    return out


def _labels(rng, n_slices: int, size: int, infarct: bool, no_reflow: bool):
    """Labels (Z, Y, X) plus the right-ventricle blood and papillary-muscle masks (labelled cavity/background)."""
    unit = size / 128.0
    height = np.linspace(0, 1, n_slices) if n_slices > 1 else np.array([0.5])  # 0 apex .. 1 base
    endo_r = unit * (rng.uniform(12, 15) + rng.uniform(9, 13) * height ** 0.7)  # (Z,)
    thickness = unit * rng.uniform(7, 10)
    centre = size / 2 + unit * rng.normal(0, 1.5, 2) + unit * rng.normal(0, 0.7, (n_slices, 2))
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    dy = yy[None] - centre[:, 0, None, None].astype(np.float32)
    dx = xx[None] - centre[:, 1, None, None].astype(np.float32)
    rho, theta = np.hypot(dy, dx), np.arctan2(dy, dx)
    trig = [(np.cos(k * theta), np.sin(k * theta)) for k in (2, 3)]  # ellipse, and a little irregularity
    endo = endo_r[:, None, None] * _modulation(trig, _harmonics(rng, n_slices, 0.04))
    epi = endo + thickness * _modulation(trig, _harmonics(rng, n_slices, 0.08))
    depth = (rho - endo) / (epi - endo)  # 0 at the endocardium, 1 at the epicardium

    labels = np.zeros((n_slices, size, size), np.uint8)
    labels[depth < 1] = MYOCARDIUM
    labels[depth < 0] = CAVITY

    if infarct:
        # One coronary territory, contiguous over a few slices; widest and deepest mid-range.
        span = int(np.clip(round(n_slices * rng.uniform(0.5, 0.8)), 1, n_slices))
        first = int(rng.integers(0, n_slices - span + 1))
        middle = first + (span - 1) / 2
        territory = rng.uniform(-np.pi, np.pi)
        widest = rng.uniform(0.8, 1.4)  # half-width in radians
        deepest = rng.uniform(0.55, 1.1)  # transmurality; >= 1 is transmural
        for z in range(first, first + span):
            taper = np.sqrt(max(1 - ((z - middle) / (span / 2 + 0.5)) ** 2, 0.0))
            half = widest * (0.5 + 0.5 * taper)
            offset = np.angle(np.exp(1j * (theta[z] - territory))) / half  # -1..1 inside the territory
            inside = np.clip(1 - offset**2, 0, None)
            reach = deepest * (0.6 + 0.4 * taper) * inside ** 0.5 * (1 + 0.15 * np.sin(3 * theta[z] + z))
            in_wall = (depth[z] >= 0) & (depth[z] < 1)
            labels[z][in_wall & (np.abs(offset) < 1) & (depth[z] < reach)] = INFARCT
            if no_reflow and (z == round(middle) or taper > 0.8):
                # Subendocardial core in the middle of the territory, well inside the infarct.
                core = in_wall & (np.abs(offset) < 0.35) & (depth[z] < 0.45 * reach)
                labels[z][core] = NO_REFLOW

    # Right ventricle: a crescent of blood on the left of the LV, absent at the apex (labelled background).
    rv_scale = np.clip((height - 0.1) / 0.9, 0, 1)[:, None, None]
    mean_epi = (endo_r + thickness)[:, None, None]
    rv_cx = -0.6 * mean_epi
    in_rv_ellipse = ((dy / (1.6 * mean_epi)) ** 2 + ((dx - rv_cx) / (1.25 * mean_epi)) ** 2) < rv_scale
    right_ventricle = in_rv_ellipse & (rho > epi + 2 * unit) & (dx < 0) & (labels == BACKGROUND)

    # Papillary muscles: small dark discs in the cavity near the wall (EMIDEC labels them cavity).
    papillary = np.zeros_like(right_ventricle)
    for angle in (rng.uniform(0.3, 1.2), rng.uniform(1.8, 2.6)):
        py = centre[:, 0] + 0.7 * endo_r * np.sin(angle)
        px = centre[:, 1] + 0.7 * endo_r * np.cos(angle)
        radius = unit * 2.2 * (0.3 + 0.7 * height[:, None, None])
        papillary |= np.hypot(yy[None] - py[:, None, None], xx[None] - px[:, None, None]) < radius
    papillary &= labels == CAVITY
    return labels, right_ventricle, papillary, centre, (rho, epi)


def _background(rng, n_slices: int, size: int, labels, centre, rho, epi) -> np.ndarray:
    """Grey textured tissue with dark lung patches and bright fat (epicardial rim and blobs)."""
    unit = size / 128.0
    texture = ndi.gaussian_filter(rng.standard_normal((n_slices, size, size)), (0.8, 2.5 * unit, 2.5 * unit))
    texture /= texture.std() + 1e-12
    image = LEVELS["tissue"] + 110.0 * texture
    yy, xx = np.mgrid[:size, :size]
    for _ in range(2):  # lungs: large dark ellipses away from the heart
        angle = rng.uniform(-np.pi, np.pi)
        distance = unit * rng.uniform(44, 56)
        ly = centre[:, 0] + distance * np.sin(angle)
        lx = centre[:, 1] + distance * np.cos(angle)
        ry, rx = unit * rng.uniform(12, 20, 2)
        lung = ((yy - ly[:, None, None]) / ry) ** 2 + ((xx - lx[:, None, None]) / rx) ** 2 < 1
        image[lung] = LEVELS["lung"] + 40.0 * texture[lung]
    # Epicardial fat: bright patches hugging part of the epicardium.
    fat = (rho > epi) & (rho < epi + 2.0 * unit) & (texture > 0.3)
    image[fat] = LEVELS["fat"]
    return np.where(labels == BACKGROUND, image, 0.0)


def _bias(rng, size: int) -> np.ndarray:
    """Smooth multiplicative bias field, a random quadratic around 1 (about +-10 % over the image)."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    terms = np.stack([y, x, y * x, y**2 - 0.33, x**2 - 0.33])
    return 1.0 + np.tensordot(rng.uniform(-0.05, 0.05, 5), terms, 1)


def make_phantom(n_slices: int = 8, size: int = 128, seed: int = 0, infarct: bool = True,
                 no_reflow: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic LGE short-axis stack: image float32 (Z, Y, X) in about 1790..3152 and labels uint8 (Z, Y, X).

    Slice 0 is the apex, the last slice the base (as in EMIDEC). Same seed, same stack.
    """
    if int(n_slices) < 1 or int(size) < 32:
        raise LvsegError(f"phantom needs n_slices >= 1 and size >= 32, got n_slices {n_slices}, size {size}")
    rng = np.random.default_rng(seed)
    labels, right_ventricle, papillary, centre, (rho, epi) = _labels(rng, n_slices, size, infarct, no_reflow)
    image = _background(rng, n_slices, size, labels, centre, rho, epi)
    for value, level in ((CAVITY, "blood"), (MYOCARDIUM, "myocardium"), (INFARCT, "infarct"), (NO_REFLOW, "no_reflow")):
        image[labels == value] = LEVELS[level]
    image[right_ventricle] = LEVELS["blood"]
    image[papillary] = LEVELS["myocardium"]
    # Slow blood flow and coil sensitivity make the pools and tissue uneven: a little smooth variation.
    uneven = ndi.gaussian_filter(rng.standard_normal(image.shape), (0, 4, 4))
    image += 40.0 * uneven / (uneven.std() + 1e-12)
    image = ndi.gaussian_filter(image, (0, 0.6, 0.6))  # partial volume at the borders
    signal = (image - _FLOOR) * _bias(rng, size)[None]
    noisy = np.hypot(signal + rng.normal(0, _NOISE_SIGMA, signal.shape), rng.normal(0, _NOISE_SIGMA, signal.shape))
    image = np.clip(noisy + _FLOOR, LOW, HIGH)
    return image.astype(np.float32), labels


def phantom_case(n_slices: int = 8, size: int = 128, seed: int = 0, infarct: bool = True,
                 no_reflow: bool = True) -> dict:
    """``make_phantom`` as a case dict: 'image', 'labels', 'name'."""
    image, labels = make_phantom(n_slices, size, seed, infarct, no_reflow)
    return {"image": image, "labels": labels, "name": f"phantom_seed{seed}"}
