"""Segmentation inference: a slice or a stack of any size and pixel size -> uint8 labels of the same shape.

The model reads a square view of its grid around the LV. In an image larger than that, a coarse search on a few
middle slices finds the LV first (`locate_steps`). Where the model's card records the LV size of its training data,
the view is zoomed so that the LV has that size (a first pass measures it where the search did not), and the
probabilities go back onto the image's own grid (`data/resample.py`), where the labels are taken and cleaned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data.normalize import model_context, normalize_view, with_context
from .data.shading import FLATTEN_SIGMA, SHADING_TRIGGER, flatten, shading_to_correct
from .errors import LvsegError
from .labels import N_CLASSES
from .locate import (
    ZOOM_TOLERANCE,
    device_of,
    expected_lv_size,
    expected_pixel_size,
    locate_steps,
    lv_in_view,
    pixel_size_believable,
    pixel_zoom,
    search_steps,
    zoom_for,
)
from .postprocess import check_postprocess, labels_from_probabilities, postprocess, postprocessed_labels
from .steps import result_of


@dataclass
class SegmentationResult:
    labels: np.ndarray                       # uint8, same shape as the input image
    uncertainty: np.ndarray | None = None    # float32 0..1 (normalised entropy), same shape, if asked
    center: tuple | None = None              # (y, x) of the LV centre the model's view was placed on
    model: str = ""
    info: dict = field(default_factory=dict)

    def search_note(self) -> str | None:
        """What a user must hear about the LV search: that it found no LV (the image's centre was segmented);
        None where it found one or did not run."""
        if self.info.get("lv_found", True):
            return None
        return "the search found no left ventricle, so the image's centre was segmented: give the LV's centre"

    def uncertainty_in_view(self):
        """(map, offset in pixels) of the uncertainty over the part of the image the model looked at: outside its
        square view the model said nothing, and the full-size map's 0 there is no answer. A result that does not say
        where the view was (made by hand, not by `segment`) is all view."""
        offset = np.zeros(self.uncertainty.ndim)
        if "window" in self.info:
            (y0, y1), (x0, x1) = self.info["window"]
        elif "box" in self.info and "grid" in self.info:   # a view at zoom 1, as earlier results recorded it
            from .data.normalize import grid_window

            size = self.info["grid"]
            ys, xs = grid_window(self.info["box"], (size, size), self.uncertainty.shape)
            (y0, y1), (x0, x1) = (ys.start, ys.stop), (xs.start, xs.stop)
        else:
            return self.uncertainty, offset
        ys, xs = slice(y0, y1), slice(x0, x1)
        offset[-2:] = y0, x0
        return self.uncertainty[..., ys, xs], offset


# TTA: the 4 rotations of the square (training augments with them and their reflections). On the 6 validation and 12
# test cases the 4 rotations score as all 8 rotations and reflections did (pooled 0.690 / 0.737 against 0.687 /
# 0.738, per case equal on test) at half the cost (training/RESULTS.md, "Test-time augmentation: 4 views or 8").
TTA_TRANSFORMS = tuple((k, False) for k in range(4))
# Passes that divide out a coil's shading (`data.shading`): a second one, measured on the first's result, changed
# nothing on 18 unseen cases under 1.7x and 2.5x shading (training/RESULTS.md).
SHADING_ROUNDS = 1
# Where the search saw a coil's field across the field of view, the view's own shading is divided out from 1.1x
# across the heart instead of `data.shading.SHADING_TRIGGER`'s 1.25x: there a heart that fits 1.14x lost half its
# infarct Dice (Case_P059 in other cases' surroundings), while unshaded crops, which fit up to 1.14x, never search.
SHADED_FIELD_TRIGGER = 1.1
# Where the plane varies more than `data.shading.SHADING_TRIGGER` across the heart, the view is read flattened
# (`data.shading.flatten`, each slice divided by its own smoothing) instead of divided by the plane: a coil's field
# curves within the heart, and the plane leaves the curve, which reads as enhancement. On 36 unseen crops under a 2.5x
# shading 0.616 pooled divided by the plane, 0.657 flattened; unshaded crops lose to flattening (0.694 -> 0.667),
# and never reach the trigger (training/RESULTS.md, "The view under a strong coil's field").
STRONG_SHADING_FLATTENED = True


def probability_steps(n_slices: int, tta: bool = False, batch_size: int = 8) -> int:
    """How many steps `iter_probabilities` (and `segment_steps`) make for a stack of ``n_slices``."""
    return -(-n_slices // batch_size) * (len(TTA_TRANSFORMS) if tta else 1)


def segment_step_count(image, tta: bool = False, batch_size: int = 8, center=None, size: int = 128,
                       rescales: bool = False, shading: bool = True) -> int:
    """How many steps `segment_steps` makes at most for a slice (Y, X) or a stack (Z, Y, X), for a model of grid
    ``size``: finding the LV in an image larger than the grid (no ``center`` given) takes a step per slice searched
    (`locate_steps`), each pass over the stack its batches, a model that ``rescales`` (its card records the
    LV size it expects) may make a second pass at a better zoom, and a shaded heart one more (`data.shading`); where
    those passes are not needed, the count jumps to the end."""
    n_slices = 1 if np.ndim(image) == 2 else len(image)
    passes = (2 if rescales else 1) + (SHADING_ROUNDS if shading else 0)
    return search_steps(image, center, size, shading) + probability_steps(n_slices, tta, batch_size) * passes


def model_step_count(image, model=None, tta: bool = False, center=None, shading: bool = True) -> int:
    """`segment_step_count` for ``model`` (a name or path) from its card alone, no weights loaded: its grid and
    whether it rescales. A card that cannot be read is left to the run to report, counted as a 128 grid, one pass."""
    from .models.registry import model_card_only

    try:
        card = model_card_only(model, "segmentation")
    except LvsegError:
        return segment_step_count(image, tta, center=center, shading=shading)
    return segment_step_count(image, tta, center=center, size=int(card.input_size or 128),
                              rescales=expected_lv_size(card) is not None, shading=shading)


def iter_probabilities(model, slices: np.ndarray, tta: bool = False, batch_size: int = 8, device=None):
    """`predict_probabilities` as steps: yields (steps done, `probability_steps`) after each forward pass (a batch
    of slices, one TTA transform) and returns the probabilities, so that a caller can show progress and stop."""
    import torch

    from .models.heads import probabilities

    device = device or device_of(model)
    inputs = with_context(slices, model_context(model))
    transforms = TTA_TRANSFORMS if tta else ((0, False),)
    total, done = probability_steps(len(slices), tta, batch_size), 0
    out = np.empty((len(slices), N_CLASSES) + slices.shape[-2:], dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(slices), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch_size])).to(device)
            prob = 0
            for k, flip in transforms:
                with torch.inference_mode():   # not held across a yield: the caller's code runs there
                    xi = torch.rot90(torch.flip(x, (-1,)) if flip else x, k, (-2, -1))
                    p = torch.rot90(probabilities(model, model(xi)), -k, (-2, -1))   # per view: TTA averages these
                    prob = prob + (torch.flip(p, (-1,)) if flip else p)
                done += 1
                yield done, total
            out[start:start + len(x)] = (prob / len(transforms)).cpu().numpy()
    finally:   # also when the caller stops early
        model.train(was_training)
    return out


def predict_probabilities(model, slices: np.ndarray, tta: bool = False, batch_size: int = 8, device=None) -> np.ndarray:
    """Class probabilities (N, 5, S, S) for normalised slices (N, S, S), whatever the model's head
    (`models.heads.probabilities`); ``tta`` averages the 4 rotations' probabilities.

    ``slices`` are one case's stack in order: a 2.5-D network reads each slice with its neighbours.
    """
    return result_of(iter_probabilities(model, slices, tta, batch_size, device))


def predict_labels(model, slices: np.ndarray, tta: bool = False, device=None, post: dict | None = None) -> np.ndarray:
    """Labels (N, S, S) for normalised slices of one case, post-processed in 3-D."""
    return postprocessed_labels(predict_probabilities(model, slices, tta=tta, device=device), post)


def check_segmentable(image: np.ndarray, name: str) -> np.ndarray:
    """The image as `segment` takes it (a slice or stack, finite, large enough), or a one-line error naming it."""
    from .io import check_image

    image = check_image(np.asarray(image), name)
    if min(image.shape[-2:]) < 16:
        raise LvsegError(f"image too small to hold a left ventricle ({image.shape[-2:]})", name)
    if image.min() == image.max():   # normalisation would invent contrast out of nothing
        raise LvsegError(f"image is blank (every pixel is {image.flat[0]}): nothing to segment", name)
    if image.ndim == 3 and not np.ptp(image.reshape(len(image), -1), axis=1).any():
        # each slice one value: the network reads a blank view, and "finds" a heart in it
        raise LvsegError("every slice is blank (one value each): nothing to segment", name)
    return image


def check_center(center, shape, name):
    """A given crop centre (y, x) must be finite and inside the image: a point placed off the image (or NaN) would
    otherwise crop background and return empty labels without a word. Returns it as (y, x) floats."""
    if center is None:
        return None
    if len(center) != 2:
        raise LvsegError(f"a crop centre is (y, x), not {tuple(center)}", name)
    y, x = (float(v) for v in center)
    if not (np.isfinite([y, x]).all() and 0 <= y < shape[-2] and 0 <= x < shape[-1]):
        raise LvsegError(f"centre ({y:g}, {x:g}) lies outside the {shape[-2]}x{shape[-1]} image", name)
    return y, x


def _counted(steps, before: int, total: int):
    """``steps`` (a generator of (done, its total)) as steps ``before + done`` of ``total``; returns its value. A
    caller that stops early closes ``steps`` too (its ``finally`` puts the model back in training mode)."""
    try:
        while True:
            try:
                done, _ = next(steps)
            except StopIteration as stop:
                return stop.value
            yield before + done, total
    finally:
        steps.close()


def segment(image: np.ndarray, model=None, *, tta: bool = False, uncertainty: bool = False, center=None,
            batch_size: int = 8, postprocessing: bool = True, name: str = "image",
            pixel_size: float | None = None, shading_correction: bool = True) -> SegmentationResult:
    """Segment a 2-D slice (Y, X) or a stack (Z, Y, X) of any size and pixel size; ``model`` a name, path or
    (net, card); ``pixel_size`` the image's in-plane pixel size in mm where its file records one
    (`locate.pixel_size_mm`); ``shading_correction`` False reads a shaded heart as it is (`data.shading`)."""
    return result_of(segment_steps(image, model, tta=tta, uncertainty=uncertainty, center=center,
                                   batch_size=batch_size, postprocessing=postprocessing, name=name,
                                   pixel_size=pixel_size, shading_correction=shading_correction))


def segment_steps(image: np.ndarray, model=None, *, tta: bool = False, uncertainty: bool = False, center=None,
                  batch_size: int = 8, postprocessing: bool = True, name: str = "image",
                  pixel_size: float | None = None, shading_correction: bool = True):
    """`segment` as steps: yields (steps done, steps) after each forward pass (at most `segment_step_count`) and
    returns the `SegmentationResult`. Checks come first.

    1. An image larger than the model's view (and no ``center``): `locate_steps` finds the LV and its size.
    2. The model reads a view of its grid around the LV. Where the image's ``pixel_size`` and the card's
       (`expected_pixel_size`) are both known, their ratio is the zoom (`pixel_zoom`), unless the LV it shows is far
       off the size the card expects (`pixel_size_believable`: a header that lies). Otherwise the zoom brings the
       LV to the size its card expects (`expected_lv_size`, `zoom_for` in `locate.py`; at zoom 1 where the card says
       nothing or the LV size is not known yet).
    3. Where the LV the model found there is off that size by more than `ZOOM_TOLERANCE` (a first pass at zoom 1 on
       an image of another pixel size; not where the pixel sizes set the zoom) or off the view's centre, it reads a
       second view at the zoom (or centre) that LV asks for.
    4. Where the heart's blood pool and normal myocardium, as labelled, show a receive coil's shading
       (`data.shading.shading_to_correct`), the view is read once more: divided by the fitted plane where the field
       is mild (a searched image whose search saw it, `SHADED_FIELD_TRIGGER`), flattened where it is strong
       (`STRONG_SHADING_FLATTENED`).
    5. Its probabilities go back onto the image's own grid, where the labels are taken and cleaned (minimum lesion
       volumes counted in the image's pixels).
    """
    from .data.resample import View, sample_view
    from .models.registry import load_model

    image = check_segmentable(image, name)
    center = check_center(center, image.shape, name)
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise LvsegError(f"a pixel size is a positive number of mm, not {pixel_size}", name)
    net, card = model if isinstance(model, tuple) else load_model(model, task="segmentation")
    card_name = getattr(card, "name", "model card")
    post = check_postprocess(card.extra.get("postprocess") if hasattr(card, "extra") else None, card_name)
    size = int(card.input_size or 128)
    expected = expected_lv_size(card)
    trained_mm = expected_pixel_size(card)
    by_pixels = pixel_zoom(pixel_size, trained_mm) if pixel_size and trained_mm else None
    stack = np.asarray(image[None] if image.ndim == 2 else image, np.float32)
    total = segment_step_count(image, tta, batch_size, center, size, rescales=expected is not None,
                               shading=shading_correction)
    per_pass = probability_steps(len(stack), tta, batch_size)
    searched = search_steps(image, center, size, shading_correction)
    zoom, found, given = by_pixels or 1.0, None, center
    if searched:
        # a speck (a flat image's artefact) or a blob wider than any heart is no LV: said, not used
        found = yield from _counted(locate_steps(net, stack, size, card.normalization, expected,
                                                 shading=shading_correction), 0, total)
        if found is not None and by_pixels and not pixel_size_believable(found[1], by_pixels, expected):
            by_pixels, zoom = None, 1.0   # the LV says the header's pixel size is wrong: its size sets the zoom
        if found is not None:
            center = found[0]
            if expected is not None and not by_pixels:
                # read as a crop is, at zoom 1, where the search's measure (from two slices, not the whole stack)
                # puts the LV within the tolerance of the range; the first pass measures it again
                zoom = zoom_for(found[1], expected)
                zoom = 1.0 if max(zoom, 1.0 / zoom) <= ZOOM_TOLERANCE else zoom
    done, passes = searched, 0
    while True:
        view = View.around(center, zoom, size, stack.shape)
        raw, valid = sample_view(stack, view)
        grid = normalize_view(raw, valid, card.normalization)
        prob = yield from _counted(iter_probabilities(net, grid, tta=tta, batch_size=batch_size), done, total)
        done, passes = done + per_pass, passes + 1
        better = None if expected is None or passes == 2 else _better_view(prob, view, expected, given, by_pixels)
        if better is None:
            break
        center, zoom = better
        if by_pixels and zoom != by_pixels:
            by_pixels = None   # the LV read at the pixel size's zoom says the header is wrong
    trigger = SHADED_FIELD_TRIGGER if found is not None and found.shaded else SHADING_TRIGGER
    field, shading = shading_to_correct(raw, prob.argmax(1), trigger) if shading_correction else (None, None)
    corrected = field is not None
    for _ in range(SHADING_ROUNDS):   # the view without the coil's shading, read once more
        if field is None:
            break
        strong = STRONG_SHADING_FLATTENED and shading > SHADING_TRIGGER
        raw = flatten(raw, valid, FLATTEN_SIGMA * size) if strong else raw / field
        grid = normalize_view(raw, valid, card.normalization)
        prob = yield from _counted(iter_probabilities(net, grid, tta=tta, batch_size=batch_size), done, total)
        done, passes = done + per_pass, passes + 1
        field, _ = shading_to_correct(raw, prob.argmax(1), trigger)
    if done < total:   # no second pass was needed
        yield total, total
    labels, unc, info = _labels_on_image(prob, valid, view, stack.shape, post if postprocessing else None,
                                         uncertainty, card_name)
    info.update({"tta": tta, "zoom": view.zoom, "lv_found": not searched or found is not None, "passes": passes,
                 "scale_from": "pixel size" if by_pixels else "LV size" if expected is not None else "none",
                 "shading": None if shading is None else round(shading, 3), "shading_corrected": corrected})
    if image.ndim == 2:
        labels = labels[0]
        unc = None if unc is None else unc[0]
    centre = center if center is not None else view.center
    return SegmentationResult(labels, unc, (float(centre[0]), float(centre[1])), getattr(card, "name", ""), info)


def _better_view(prob: np.ndarray, view, expected: tuple, given_centre=None, by_pixels: float | None = None):
    """(centre, zoom) of a view that holds the LV found in ``prob`` (a pass through ``view``; `lv_in_view`) at the
    zoom its size asks for (`zoom_for`; ``by_pixels``, the pixel sizes' zoom, where the LV's size believes it) and in
    its middle (a user's ``given_centre`` stays as it is); None where ``view`` already does (within
    `ZOOM_TOLERANCE`, and the LV's centre within an eighth of the view from its centre) or no plausible LV was
    found."""
    found = lv_in_view(prob.argmax(1).astype(np.uint8), view, expected)
    if found is None:
        return None
    center, diameter = found
    believed = by_pixels and pixel_size_believable(diameter, by_pixels, expected)
    zoom = by_pixels if believed else zoom_for(diameter, expected)
    off_by = max(zoom / view.zoom, view.zoom / zoom)
    away = max(abs(a - b) for a, b in zip(center, view.center)) * view.zoom   # in model pixels
    off_centre = given_centre is None and away > view.size / 8.0
    if off_by <= ZOOM_TOLERANCE and not off_centre:
        return None
    return (center if given_centre is None else given_centre), zoom


def _labels_on_image(prob, valid, view, shape, post, uncertainty, card_name):
    """(labels, uncertainty or None, info) on the image's grid from a view's probabilities (N, 5, S, S), post-processed
    with ``post`` (None: not at all; its minimum volumes, in model pixels, counted in the image's pixels)."""
    from .data.resample import paste_view, view_on_image

    if view.zoom == 1.0:   # a crop: labels on the grid, pasted back
        labels = paste_view(labels_from_probabilities(prob, post, card_name), view, shape)
    else:   # the labels of the view's window, from the probabilities there
        values, inside, window = view_on_image(prob, view, shape)
        values[:, 0][:, ~inside], values[:, 1:][..., ~inside] = 1.0, 0.0   # outside the grid: background
        labels = np.zeros((len(prob),) + tuple(shape[-2:]), np.uint8)
        labels[(slice(None),) + window] = labels_from_probabilities(values, post, card_name)
    if post is not None:
        per_pixel = view.zoom ** 2    # model pixels per image pixel
        labels = postprocess(labels, {**post, **{k: post[k] / per_pixel
                                                 for k in ("min_infarct_voxels", "min_no_reflow_voxels")}})
    ys, xs = view.window(shape)
    unc, info = None, {"grid": view.size, "box": view.box, "window": ((ys.start, ys.stop), (xs.start, xs.stop))}
    if uncertainty:
        entropy = (-(prob * np.log(np.clip(prob, 1e-8, 1.0))).sum(1) / np.log(N_CLASSES)).astype(np.float32)
        unc = paste_view(entropy, view, shape)
        # over the model's view inside the image only: outside it the map says 0, and a larger image must not look
        # surer
        info["mean_uncertainty"] = float(entropy[:, valid].mean())
    return labels, unc, info


def uncertainty_scores(images, model=None):
    """Segment each ``(key, image)`` with uncertainty; yields ``(key, result, mean uncertainty)`` one image at a
    time, so that a caller can report progress and stop between images. The mean is taken over the model's
    square view, the same size for every image.

    Ranked by score, least certain first, they say what to correct first: the cases the model is least sure
    about teach it the most.
    """
    from .models.registry import load_model

    loaded = model if isinstance(model, tuple) else load_model(model, task="segmentation")
    for key, image in images:
        result = segment(image, loaded, uncertainty=True, name=str(key))
        yield key, result, result.info["mean_uncertainty"]
