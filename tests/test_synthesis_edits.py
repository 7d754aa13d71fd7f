"""Synthetic datasets from real cases' edited masks (synthesis_edits.py, lvseg synthesize-dataset --edits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lvseg.cli import main
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.data.simulator import anatomy_problems
from napari_lvseg.engine import TrainOptions, train
from napari_lvseg.errors import LvsegError
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.synthesis_edits import Renderer, context_kept, synthesize_edited_dataset

torch.set_num_threads(1)
WALL = (2, 3, 4)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    folder = PairFolder(tmp_path_factory.mktemp("pairs"))
    for seed in range(4):
        image, labels = make_phantom(n_slices=3, seed=seed)
        folder.add(image, labels, origin="real", name=f"phantom_P{seed}")
    return folder.root


def _train(pairs, out, **kw):
    options = dict(task="synthesis", data=[str(pairs)], out=str(out), epochs=1, samples_per_epoch=4, batch_size=2,
                   width=4, disc_width=8, threads=1, device="cpu", seed=0)
    list(train(TrainOptions(**{**options, **kw})))
    return out


@pytest.fixture(scope="module")
def labels_only(pairs, tmp_path_factory):
    return _train(pairs, tmp_path_factory.mktemp("runs") / "labels_only")


@pytest.fixture(scope="module")
def with_context(pairs, tmp_path_factory):
    return _train(pairs, tmp_path_factory.mktemp("runs") / "context", context_inpaint=True)


def _source(pairs, record):
    image, labels = PairFolder(pairs).read(record["source_case"])
    return image[record["source_slice"]], labels[record["source_slice"]]


def test_edited_pairs_keep_their_source_slices_wall_and_say_what_was_done(pairs, labels_only, tmp_path):
    folder, summary = synthesize_edited_dataset(pairs, 12, tmp_path / "edited", ["all"], model=str(labels_only),
                                                seed=5)
    records = folder.records()
    assert len(records) == 12 and sum(summary["pairs"].values()) == 12
    assert summary["rendering"]["context"] is False
    kinds = {r["edit"] for r in records}
    assert len(kinds) >= 4
    for k, record in enumerate(records):
        assert record["origin"] == "synthetic" and record["seed"] == 5 + k and record["context"] is False
        image, mask = folder.read(record["name"])
        source_image, source_mask = _source(pairs, record)
        assert mask.shape == image.shape == source_mask.shape and not anatomy_problems(mask)
        assert np.array_equal(np.isin(mask, WALL), np.isin(source_mask, WALL)), record["edit"]
        assert np.array_equal(mask == 1, source_mask == 1), record["edit"]
        if record["edit"] == "fusion":
            assert record["donor_case"] != record["source_case"]
            assert np.isin(mask, (3, 4)).any()
        if record["edit"] in ("grow", "shrink", "move", "remove_no_reflow", "clear"):
            assert not np.array_equal(mask, source_mask), record["edit"]
    # same seed, same dataset
    again, _ = synthesize_edited_dataset(pairs, 12, tmp_path / "again", ["all"], model=str(labels_only), seed=5)
    for a, b in zip(folder.names(), again.names()):
        assert all(np.array_equal(x, y) for x, y in zip(folder.read(a), again.read(b)))


def test_a_context_generator_renders_each_edit_in_its_own_real_surroundings(pairs, with_context, tmp_path):
    from napari_lvseg.synthesis import region_slices

    folder, summary = synthesize_edited_dataset(pairs, 4, tmp_path / "in_context", ["fusion", "grow"],
                                                model=str(with_context), seed=0)
    assert summary["rendering"]["context"] is True
    assert summary["rendering"]["context_kept"] == {"yes": 4, "no": 0}
    for record in folder.records():
        assert record["context"] is True
        image, mask = folder.read(record["name"])
        source_image, source_mask = _source(pairs, record)
        outside = ~region_slices(mask[None], source_mask[None])[0]
        assert np.array_equal(image[outside], source_image[outside])
        assert context_kept(image, source_image, mask)


def test_whole_stacks_are_edited_as_one_case(pairs, labels_only, tmp_path):
    folder, summary = synthesize_edited_dataset(pairs, 3, tmp_path / "stacks", ["new_infarct", "fusion", "move"],
                                                model=str(labels_only), seed=2, stacks=True)
    for record in folder.records():
        assert record["source_slice"] is None
        image, mask = folder.read(record["name"])
        source = PairFolder(pairs).read(record["source_case"])[1]
        assert mask.shape == image.shape == source.shape
        assert np.array_equal(np.isin(mask, WALL), np.isin(source, WALL)) and not anatomy_problems(mask)


def _split_lesion(labels):
    """The phantom's lesion cut in two by normal myocardium across its middle: a donor fusion must refuse."""
    from napari_lvseg.data.fusion import donor_problems

    labels = labels.copy()
    for z in range(len(labels)):
        lesion = np.isin(labels[z], (3, 4))
        if not lesion.any():
            continue
        cy, cx = np.argwhere(labels[z] == 1).mean(0)
        ys, xs = np.nonzero(lesion)
        angle = np.arctan2(ys - cy, xs - cx)
        middle = np.angle(np.exp(1j * angle).mean())
        cut = np.abs(np.angle(np.exp(1j * (angle - middle)))) < 0.25
        labels[z][ys[cut], xs[cut]] = 2
        assert "donor's lesion is in several pieces" in donor_problems(labels[z])
    return labels


