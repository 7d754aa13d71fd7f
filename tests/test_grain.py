import numpy as np
from scipy import ndimage as ndi

from napari_lvseg.data.grain import MIN_PIXELS, matched_grain, residual, robust_spread


def lag_correlation(values: np.ndarray, mask: np.ndarray, axis: int | None = None) -> float:
    """The correlation of neighbouring values inside ``mask``: along ``axis`` (0: rows, 1: columns), or both
    together (None). 0 where too few pairs."""
    pairs = []
    if axis in (None, 1):
        keep = mask[:, :-1] & mask[:, 1:]
        pairs.append((values[:, :-1][keep], values[:, 1:][keep]))
    if axis in (None, 0):
        keep = mask[:-1] & mask[1:]
        pairs.append((values[:-1][keep], values[1:][keep]))
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    if a.size < MIN_PIXELS or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _disc(shape=(96, 96), radius=30):
    y, x = np.ogrid[:shape[0], :shape[1]]
    return (y - shape[0] / 2) ** 2 + (x - shape[1] / 2) ** 2 < radius ** 2


def _grainy(level, smoothing, seed):
    """A flat image with Gaussian noise, correlated along x more than along y, whose residual spreads by
    ``level``: an interpolating reconstruction's noise."""
    noise = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal((96, 96)), (0.3 * smoothing, smoothing),
                                mode="wrap")
    region = _disc()
    return 100.0 + noise * level / robust_spread(residual(noise)[region])


def test_the_grain_brings_a_smooth_region_to_the_real_images_level_and_correlation():
    region = _disc()
    inner = ndi.binary_erosion(region, iterations=2)
    real = _grainy(4.0, 1.0, seed=0)
    smooth = np.full(region.shape, 100.0) + np.linspace(0, 5, 96)[None]   # a generator's smooth fill-in
    grain = matched_grain(real, smooth, region, np.random.default_rng(1))
    assert np.all(grain[~region] == 0) and np.any(grain[region] != 0)
    out = residual(smooth + grain)
    assert abs(robust_spread(out[inner]) - 4.0) < 0.4
    for axis in (0, 1):   # the real noise's correlations, each axis its own, not just its level
        assert abs(lag_correlation(out, inner, axis) - lag_correlation(residual(real), inner, axis)) < 0.1
    assert lag_correlation(residual(real), inner, 1) > lag_correlation(residual(real), inner, 0) + 0.2
    again = matched_grain(real, smooth, region, np.random.default_rng(1))
    assert np.array_equal(grain, again)   # same generator state, same grain


def test_no_grain_where_the_fill_in_is_already_as_grainy_or_the_region_too_small():
    region = _disc()
    real = _grainy(2.0, 1.0, seed=0)
    assert not matched_grain(real, _grainy(3.0, 1.0, seed=5), region, np.random.default_rng(0)).any()
    tiny = np.zeros_like(region)
    tiny[40:44, 40:44] = True
    assert not matched_grain(real, np.full(region.shape, 100.0), tiny, np.random.default_rng(0)).any()


def test_own_detail_swaps_the_fill_ins_fine_texture_for_the_real_images():
    from napari_lvseg.data.grain import own_detail

    rng = np.random.default_rng(0)
    real = ndi.gaussian_filter(rng.normal(100, 30, (48, 48)), 4) + rng.normal(0, 5, (48, 48))
    fill = np.full((48, 48), 140.0) + rng.normal(0, 1, (48, 48))   # brighter, nearly smooth
    out = fill + own_detail(real, fill)
    # the fill's smoothing plus the real image's residual: its own noise and finest detail, in place
    assert np.allclose(out, ndi.gaussian_filter(fill, 1.0, mode="nearest") + residual(real))
    assert np.corrcoef(residual(out).ravel(), residual(real).ravel())[0, 1] > 0.9
    assert abs(out.mean() - 140) < 1 and abs(real.mean() - 100) < 10                              # brightness kept
