"""The grain of a real image, given back to a generator's smooth fill-in.

A context generator trained with an L1 loss fills the LV region with the mean of what it could be: a smooth blood
pool and wall, where the real image around it (and the real LV it replaces) carry the scanner's noise. That noise is
not white: the reconstruction's interpolation correlates neighbours, differently along the two axes (on the EMIDEC
crops lag-1 correlations of 0.6-0.8 along one axis and 0.4-0.8 along the other, negative at lag 2-3). A small
classifier tells even the real image, blurred by 1 px inside the region, from the original (held-out accuracy
0.975), and still 0.86 once isotropic Gaussian noise of the right level is added back.

`matched_grain` measures the real image's fine texture over the very pixels being replaced: the residual after a
1-pixel Gaussian smoothing, its amplitude spectrum and its robust spread. It returns a phase-randomised surrogate of
that residual (the same spectrum, so the same anisotropic correlations; random phases, so none of its structure),
scaled to bring the synthetic region's residual to the real one's spread. Only second-order statistics pass from
the real pixels to the synthetic ones.

`own_detail` is for a fill-in that redraws only the pixels an edit changed: those are the same tissue under a new
label (a wall that now enhances), so they keep their own fine texture, the real residual itself, in place of the
generator's; the generator gives the rest (the new label's brightness).
"""

from __future__ import annotations

import numpy as np

RESIDUAL_SIGMA = 1.0   # px: the smoothing whose residual is the image's fine texture
MIN_PIXELS = 30   # fewer pixels cannot say how grainy an image is
LOWEST_PASS = 0.25   # the residual's transfer at about 1/8 cycles per pixel


def residual(image: np.ndarray) -> np.ndarray:
    """The image less its 1-pixel Gaussian smoothing: its noise and finest detail."""
    from scipy import ndimage as ndi

    image = np.asarray(image, np.float64)
    return image - ndi.gaussian_filter(image, RESIDUAL_SIGMA, mode="nearest")


def robust_spread(values: np.ndarray) -> float:
    """The standard deviation a Gaussian with these values' median absolute deviation has."""
    values = np.asarray(values, np.float64)
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def surrogate(fine: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stationary random field (``fine``'s shape) whose `residual` has the amplitude spectrum of ``fine`` (a
    residual) inside ``mask`` (the rest zeroed, the mean taken out), with random phases. The spectrum is divided by
    the residual's own transfer function, so that the field's residual, not the field, matches; below
    `LOWEST_PASS` of it (wavelengths over about 8 px, where structure rather than noise lives) no further."""
    patch = np.where(mask, fine - fine[mask].mean(), 0.0)
    fy = np.fft.fftfreq(patch.shape[0])[:, None]
    fx = np.fft.fftfreq(patch.shape[1])[None]
    passed = 1.0 - np.exp(-2.0 * (np.pi * RESIDUAL_SIGMA) ** 2 * (fy ** 2 + fx ** 2))
    amplitude = np.abs(np.fft.fft2(patch)) / np.maximum(passed, LOWEST_PASS)
    phases = np.exp(2j * np.pi * rng.random(patch.shape))
    return np.fft.ifft2(amplitude * phases).real


def matched_grain(real: np.ndarray, synthetic: np.ndarray, region: np.ndarray, rng: np.random.Generator):
    """Noise (float64, the images' shape, zero outside ``region``) that, added to ``synthetic``, gives its
    residual inside ``region`` the spread and spectrum of ``real``'s there. Zeros where the region is too small or
    the synthetic image is already as grainy as the real one."""
    from scipy import ndimage as ndi

    region = np.asarray(region, bool)
    out = np.zeros(region.shape)
    inner = ndi.binary_erosion(region, iterations=2)   # the residual at the region's edge mixes both sides
    if inner.sum() < MIN_PIXELS:
        return out
    real_residual = residual(real)
    target = robust_spread(real_residual[inner])
    have = robust_spread(residual(synthetic)[inner])
    if target <= have:
        return out
    noise = surrogate(real_residual, inner, rng)
    spread = robust_spread(residual(noise)[inner])   # the residual is linear: scaling the noise scales it
    if spread > 0:
        out[region] = noise[region] * (np.sqrt(target ** 2 - have ** 2) / spread)
    return out


def own_detail(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """What, added to ``synthetic``, puts ``real``'s `residual` in place of its own (float64, the images' shape): the
    sum is the synthetic image's 1-pixel smoothing plus the real image's own noise and finest detail."""
    return residual(real) - residual(synthetic)