@pytest.fixture(scope="module")
def one_split_donor(tmp_path_factory):
    """Two lesioned cases, one of them unable to give its lesion, and two healthy recipients."""
    folder = PairFolder(tmp_path_factory.mktemp("split_donor"))
    for seed in range(4):
        image, labels = make_phantom(n_slices=3, seed=seed, infarct=seed < 2)
        folder.add(image, _split_lesion(labels) if seed == 0 else labels, origin="real", name=f"phantom_{seed}")
    return folder.root


def test_a_fusion_round_that_finds_no_fit_is_drawn_again(one_split_donor, labels_only, tmp_path, monkeypatch):
    import napari_lvseg.synthesis_edits as edits

    monkeypatch.setattr(edits, "_FUSION_TRIES", 1)   # a round is one draw: the split donor fails whole rounds
    folder, summary = synthesize_edited_dataset(one_split_donor, 6, tmp_path / "fused", ["fusion"],
                                                model=str(labels_only), seed=0, stacks=True)
    assert len(folder.records()) == 6
    assert {r["donor_case"] for r in folder.records()} == {"phantom_1"}
    assert any("no stack fusion passed in 1 tries" in reason for reason in summary["rejection_reasons"])


def test_fusion_that_can_never_fit_stops_with_a_clear_message(one_split_donor, labels_only, tmp_path):
    only_split = PairFolder(tmp_path / "only_split")
    for name in ("phantom_0", "phantom_2"):
        only_split.add(*PairFolder(one_split_donor).read(name), origin="real", name=name)
    with pytest.raises(LvsegError, match="fusion failed 6 times in a row .*leave out the kind fusion") as info:
        synthesize_edited_dataset(only_split.root, 20, tmp_path / "never", ["fusion", "grow"],
                                  model=str(labels_only), seed=0, stacks=True)
    assert str(only_split.root) in str(info.value)


def test_edits_that_change_nothing_anywhere_are_refused(pairs, labels_only, tmp_path):
    healthy = PairFolder(tmp_path / "healthy")
    image, labels = make_phantom(n_slices=2, seed=0, infarct=False)
    healthy.add(image, labels, origin="real", name="phantom_N0")
    with pytest.raises(LvsegError, match="no slice where grow, remove_no_reflow would change the mask"):
        synthesize_edited_dataset(healthy.root, 2, tmp_path / "none", ["grow", "remove_no_reflow"],
                                  model=str(labels_only))
    with pytest.raises(LvsegError, match="unknown mask edit wiggle"):
        synthesize_edited_dataset(pairs, 2, tmp_path / "none", ["wiggle"], model=str(labels_only))


