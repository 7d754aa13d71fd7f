"""Cross-subject lesion fusion (data/fusion.py) and the mask edits of edited datasets (data/edits.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_lvseg.data import edits, fusion
from napari_lvseg.data.simulator import anatomy_problems, draw_lv_ring
from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW

CROSS = ndi.generate_binary_structure(2, 1)


def ring(radius=14.0, thickness=6.0, centre=(40, 40), shape=(80, 80)):
    return draw_lv_ring(shape, centre, radius, thickness)


def with_lesion(labels, start=-30.0, stop=30.0, depth=0.6, no_reflow=True):
    """An infarct in the angular sector [start, stop] degrees (image angles: arctan2(dy, dx)), from the endocardium
    to ``depth`` of the wall; a no-reflow core in its inner third and middle third of the sector."""
    out = labels.copy()
    cavity = out == CAVITY
    centre = np.array(ndi.center_of_mass(cavity))
    yy, xx = np.indices(out.shape)
    angle = np.degrees(np.arctan2(yy - centre[0], xx - centre[1]))
    from_cavity = ndi.distance_transform_edt(~cavity)
    from_outside = ndi.distance_transform_edt(out != 0)
    frac = from_cavity / (from_cavity + from_outside)
    wall = out == MYOCARDIUM
    out[wall & (angle >= start) & (angle <= stop) & (frac <= depth)] = INFARCT
    if no_reflow:
        third = (stop - start) / 3
        core = (out == INFARCT) & (angle >= start + third) & (angle <= stop - third) & (frac <= depth / 3)
        out[core] = NO_REFLOW
    return out


def epicardial():
    """A transmural lesion with its two inner pixel layers given back to normal myocardium."""
    out = with_lesion(ring(), -20, 20, 1.0, no_reflow=False)
    out[(out == INFARCT) & ndi.binary_dilation(out == CAVITY, CROSS, 2)] = MYOCARDIUM
    return out


def lesion(labels):
    return np.isin(labels, (INFARCT, NO_REFLOW))


def assert_possible(fused, recipient, donor, bounds=fusion.AREA_RATIO):
    wall = np.isin(recipient, (MYOCARDIUM, INFARCT, NO_REFLOW))
    assert not (lesion(fused) & ~wall).any()                               # lesion inside the recipient's wall
    assert (ndi.binary_dilation(fused == CAVITY, CROSS) & lesion(fused)).any()   # touches the endocardium
    assert np.array_equal(fused == CAVITY, recipient == CAVITY)             # the cavity is the recipient's
    assert np.array_equal(np.isin(fused, (2, 3, 4)), wall)                  # so is the wall
    share = lesion(fused).sum() / wall.sum()
    donor_share = lesion(donor).sum() / np.isin(donor, (2, 3, 4)).sum()
    assert bounds[0] <= share / donor_share <= bounds[1]
    pieces, n = ndi.label(fused == NO_REFLOW, np.ones((3, 3)))
    near_infarct = ndi.binary_dilation(fused == INFARCT, CROSS)
    assert all((near_infarct & (pieces == k)).any() for k in range(1, n + 1))   # no-reflow inside the infarct
    assert not anatomy_problems(fused)


def test_a_lesion_keeps_its_sector_and_transmural_fraction_in_a_bigger_wall():
    donor = with_lesion(ring(12, 5), -30, 30, 0.6)
    recipient = ring(18, 9, centre=(45, 45), shape=(90, 90))
    fused = fusion.fuse_lesion(donor, recipient)
    assert_possible(fused, recipient, donor)
    # the same sector: the lesion's mean angle about the cavity centre stays near 0 degrees
    centre = np.array(ndi.center_of_mass(fused == CAVITY))
    ys, xs = np.nonzero(lesion(fused))
    mean_angle = np.degrees(np.angle(np.exp(1j * np.arctan2(ys - centre[0], xs - centre[1])).mean()))
    assert abs(mean_angle) < 5
    # the same share of the wall (the walls differ in size by 2.4x)
    assert lesion(fused).sum() > 2 * lesion(donor).sum()
    assert (fused == NO_REFLOW).sum() > (donor == NO_REFLOW).sum()


def test_a_recipients_own_lesion_is_replaced_and_a_rotation_moves_the_lesion():
    donor = with_lesion(ring(), -20, 40, 1.0, no_reflow=False)
    recipient = with_lesion(ring(15, 6), 150, 200, 0.5)
    fused = fusion.fuse_lesion(donor, recipient)
    assert_possible(fused, recipient, donor)
    assert not (fused == NO_REFLOW).any()
    moved = fusion.move_infarct(donor, 180)
    assert_possible(moved, donor, donor)
    assert not (lesion(moved) & lesion(donor)).any()   # half a turn away: no overlap with where it was
    assert abs(int(lesion(moved).sum()) - int(lesion(donor).sum())) <= 0.15 * lesion(donor).sum()


@pytest.mark.parametrize("make, reason", [
    (lambda: ring(), "donor has no infarct"),
    (lambda: with_lesion(with_lesion(ring(), -20, 0), 90, 120), "several pieces"),
    (lambda: epicardial(), "does not touch the endocardium"),
])
def test_an_impossible_donor_is_rejected_with_its_reason(make, reason):
    with pytest.raises(fusion.FusionRejected, match=reason):
        fusion.fuse_lesion(make(), ring(16, 7))


def test_a_result_that_breaks_the_rules_is_rejected_and_the_problems_named():
    donor = with_lesion(ring(), -30, 30, 0.6)
    recipient = ring(15, 6)
    broken = fusion.fit_lesion(donor, recipient)
    broken[(broken == 0) & ndi.binary_dilation(np.isin(broken, (2, 3, 4)), CROSS)] = INFARCT   # lesion outside the wall
    problems = fusion.fusion_problems(broken, recipient, donor)
    assert any("outside the recipient's wall" in p for p in problems)
    tiny = recipient.copy()
    tiny[np.argwhere(ndi.binary_dilation(recipient == CAVITY, CROSS) & (recipient == MYOCARDIUM))[0][0],
         np.argwhere(ndi.binary_dilation(recipient == CAVITY, CROSS) & (recipient == MYOCARDIUM))[0][1]] = INFARCT
    assert any("ratio" in p for p in fusion.fusion_problems(tiny, recipient, donor))
    lost = fusion.fit_lesion(donor, recipient)
    lost[lost == NO_REFLOW] = INFARCT
    assert any("no-reflow was lost" in p for p in fusion.fusion_problems(lost, recipient, donor))
    with pytest.raises(fusion.FusionRejected, match="recipient slice has no LV"):
        fusion.fuse_lesion(donor, np.zeros_like(donor))


def test_the_nearest_recipient_is_the_one_of_matching_size_and_shape():
    donor = with_lesion(ring(14, 6), -30, 30)
    candidates = [ring(8, 4), ring(20, 9), np.zeros((80, 80), np.uint8), ring(14.5, 6), ring(11, 5)]
    shapes = [fusion.lv_shape(c) for c in candidates]
    assert shapes[2] is None
    assert fusion.nearest_recipients(fusion.lv_shape(donor), shapes, k=2) == [3, 4]
    fused, index, rejected = fusion.fuse_from_donor(donor, candidates, np.random.default_rng(0), k=1)
    assert index == 3 and rejected == []
    assert_possible(fused, candidates[3], donor)


def test_lv_shape_measures_a_ring():
    shape = fusion.lv_shape(ring(14, 6))
    assert shape["diameter"] == pytest.approx(40, abs=1.5)
    assert shape["thickness"] == pytest.approx(6, abs=1)
    assert shape["eccentricity"] < 0.2
    squashed = np.zeros((80, 80), np.uint8)
    squashed[20:60] = ring(14, 6)[::2][0:40]
    assert fusion.lv_shape(squashed)["eccentricity"] > 0.6


def test_fusion_on_real_emidec_masks(emidec_cases):
    """Real donors' lesions into the nearest real recipients of other cases: possible results or named rejections."""
    from napari_lvseg.io import emidec

    stacks = {}
    for case in emidec_cases[::3]:   # 20 of the 60 cases
        stacks[case.name] = emidec.read_case(emidec.case_from_path(case))[1].data
    slices = [(name, s) for name, stack in stacks.items() for s in stack if s.any() and not anatomy_problems(s)]
    donors = [(name, s) for name, s in slices if lesion(s).any() and not fusion.donor_problems(s)]
    assert len(donors) >= 10
    rng = np.random.default_rng(0)
    accepted = 0
    for i in rng.choice(len(donors), 10, replace=False):
        name, donor = donors[i]
        pool = [s for other, s in slices if other != name]
        try:
            fused, index, _ = fusion.fuse_from_donor(donor, pool, rng)
        except fusion.FusionRejected as exc:
            assert "fusion rejected" in str(exc) or "no recipient" in str(exc)
            continue
        accepted += 1
        assert_possible(fused, pool[index], donor)
        if (donor == NO_REFLOW).any():
            assert (fused == NO_REFLOW).any()
    assert accepted >= 8


