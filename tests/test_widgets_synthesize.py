"""Synthesize dock widget: new LV masks, simulator edits, synthesis into image layers, synthetic pairs on disk."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_lvseg import labels as lb
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.errors import LvsegError
from napari_lvseg.io.pairs import PairFolder

pytest.importorskip("napari")

from napari_lvseg.widgets._testing import StepGate  # noqa: E402
from napari_lvseg.widgets.synthesize import SynthesizeLogic, SynthesizeWidget  # noqa: E402


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch, models_dir):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    widget = SynthesizeWidget(viewer, folder=tmp_path / "synthetic")
    viewer.window.add_dock_widget(widget)
    return viewer, widget, tmp_path


def test_new_mask_draws_ring_at_given_centre(setup, errors):
    viewer, widget, _ = setup
    widget.size.setValue(96)
    widget.center_y.setText("40")
    widget.center_x.setText("50")
    widget.radius.setValue(10)
    widget.thickness.setValue(5)
    layer = widget.new_mask()
    assert errors == [] and layer.data.shape == (96, 96)
    assert layer.data[40, 50] == lb.CAVITY and layer.data[40, 50 + 13] == lb.MYOCARDIUM
    assert layer.data[40, 50 + 17] == lb.BACKGROUND
    assert np.allclose(layer.colormap.color_dict[lb.MYOCARDIUM], lb.COLORS[lb.MYOCARDIUM])
    assert widget.mask_picker.current_layer() is layer
    # a fresh ring has no infarct: an infarct edit says why it changed nothing
    widget.action.setCurrentText("grow infarct")
    widget.apply_edit()
    assert widget.status.text() == ("grow infarct: 0 pixels changed: the mask has no infarct to edit "
                                    "(paint some with label 3 first)") and errors == []


def test_images_lie_over_their_mask_even_when_it_was_renamed_during_the_run(setup, errors):
    viewer, widget, _ = setup
    _, labels = make_phantom(n_slices=2, size=64, seed=0)
    layer = viewer.add_labels(labels, name="mask", scale=(8.0, 1.5, 1.5))
    layer.name = "renamed while synthesizing"
    (image,) = widget.show_results([(0, np.zeros(labels.shape, np.float32))], labels, "mask", None, layer)
    assert np.allclose(image.scale, (8.0, 1.5, 1.5)) and errors == []


def test_edits_apply_to_current_slice_or_whole_stack(setup, qtbot, errors):
    viewer, widget, _ = setup
    _, labels = make_phantom(n_slices=3, size=128, seed=0, infarct=True)
    layer = viewer.add_labels(labels.copy(), name="mask")
    widget.mask_picker.select(layer)
    viewer.dims.set_current_step(0, 1)
    widget.action.setCurrentText("grow infarct")
    widget.scope.setCurrentText("current slice")
    widget.pixels.setValue(2)
    widget.apply_edit()
    # the edit went to a copy, never to the layer it started from (Correct and save may be autosaving that one)
    original, layer = layer, viewer.layers["mask what-if"]
    assert np.array_equal(original.data, labels) and widget.mask_picker.current_layer() is layer
    changed = [not np.array_equal(layer.data[z], labels[z]) for z in range(3)]
    grew = np.isin(layer.data[1], (3, 4)).sum() > np.isin(labels[1], (3, 4)).sum()
    assert changed == [False, True, False] and grew

    grown = layer.data.copy()
    widget.action.setCurrentText("remove no-reflow")
    widget.scope.setCurrentText("whole stack")
    assert widget.apply_edit() is not None and not widget.apply_button.isEnabled()   # a stack: in a worker
    qtbot.waitUntil(lambda: widget.apply_button.isEnabled(), timeout=30_000)
    assert not (layer.data == lb.NO_REFLOW).any() and errors == []
    layer.undo()   # each edit is one undo step, as the button's tooltip says
    assert np.array_equal(layer.data, grown)
    layer.undo()
    assert np.array_equal(layer.data, labels)

    worker = widget.apply_edit()   # the mask is edited by hand while the stack edit runs: nothing is applied
    layer.data = np.zeros_like(labels)
    qtbot.waitUntil(lambda: widget.apply_button.isEnabled(), timeout=30_000)
    assert worker is not None and not layer.data.any() and "changed while 'remove no-reflow' ran" in errors[-1]
    assert np.array_equal(original.data, labels)


def test_synthesize_adds_image_layers_and_writes_synthetic_pairs(setup, qtbot, monkeypatch, errors):
    from napari_lvseg import synthesis

    calls = []

    def fake_variants(mask, n, model=None, seed=0):
        calls.append((mask.shape, n, model, seed))
        yield from (np.full(mask.shape, 100.0 + seed + i, np.float32) for i in range(n))

    monkeypatch.setattr(synthesis, "iter_variants", fake_variants)
    viewer, widget, tmp = setup
    layer = widget.new_mask()
    layer.scale = (1.4, 1.5)   # a mask in mm: the images must lie over it
    widget.n_variants.setValue(2)
    widget.seed.setValue(5)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)
    # the picker's current model (the bundled default where one ships) is what the worker gets
    assert errors == [] and calls == [((128, 128), 2, widget.model_picker.current_model(), 5)]
    images = [viewer.layers[f"{layer.name} synthetic s{s}"] for s in (5, 6)]
    assert [float(im.data.mean()) for im in images] == [105.0, 106.0]
    assert all(tuple(im.scale) == pytest.approx((1.4, 1.5)) for im in images)

    names = widget.add_to_dataset()
    records = PairFolder(tmp / "synthetic").records()
    assert [r["name"] for r in records] == names and len(names) == 2
    assert {r["origin"] for r in records} == {"synthetic"} and [r["seed"] for r in records] == [5, 6]
    image, mask = PairFolder(tmp / "synthetic").read(names[1])
    assert np.array_equal(mask, layer.data) and float(image.mean()) == 106.0


@pytest.mark.parametrize("stop", ["second press", "closing the panel"])
def test_synthesis_stops_between_images(setup, qtbot, monkeypatch, errors, stop):
    from napari_lvseg import synthesis

    gate = StepGate(lambda mask, n, model=None, seed=0: (np.zeros(mask.shape, np.float32) for _ in range(n)))

    monkeypatch.setattr(synthesis, "iter_variants", gate)
    viewer, widget, _ = setup
    widget.new_mask()
    widget.n_variants.setValue(50)
    n_layers = len(viewer.layers)
    worker = widget.run()
    assert widget.run_button.text() == "Stop"
    worker.yielded.connect(lambda _: gate.stop(stop, widget, viewer))
    gate.connected.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)
    assert errors == [] and gate.steps in (1, 2) and len(viewer.layers) == n_layers and widget.results == []
    assert widget.status.text() == "synthesis stopped; no image added"
    assert widget.run_button.text() == "Synthesize" and widget.run_button.isEnabled()


def test_a_runtime_error_in_the_worker_is_notified_and_frees_the_button(setup, qtbot, monkeypatch, errors):
    from napari_lvseg import synthesis

    def out_of_memory(mask, n, model=None, seed=0):
        raise RuntimeError("CUDA out of memory")   # what torch raises; superqt would drop it from a generator

    monkeypatch.setattr(synthesis, "iter_variants", out_of_memory)
    viewer, widget, _ = setup
    widget.new_mask()
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert errors == ["RuntimeError: CUDA out of memory"]
    assert widget.run_button.text() == "Synthesize" and widget.run_button.isEnabled()


def test_the_model_picker_starts_on_the_default_generator_and_keeps_a_choice(setup, models_dir):
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.pix2pix import Pix2PixGenerator
    from napari_lvseg.models.weights import save_model

    _, widget, _ = setup
    # the bundled default, not the first name in the list (lvseg-pix2pix, the earlier generator)
    assert widget.model_picker.names()[0] == "lvseg-pix2pix"
    assert widget.model_picker.current_model() == "lvseg-pix2pix-resize"
    save_model(models_dir / "tiny-p2p", Pix2PixGenerator(base_width=4),
               ModelCard(name="tiny-p2p", task="synthesis", architecture="Pix2PixGenerator", input_size=128))
    widget.model_picker.select("lvseg-pix2pix")
    widget.refresh_models()
    assert widget.model_picker.current_model() == "lvseg-pix2pix" and "tiny-p2p" in widget.model_picker.names()


def test_synthesis_with_a_tiny_real_model(setup, qtbot, models_dir, errors):
    import torch

    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.pix2pix import Pix2PixGenerator
    from napari_lvseg.models.weights import save_model

    torch.manual_seed(0)
    save_model(models_dir / "tiny-p2p", Pix2PixGenerator(base_width=4),
               ModelCard(name="tiny-p2p", task="synthesis", architecture="Pix2PixGenerator", input_size=128))
    viewer, widget, _ = setup
    widget.refresh_models()
    assert widget.model_picker.names()[-1] == "tiny-p2p"  # after any bundled model
    assert widget.model_picker.select("tiny-p2p")
    layer = widget.new_mask()
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert errors == []
    image = viewer.layers[f"{layer.name} synthetic s0"].data
    assert image.shape == (128, 128) and image.dtype == np.float32 and np.isfinite(image).all()


def test_bad_input_notifies(setup, errors):
    viewer, widget, tmp = setup
    assert widget.run() is None and "no labels layer" in errors[-1]
    assert widget.apply_edit() is None and "no labels layer" in errors[-1]
    assert widget.add_to_dataset() is None and "run the synthesis first" in errors[-1]
    widget.center_y.setText("abc")
    assert widget.new_mask() is None and "must be numbers" in errors[-1]
    widget.center_y.setText("2")
    assert widget.new_mask() is None and "does not fit" in errors[-1]
    viewer.add_labels(np.full((32, 32), 7, np.uint8), name="bad")
    widget.mask_picker.select(viewer.layers["bad"])
    assert widget.run() is None and "not classes" in errors[-1]
    assert widget.status.text() == f"failed: {errors[-1]}"   # the panel says it, not only a fading toast
    assert SynthesizeLogic.new_ring((64, 64)).shape == (64, 64)
    (tmp / "a-file").write_text("not a folder")
    with pytest.raises(LvsegError, match="a-file: is a file: a pair folder cannot be made there"):
        SynthesizeLogic.add_to_dataset(tmp / "a-file" / "pairs", SynthesizeLogic.new_ring((64, 64)),
                                       [(0, np.ones((64, 64)))])


def test_masks_that_cannot_train_are_refused_before_synthesis_and_before_adding(setup, tmp_path, errors):
    viewer, widget, _ = setup
    viewer.add_labels(np.zeros((2, 32, 32), np.uint8), name="empty")
    widget.mask_picker.select(viewer.layers["empty"])
    assert widget.run() is None and "'empty' holds no LV" in errors[-1]
    broken = SynthesizeLogic.new_ring((64, 64))
    broken[:, :34] = 0   # half a ring: the cavity touches the background
    viewer.add_labels(np.stack([SynthesizeLogic.new_ring((64, 64)), broken]), name="half ring")
    widget.mask_picker.select(viewer.layers["half ring"])
    assert widget.run() is None
    assert ("'half ring' is not a training mask (labels fail the anatomy check: slice 1: cavity touches"
            in errors[-1])
    with pytest.raises(Exception, match="no LV"):
        SynthesizeLogic.add_to_dataset(tmp_path / "syn", np.zeros((32, 32), np.uint8), [(0, np.zeros((32, 32)))], "x")
    assert not (tmp_path / "syn").exists()



def test_a_random_variant_of_a_whole_stack_keeps_its_slices_aligned():
    from napari_lvseg.data.simulator import draw_lv_ring

    ring = draw_lv_ring((96, 96), (48, 48), 14, 7)
    stack = np.stack([ring, ring, ring])
    whole = SynthesizeLogic.apply_action(stack, "random variant", seed=3)
    outlines = [s != lb.BACKGROUND for s in whole]
    assert all(np.array_equal(outlines[0], o) for o in outlines[1:]) and not np.array_equal(outlines[0], ring > 0)
    one = SynthesizeLogic.apply_action(stack, "random variant", z=1, seed=3)
    assert np.array_equal(one[0], ring) and np.array_equal(one[2], ring) and not np.array_equal(one[1], ring)


def test_a_folder_another_writer_holds_is_refused_and_left_as_it_was(tmp_path):
    """The GUI's writes take the folder's lock as `lvseg synthesize-dataset` and training do: while another writer
    holds the synthetic or annotation folder, adding to it is refused in one line and nothing is written."""
    from napari_lvseg.io.lock import FolderLock
    from napari_lvseg.widgets.correct import CorrectLogic

    mask = SynthesizeLogic.new_ring((64, 64))
    synthetic = tmp_path / "synthetic"
    SynthesizeLogic.add_to_dataset(synthetic, mask, [(0, np.ones((64, 64)))])
    before = sorted(p.name for p in synthetic.rglob("*"))
    with FolderLock(synthetic, "synthetic pair folder"):   # the other writer (flock: per open file)
        with pytest.raises(LvsegError, match=r"synthetic: in use: another lvseg process .* synthetic pair folder"):
            SynthesizeLogic.add_to_dataset(synthetic, mask, [(1, np.ones((64, 64)))])
    assert sorted(p.name for p in synthetic.rglob("*")) == before
    assert len(SynthesizeLogic.add_to_dataset(synthetic, mask, [(1, np.ones((64, 64)))])) == 1   # free again

    logic = CorrectLogic(tmp_path / "annotations")
    image = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    labels = np.stack([mask, mask])
    logic.save(image, labels, "case.tif")
    with FolderLock(tmp_path / "annotations", "annotation folder"):
        with pytest.raises(LvsegError, match=r"annotations: in use: .* annotation folder"):
            logic.save(image, labels, "other.tif")
    assert [r["name"] for r in PairFolder.open(tmp_path / "annotations").records()] == [logic.pair_name("case.tif")]


# -- islands, what-if copies, layer placement, context images (issue 32 item 5) ---------------------------
def _islands(labels):
    """A prediction's specks: a 1-pixel cavity island outside the LV and a 1-pixel wall island in the cavity."""
    spotted = labels.copy()
    spotted[1, 3, 3] = lb.CAVITY
    cavity = np.argwhere(labels[1] == lb.CAVITY)[len(np.argwhere(labels[1] == lb.CAVITY)) // 2]
    spotted[1, cavity[0], cavity[1]] = lb.MYOCARDIUM
    return spotted, tuple(int(v) for v in cavity)


def _open_case(viewer, name="case1", seed=1, source=None):
    from napari_lvseg.inference import SegmentationResult
    from napari_lvseg.widgets.segment import SegmentLogic

    image, labels = make_phantom(n_slices=2, size=96, seed=seed, infarct=True)
    image_layer = viewer.add_image(image, name=name, metadata={"lvseg_source_path": str(source or name)})
    result = SegmentationResult(labels=labels, model="tiny-seg")
    labels_layer = viewer.add_labels(labels.copy(), **SegmentLogic.labels_layer_kwargs(result, name,
                                                                                       str(source or name)))
    return image_layer, labels_layer


def test_islands_are_named_and_cleaned_in_a_what_if_copy(setup, errors):
    viewer, widget, _ = setup
    _, labels_layer = _open_case(viewer)
    spotted, speck = _islands(labels_layer.data)
    labels_layer.data = spotted
    widget.mask_picker.select(labels_layer)
    assert widget.run() is None
    assert "slice 1: cavity 1 px at (3, 3)" in errors[-1] and f"slice 1: wall 1 px at {speck}" in errors[-1]
    assert "press 'Clean islands'" in errors[-1]
    islands = widget.clean_islands()
    assert sorted((i["slice"], i["label"], i["pixels"]) for i in islands) == [(1, "cavity", 1), (1, "wall", 1)]
    copy = viewer.layers["case1 labels what-if"]
    assert widget.mask_picker.current_layer() is copy and np.array_equal(labels_layer.data, spotted)   # original kept
    assert copy.data[1, 3, 3] == lb.BACKGROUND and copy.data[1][speck] == lb.CAVITY
    assert "2 island(s) removed in 'case1 labels what-if': slice 1:" in widget.status.text()
    SynthesizeLogic.check_trainable(copy.data, copy.name)   # now it can be synthesized
    assert "lvseg_source_path" not in copy.metadata and "lvseg_prediction" not in copy.metadata


def test_a_what_if_edit_never_reaches_the_correction_being_autosaved(make_napari_viewer, tmp_path, monkeypatch, qtbot,
                                                                      models_dir, errors):
    from napari_lvseg.widgets.correct import CorrectWidget

    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    correct = CorrectWidget(viewer, folder=tmp_path / "annotations")
    synth = SynthesizeWidget(viewer, folder=tmp_path / "synthetic")
    correct.autosave_timer.setInterval(50)
    image_layer, labels_layer = _open_case(viewer, source=tmp_path / "case1.nii.gz")
    correct.image_picker.select(image_layer)
    correct.labels_picker.select(labels_layer)
    before = labels_layer.data.copy()
    synth.mask_picker.select(labels_layer)
    viewer.dims.set_current_step(0, 1)   # the slice with an infarct
    for action in ("grow infarct", "add no-reflow"):
        synth.action.setCurrentText(action)
        synth.scope.setCurrentText("current slice")
        synth.apply_edit()
    qtbot.wait(300)   # several autosave intervals
    copy = viewer.layers["case1 labels what-if"]
    assert not np.array_equal(copy.data, before) and np.array_equal(labels_layer.data, before)
    assert correct.watched is labels_layer and correct.labels_picker.current_layer() is labels_layer
    assert not (tmp_path / "annotations" / "manifest.jsonl").exists() and errors == []


def _tiny_context_model(models_dir, name="tiny-ctx"):
    import torch

    from napari_lvseg.engine.synthesis import synthesis_normalization
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.pix2pix import Pix2PixGenerator
    from napari_lvseg.models.weights import save_model

    torch.manual_seed(0)
    net = Pix2PixGenerator(in_channels=7, base_width=4, depth=5, conditioning="context", upsample="resize")
    save_model(models_dir / name, net, ModelCard(name=name, task="synthesis", architecture="Pix2PixGenerator",
                                                 params=net.architecture_params(), input_size=64,
                                                 normalization=synthesis_normalization([0.0, 1.0])))
    return name


def test_an_edited_case_is_rendered_into_its_own_image_below_the_labels(setup, qtbot, models_dir, errors):
    from napari.layers import Image, Labels

    from napari_lvseg.synthesis import region_slices

    viewer, widget, _ = setup
    image_layer, labels_layer = _open_case(viewer)
    _open_case(viewer, "case2", seed=4)
    _tiny_context_model(models_dir)
    widget.refresh_models()
    assert widget.model_picker.select("tiny-ctx")
    widget.mask_picker.select(labels_layer)
    assert widget.context_picker.current_layer() is image_layer   # default: the image the mask belongs to
    viewer.dims.set_current_step(0, 1)   # the slice with an infarct
    widget.action.setCurrentText("grow infarct")
    widget.apply_edit()
    copy = viewer.layers["case1 labels what-if"]
    assert widget.context_picker.current_layer() is image_layer   # the copy belongs to the same image
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert errors == [] and widget.status.text() == "1 synthetic image(s) from case1 labels what-if"
    out = viewer.layers["case1 labels what-if synthetic s0"]
    # by default only what the edit changed is redrawn (3 px around it to blend): the rest of that heart is real
    changed = copy.data != labels_layer.data
    near = ndi.binary_dilation(changed, structure=np.ones((1, 3, 3)), iterations=3)
    assert changed.any() and np.array_equal(out.data[~near], image_layer.data[~near].astype(out.data.dtype))
    assert (out.data[changed] != image_layer.data[changed]).all()
    kwargs, where = widget.context_arguments(copy, copy.data, "tiny-ctx")
    assert kwargs["fill"] == "changes" and "only what changed" in where
    assert kwargs["grain"] is True   # the image's grain by default; unticked, synthesize is told so
    widget.grain.setChecked(False)
    assert widget.context_arguments(copy, copy.data, "tiny-ctx")[0]["grain"] is False
    # its own image layer, above the images and below the labels over them: the labels stay visible over it
    order = list(viewer.layers)
    assert isinstance(out, Image) and order[order.index(out) - 1] is viewer.layers["case2"]
    assert all(isinstance(layer, Labels) for layer in order[order.index(out) + 1:])
    # an unedited mask has nothing changed to redraw: its whole LV region is
    assert widget.context_arguments(labels_layer, labels_layer.data, "tiny-ctx")[0]["fill"] == "lv"
    widget.fill.setCurrentText("the whole LV")
    widget.grain.setChecked(True)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    whole = viewer.layers["case1 labels what-if synthetic s0"]   # the same seed's image, replaced
    region = region_slices(copy.data, labels_layer.data)
    assert np.array_equal(whole.data[~region], image_layer.data[~region].astype(whole.data.dtype))
    assert not np.array_equal(whole.data[region & ~near], image_layer.data[region & ~near])


def test_a_drawn_mask_takes_a_donor_from_the_open_cases(setup, qtbot, models_dir, errors):
    from napari_lvseg.synthesis import donor_contexts

    viewer, widget, _ = setup
    image_layer, labels_layer = _open_case(viewer)
    _tiny_context_model(models_dir)
    widget.refresh_models()
    assert widget.model_picker.select("tiny-ctx")
    widget.size.setValue(96)
    mask = widget.new_mask()
    assert widget.context_picker.current_layer() is None   # a drawn mask belongs to no image: a donor
    widget.donor_rank.setValue(1)                            # the user chose the second-nearest
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    donors = SynthesizeLogic.donors(viewer)
    assert sorted(d.name for d in donors) == ["case1 slice 0", "case1 slice 1"]
    context, _, names = donor_contexts(mask.data, donors, 1)
    out = viewer.layers["LV mask synthetic s0"].data
    assert errors == [] and out.shape == mask.data.shape and np.mean(out == context) > 0.5
    widget.context_picker.select(image_layer)   # a context of another shape is refused by name
    widget.run()
    assert "context image 'case1' has shape" in errors[-1]


def test_the_context_generator_is_the_default_where_a_context_is_available(setup, models_dir):
    from napari_lvseg.synthesis import default_generator

    viewer, widget, _ = setup
    _tiny_context_model(models_dir)
    widget.refresh_models()
    labels_default = default_generator(False)
    assert widget.model_picker.current_model() == labels_default   # nothing open: no context, no donor
    _, labels_layer = _open_case(viewer)
    widget.mask_picker.select(labels_layer)
    assert widget.model_picker.current_model() == default_generator(True) != labels_default
    widget.context_picker.setCurrentIndex(0)
    viewer.layers.remove("case1 labels")
    viewer.layers.remove("case1")
    widget.new_mask()
    assert widget.model_picker.current_model() == labels_default


def test_a_case_opened_after_the_panel_makes_the_context_generator_the_default(setup, models_dir):
    from napari_lvseg.synthesis import default_generator

    viewer, widget, _ = setup
    _tiny_context_model(models_dir)
    widget.refresh_models()
    assert widget.model_picker.current_model() == default_generator(False)
    _open_case(viewer)   # an image and its labels: a context, or a donor, is now at hand
    assert widget.model_picker.current_model() == default_generator(True) != default_generator(False)
    viewer.layers.remove("case1 labels")   # with no case left, the labels-only default again
    viewer.layers.remove("case1")
    assert widget.model_picker.current_model() == default_generator(False)