def test_unchanged_masks_are_their_own_images_rendered_again_in_context(pairs, with_context, tmp_path):
    from napari_lvseg.data.edits import EDITS, check_edits
    from napari_lvseg.synthesis import region_slices

    assert "unchanged" not in check_edits(["all"]) == EDITS   # 'all' means the edits that change a mask
    folder, summary = synthesize_edited_dataset(pairs, 4, tmp_path / "same", ["unchanged"], model=str(with_context))
    assert summary["pairs"] == {"unchanged": 4} and summary["rendering"]["context"] is True
    for record in folder.records():
        image, mask = folder.read(record["name"])
        source_image, source_mask = _source(pairs, record)
        assert record["edit"] == "unchanged" and np.array_equal(mask, source_mask)
        region = region_slices(mask[None])[0]
        assert np.array_equal(image[~region], source_image[~region].astype(image.dtype))
        assert not np.array_equal(image[region], source_image[region].astype(image.dtype))


def test_the_renderer_falls_back_to_the_mask_alone_for_a_labels_only_generator(labels_only, with_context):
    image, labels = make_phantom(n_slices=1, seed=1)
    plain = Renderer(str(labels_only))
    assert plain.describe() == {"context": False,
                                "how": "labels-only generator: the whole image rendered from the mask"}
    assert not context_kept(plain(labels[0], image[0], 0), image[0], labels[0])
    kept = Renderer(str(with_context))
    assert context_kept(kept(labels[0], image[0], 0, labels[0]), image[0], labels[0])


def test_cli_synthesize_dataset_edits(pairs, labels_only, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "3", "--out", str(out), "--model",
                 str(labels_only), "--edits", "fusion", "shrink", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "3 edited pairs written to" in text and "labels-only generator" in text
    assert {r["edit"] for r in PairFolder(out).records()} <= {"fusion", "shrink"}
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(tmp_path / "x"),
                 "--model", str(labels_only), "--edits", "grow", "--no-simulate"]) == 2
    assert "leave out --no-simulate" in capsys.readouterr().err
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(tmp_path / "x"),
                 "--model", str(labels_only), "--edits", "wiggle"]) == 2
    err = capsys.readouterr().err
    assert "unknown mask edit wiggle" in err and len(err.strip().splitlines()) == 1


def test_edits_without_a_named_model_render_in_context_with_the_bundled_context_generator():
    renderer = Renderer(None)
    assert renderer.context and renderer.model[1].name == "lvseg-pix2pix-context"
    assert renderer.describe()["grain"] is True and Renderer(None, grain=False).describe()["grain"] is False


def test_cli_edits_say_whether_the_fill_in_has_its_grain(pairs, with_context, tmp_path, capsys):
    out = tmp_path / "smooth"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "2", "--out", str(out), "--model",
                 str(with_context), "--edits", "unchanged", "--no-grain"]) == 0
    assert "context generator" in (text := capsys.readouterr().out) and "left smooth (--no-grain)" in text
    assert [r["grain"] for r in PairFolder(out).records()] == [False, False]
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(tmp_path / "y"),
                 "--model", str(with_context), "--no-grain"]) == 2
    assert "use it with --edits" in capsys.readouterr().err


def test_cli_edits_can_redraw_only_the_edited_pixels(pairs, with_context, labels_only, tmp_path, capsys):
    from scipy import ndimage as ndi

    out = tmp_path / "changes"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "3", "--out", str(out), "--model",
                 str(with_context), "--edits", "grow", "new_infarct", "--fill", "changes"]) == 0
    assert "only the edited pixels redrawn" in capsys.readouterr().out
    for record in PairFolder(out).records():
        assert record["fill"] == "changes"
        image, mask = PairFolder(out).read(record["name"])
        source_image, source_mask = _source(pairs, record)
        changed = mask != source_mask
        near = ndi.binary_dilation(changed, structure=np.ones((3, 3)), iterations=3)
        assert changed.any() and np.array_equal(image[~near], source_image[~near])   # the rest of the heart too
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(tmp_path / "z"),
                 "--model", str(with_context), "--edits", "unchanged", "--fill", "changes"]) == 2
    assert "changes nothing for --fill changes" in capsys.readouterr().err
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(tmp_path / "z"),
                 "--model", str(labels_only), "--edits", "grow", "--fill", "changes"]) == 2
    assert "needs a context generator" in capsys.readouterr().err