def test_edits_keep_the_wall_and_cavity_and_change_the_lesion():
    base = with_lesion(ring(), -30, 30, 0.6)
    rng = np.random.default_rng(1)
    for kind in ("grow", "shrink", "move", "add_no_reflow", "remove_no_reflow", "new_infarct", "clear"):
        assert edits.applicable(base, kind)
        out, detail = edits.edit_mask(base, kind, rng)
        assert np.array_equal(out == CAVITY, base == CAVITY), kind
        assert np.array_equal(np.isin(out, (2, 3, 4)), np.isin(base, (2, 3, 4))), kind
        assert not anatomy_problems(out), kind
        if kind != "new_infarct":
            assert not np.array_equal(out, base), kind
    assert not edits.applicable(ring(), "grow") and edits.applicable(ring(), "new_infarct")
    stack = np.stack([base, with_lesion(ring(), -20, 40, 0.5), ring()])
    out, _ = edits.edit_mask(stack, "new_infarct", np.random.default_rng(0))
    assert out.shape == stack.shape and np.array_equal(out == CAVITY, stack == CAVITY) and lesion(out).any()
    moved, detail = edits.edit_mask(stack, "move", np.random.default_rng(0))
    assert 30 <= abs(detail["degrees"]) <= 150 and np.array_equal(moved[2], stack[2])


def test_unknown_edits_are_refused_by_name():
    assert edits.check_edits(["all"]) == edits.EDITS
    with pytest.raises(LvsegError, match="unknown mask edit wiggle: choose from grow"):
        edits.check_edits(["grow", "wiggle"])
    with pytest.raises(LvsegError, match="not 'fusion'"):
        edits.edit_mask(ring(), "fusion", np.random.default_rng(0))
