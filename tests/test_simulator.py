"""Mask simulator: anatomy rules, random plausible masks, and GUI edit ops."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.data import simulator as sim
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import BACKGROUND, CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW

WALL = (MYOCARDIUM, INFARCT, NO_REFLOW)
LESION = (INFARCT, NO_REFLOW)


def infarct_fraction(labels):
    return np.isin(labels, LESION).sum() / np.isin(labels, WALL).sum()


def no_reflow_fraction(labels):
    return (labels == NO_REFLOW).sum() / np.isin(labels, LESION).sum()


def ring_with_infarct():
    """A 64x64 ring with a subendocardial infarct on the right and a no-reflow core inside it."""
    labels = sim.draw_lv_ring((64, 64), (32, 32), 12, 7)
    yy, xx = np.indices(labels.shape)
    rho, angle = np.hypot(yy - 32, xx - 32), np.arctan2(yy - 32, xx - 32)
    labels[(labels == MYOCARDIUM) & (np.abs(angle) < 0.8) & (rho < 17)] = INFARCT
    labels[(labels == INFARCT) & (np.abs(angle) < 0.3) & (rho < 14.5)] = NO_REFLOW
    return labels


@pytest.fixture(scope="module")
def phantom_slices():
    _, labels = make_phantom(n_slices=6, seed=11)
    return list(labels)


@pytest.fixture(scope="module")
def real_slices(emidec_cases):
    nib = pytest.importorskip("nibabel")
    slices = []
    for case in emidec_cases:
        volume = np.asarray(nib.load(case / "Contours" / f"{case.name}.nii.gz").dataobj).transpose(2, 1, 0)
        slices.extend(volume)
    return slices


# ---------------------------------------------------------------------------------------------- anatomy check

def test_every_real_emidec_slice_passes(real_slices):
    failing = [i for i, s in enumerate(real_slices) if sim.anatomy_problems(s)]
    assert len(real_slices) > 300 and failing == []


def test_good_masks_pass():
    assert sim.anatomy_problems(ring_with_infarct()) == []
    assert sim.anatomy_problems(np.zeros((32, 32), np.uint8)) == []  # no LV in this slice
    sim.check_anatomy(ring_with_infarct())


def test_flags_cavity_touching_background():
    labels = sim.draw_lv_ring((64, 64), (32, 32), 12, 6)
    labels[31:34, 32:] = np.where(labels[31:34, 32:] == MYOCARDIUM, BACKGROUND, labels[31:34, 32:])
    problems = sim.anatomy_problems(labels)
    assert any("cavity touches background" in p for p in problems)
    with pytest.raises(LvsegError, match="cavity touches background"):
        sim.check_anatomy(labels, path="mask.nii.gz")


def test_flags_no_reflow_outside_infarct():
    labels = ring_with_infarct()
    yy, xx = np.indices(labels.shape)
    labels[(labels == MYOCARDIUM) & (xx < 22) & (np.abs(yy - 32) < 3)] = NO_REFLOW  # septum, far from the infarct
    assert any("no-reflow outside infarct" in p for p in sim.anatomy_problems(labels))
    labels = sim.draw_lv_ring((64, 64), (32, 32), 12, 6)
    labels[30:33, 44:46] = NO_REFLOW  # no infarct at all
    assert any("no-reflow outside infarct" in p for p in sim.anatomy_problems(labels))


def test_flags_other_nonsense():
    ring = sim.draw_lv_ring((64, 64), (32, 32), 10, 5)
    stray = ring.copy()
    stray[2:5, 2:5] = MYOCARDIUM
    assert any("several pieces" in p for p in sim.anatomy_problems(stray))
    hole = ring.copy()
    hole[32, 44] = BACKGROUND
    assert any("background enclosed" in p for p in sim.anatomy_problems(hole))
    solid = np.where(ring == CAVITY, MYOCARDIUM, ring).astype(np.uint8)
    assert any("without a cavity" in p for p in sim.anatomy_problems(solid))
    edge = sim.draw_lv_ring((64, 64), (32, 32), 10, 5)
    edge[:, :30] = 0
    edge[30:35, :30] = CAVITY  # cavity running off the image edge
    assert any("cavity touches background" in p for p in sim.anatomy_problems(edge))


def test_stack_problems_name_the_slice_and_bad_values_raise():
    good, bad = ring_with_infarct(), ring_with_infarct()
    bad[bad == INFARCT] = BACKGROUND
    problems = sim.anatomy_problems(np.stack([good, bad]))
    assert problems and all(p.startswith("slice 1:") for p in problems)
    with pytest.raises(LvsegError, match="not classes"):
        sim.anatomy_problems(np.full((8, 8), 7))


# ---------------------------------------------------------------------------------------------- simulation

def check_simulated(template, seed):
    rng = np.random.default_rng(seed)
    out = sim.simulate_mask(template, rng, infarct_fraction=(0.1, 0.5), no_reflow_fraction=(0.1, 0.4),
                            p_infarct=1.0, p_no_reflow=1.0)
    assert out.shape == template.shape and out.dtype == np.uint8
    assert sim.anatomy_problems(out) == [], seed
    assert 0.1 <= infarct_fraction(out) <= 0.5, seed
    assert 0.1 <= no_reflow_fraction(out) <= 0.4, seed
    return out


def test_simulated_phantom_masks_are_valid(phantom_slices):
    for seed in range(30):
        check_simulated(phantom_slices[seed % len(phantom_slices)], seed)


def test_simulated_real_masks_are_valid(real_slices):
    pick = np.random.default_rng(0).choice(len(real_slices), 30, replace=False)
    for seed, index in enumerate(pick):
        check_simulated(real_slices[index], seed)


def test_simulation_is_deterministic_and_varies(phantom_slices):
    template = phantom_slices[3]
    a = sim.simulate_mask(template, np.random.default_rng(5))
    b = sim.simulate_mask(template, np.random.default_rng(5))
    c = sim.simulate_mask(template, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(sim.random_variant(template, np.random.default_rng(5)), a)


def test_no_infarct_when_probability_zero_and_empty_slice(phantom_slices):
    out = sim.simulate_mask(phantom_slices[2], np.random.default_rng(0), p_infarct=0.0)
    assert not np.isin(out, LESION).any() and sim.anatomy_problems(out) == []
    empty = np.zeros((32, 32), np.uint8)
    np.testing.assert_array_equal(sim.simulate_mask(empty, np.random.default_rng(0)), empty)


def test_bad_template_is_refused():
    bad = sim.draw_lv_ring((64, 64), (32, 32), 12, 6)
    bad[32, 44:] = BACKGROUND
    with pytest.raises(LvsegError, match="anatomy"):
        sim.simulate_mask(bad, np.random.default_rng(0))


def test_vary_geometry_keeps_classes_and_changes_shape(phantom_slices):
    template = phantom_slices[4]
    for seed in range(10):
        out = sim.vary_geometry(template, np.random.default_rng(seed), scale=(0.85, 1.15))
        assert sim.anatomy_problems(out) == []
        assert set(np.unique(out).tolist()) == set(np.unique(template).tolist())
        assert not np.array_equal(out, template)
        ratio = (out != 0).sum() / (template != 0).sum()
        assert 0.85**2 * 0.8 < ratio < 1.15**2 * 1.2
    # No rotation, no elastic, fixed scale 1: the LV stays where it was.
    still = sim.vary_geometry(template, np.random.default_rng(0), max_rotation=0, scale=(1, 1), elastic=0)
    assert (still == template).mean() > 0.99


def test_grown_infarct_is_subendocardial_and_in_range(phantom_slices):
    from scipy import ndimage as ndi

    for seed in range(15):
        template = phantom_slices[seed % len(phantom_slices)]
        out = sim.grow_infarct_from_seeds(template, np.random.default_rng(seed), infarct_fraction=(0.2, 0.3))
        assert 0.2 <= infarct_fraction(out) <= 0.3
        assert NO_REFLOW not in out
        np.testing.assert_array_equal(np.isin(out, WALL), np.isin(template, WALL))  # only the wall changes class
        lesions, n = ndi.label(out == INFARCT, np.ones((3, 3)))
        near_cavity = ndi.binary_dilation(out == CAVITY, np.ones((3, 3)))
        assert n >= 1 and all((near_cavity & (lesions == k)).any() for k in range(1, n + 1))


def test_place_no_reflow_inside_infarct_and_in_range(phantom_slices):
    for seed in range(15):
        grown = sim.grow_infarct_from_seeds(phantom_slices[1], np.random.default_rng(seed), (0.2, 0.4))
        out = sim.place_no_reflow(grown, np.random.default_rng(seed), fraction=(0.15, 0.3))
        assert sim.anatomy_problems(out) == []
        assert 0.15 <= no_reflow_fraction(out) <= 0.3
        np.testing.assert_array_equal(np.isin(out, LESION), grown == INFARCT)  # no-reflow only replaces infarct


# ---------------------------------------------------------------------------------------------- stacks

def lesion_angle(labels):
    """Direction of the lesion's centre of mass from the LV centre (radians, arctan2(dy, dx))."""
    lv = np.argwhere(labels != BACKGROUND).mean(0)
    lesion = np.argwhere(np.isin(labels, LESION)).mean(0)
    return np.arctan2(*(lesion - lv))


def test_simulated_stack_is_one_warp_and_one_lesion():
    ring = sim.draw_lv_ring((80, 80), (40, 38), 13, 7)
    template = np.stack([np.zeros_like(ring), ring, ring, ring, ring, ring])   # first slice beyond the apex
    lesion_runs = 0
    for seed in range(12):
        out = sim.simulate_stack(template, np.random.default_rng(seed), p_infarct=1.0, p_no_reflow=1.0,
                                 extent=(0.6, 0.8))
        assert out.shape == template.shape and out.dtype == np.uint8
        assert sim.anatomy_problems(out) == [] and not out[0].any()
        # One warp for all slices: identical template slices stay identical in outline, and differ from the template.
        outlines = [o != BACKGROUND for o in out[1:]]
        assert all(np.array_equal(outlines[0], o) for o in outlines[1:])
        assert not np.array_equal(outlines[0], ring != BACKGROUND)
        # The infarct fills consecutive slices (3 or 4 of the 5 with an LV, by extent); no-reflow a run inside them.
        infarcted = [z for z in range(len(out)) if np.isin(out[z], LESION).any()]
        with_no_reflow = [z for z in range(len(out)) if (out[z] == NO_REFLOW).any()]
        assert infarcted == list(range(infarcted[0], infarcted[0] + len(infarcted))) and 3 <= len(infarcted) <= 4
        assert set(with_no_reflow) <= set(infarcted)
        lesion_runs += bool(with_no_reflow)
        # One coronary territory: every slice's lesion points within 45 degrees of the first one's.
        first = lesion_angle(out[infarcted[0]])
        assert all(abs(np.angle(np.exp(1j * (lesion_angle(out[z]) - first)))) < np.pi / 4 for z in infarcted)
    assert lesion_runs >= 10   # no-reflow placement may fail on a thin infarct, but rarely


def test_simulated_stacks_of_real_cases_are_valid_and_deterministic(emidec_cases):
    nib = pytest.importorskip("nibabel")
    case = emidec_cases[5]
    template = np.asarray(nib.load(case / "Contours" / f"{case.name}.nii.gz").dataobj).transpose(2, 1, 0)
    for seed in range(3):
        a = sim.simulate_stack(template, np.random.default_rng(seed))
        assert sim.anatomy_problems(a) == []
        np.testing.assert_array_equal(a, sim.simulate_stack(template, np.random.default_rng(seed)))
    healthy = sim.simulate_stack(template, np.random.default_rng(0), p_infarct=0.0)
    assert not np.isin(healthy, LESION).any()
    empty = np.zeros((2, 32, 32), np.uint8)   # a blank stack, as a new labels layer is
    np.testing.assert_array_equal(sim.random_variant(empty, np.random.default_rng(0)), empty)


def test_simulate_stack_refuses_a_slice_or_a_bad_template():
    ring = sim.draw_lv_ring((64, 64), (32, 32), 12, 6)
    with pytest.raises(LvsegError, match="3-D"):
        sim.simulate_stack(ring, np.random.default_rng(0))
    bad = np.stack([ring, ring])
    bad[1, 32, 44:] = BACKGROUND
    with pytest.raises(LvsegError, match="slice 1: cavity touches background"):
        sim.simulate_stack(bad, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- edit ops

def test_grow_and_shrink_change_the_infarct_in_the_right_direction():
    labels = ring_with_infarct()
    grown = sim.grow_infarct(labels, pixels=2)
    shrunk = sim.shrink_infarct(labels, pixels=1)
    lesion = lambda a: np.isin(a, LESION).sum()  # noqa: E731
    assert lesion(grown) > lesion(labels) > lesion(shrunk) > 0
    assert (grown == INFARCT).sum() > (labels == INFARCT).sum()
    for out in (grown, shrunk):
        assert sim.anatomy_problems(out) == []
        np.testing.assert_array_equal(np.isin(out, WALL), np.isin(labels, WALL))
    everything = sim.grow_infarct(labels, pixels=100)
    assert MYOCARDIUM not in everything and sim.anatomy_problems(everything) == []
    assert not np.isin(sim.shrink_infarct(labels, pixels=100), LESION).any()


def test_shrink_turns_stranded_no_reflow_into_infarct():
    from scipy import ndimage as ndi

    # A no-reflow core wrapped in a thin infarct shell: one step of shrinking removes the whole shell.
    labels = sim.draw_lv_ring((64, 64), (32, 32), 12, 7)
    yy, xx = np.indices(labels.shape)
    rho, angle = np.hypot(yy - 32, xx - 32), np.abs(np.arctan2(yy - 32, xx - 32))
    core = (labels == MYOCARDIUM) & (angle < 0.4) & (rho < 15)
    labels[ndi.binary_dilation(core) & (labels == MYOCARDIUM)] = INFARCT
    labels[core] = NO_REFLOW
    assert sim.anatomy_problems(labels) == []
    out = sim.shrink_infarct(labels, pixels=1)
    assert NO_REFLOW not in out and sim.anatomy_problems(out) == []
    np.testing.assert_array_equal(out == INFARCT, core)  # the stranded core is what is left of the infarct
    for pixels in range(2, 8):
        assert sim.anatomy_problems(sim.shrink_infarct(ring_with_infarct(), pixels=pixels)) == []


def test_remove_and_add_no_reflow():
    labels = ring_with_infarct()
    removed = sim.remove_no_reflow(labels)
    assert NO_REFLOW not in removed
    np.testing.assert_array_equal(removed == INFARCT, np.isin(labels, LESION))

    added = sim.add_no_reflow(removed, center=(32, 45), fraction=0.25)
    count = (added == NO_REFLOW).sum()
    assert count == round(0.25 * (removed == INFARCT).sum())
    assert sim.anatomy_problems(added) == []
    assert sim._touches(added == NO_REFLOW, added == CAVITY)  # subendocardial: the core reaches the cavity
    assert ((added == NO_REFLOW) <= (removed == INFARCT)).all()
    rng_added = sim.add_no_reflow(removed, np.random.default_rng(0), fraction=0.2)
    assert (rng_added == NO_REFLOW).any() and sim.anatomy_problems(rng_added) == []
    plain = sim.draw_lv_ring((64, 64), (32, 32), 12, 6)
    np.testing.assert_array_equal(sim.add_no_reflow(plain, center=(32, 45)), plain)


def test_draw_lv_ring_area_and_fit():
    for radius in (8, 15.5, 25):
        labels = sim.draw_lv_ring((128, 128), (64, 60), radius, 8)
        assert (labels == CAVITY).sum() == pytest.approx(np.pi * radius**2, rel=0.04)
        outer = np.pi * (radius + 8) ** 2
        assert np.isin(labels, (CAVITY, MYOCARDIUM)).sum() == pytest.approx(outer, rel=0.04)
        assert sim.anatomy_problems(labels) == []
    with pytest.raises(LvsegError, match="does not fit"):
        sim.draw_lv_ring((64, 64), (10, 32), 12, 6)
    with pytest.raises(LvsegError, match="thickness"):
        sim.draw_lv_ring((64, 64), (32, 32), 12, 0)


def test_ops_on_stacks(phantom_slices):
    stack = np.stack(phantom_slices[:3])
    out = sim.apply_to_stack(sim.simulate_mask, stack, np.random.default_rng(1))
    again = sim.simulate_mask(stack, np.random.default_rng(1))  # ops loop over stacks themselves too
    assert out.shape == stack.shape
    np.testing.assert_array_equal(out, again)
    assert sim.anatomy_problems(out) == []
    assert NO_REFLOW not in sim.remove_no_reflow(stack)
    with pytest.raises(LvsegError, match="shape"):
        sim.apply_to_stack(sim.remove_no_reflow, np.zeros((2, 2, 8, 8), np.uint8))


def test_a_failing_slice_of_a_stack_edit_is_named():
    def fails_on_lv(s):
        if s.any():
            raise LvsegError("labels fail the anatomy check: cavity touches background")
        return s

    stack = np.zeros((3, 8, 8), np.uint8)
    stack[1, 2, 2] = 1
    with pytest.raises(LvsegError, match="^slice 1: labels fail the anatomy check"):
        sim.apply_to_stack(fails_on_lv, stack)
