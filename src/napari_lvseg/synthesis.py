"""Mask -> LGE image synthesis with a trained Pix2Pix generator: single images, variants, synthetic
pair folders, and how close synthetic images come to real ones (PSNR, SSIM, class contrasts, FID, KID).

Masks of any size: the generator runs on its grid (the card's ``input_size``) centred on the LV,
and the image is pasted back at the mask's size; outside the grid it is the slice's background level.
Intensities come back on the raw scale of the training images (the card's ``intensity_range``).

Context-preserving synthesis (a generator whose card params say ``conditioning: "context"``): the mask is rendered
into a real image, the *context*: the generator fills in the LV region only (the target mask's cavity + myocardium,
united with the context's own LV where its labels are known, dilated a few pixels) and every pixel outside that
region is the context's, unchanged. The generated region takes the context slice's own intensity scale (its
percentiles over the generator's grid). A mask without a context takes a *donor*: a real slice whose LV size
(area in pixels) is nearest the mask's, moved so that its LV centre lies on the mask's (`read_donors`,
`rank_donors`, `donor_context`). With ``fill="changes"`` and the context's own labels, only the pixels whose label
the mask changes (and a 3-pixel margin where the fill-in blends into the real pixels) are redrawn, keeping their own
fine texture (`data.grain.own_detail`): the rest of that heart stays the real one. Cards without ``conditioning``
are labels-only generators, as before.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from .data.normalize import from_grid, labels_center, to_grid
from .engine.synthesis import compare_slices, from_tanh, generate_slices, synthesis_normalization, to_tanh
from .errors import LvsegError
from .labels import BACKGROUND, INFARCT, MYOCARDIUM, NO_REFLOW, SHORT_NAMES, invalid_values

NO_MODEL = "no bundled synthesis model; train one with lvseg train --task synthesis"
# What a context generator fills in: the LV region (the mask's and the context's LV, dilated), or only the pixels
# whose label the mask changes against the context's own labels (with a margin to blend in).
FILLS = ("lv", "changes")


# -- models ---------------------------------------------------------------------------------------
def conditioning(card) -> str:
    """What a generator reads: "context" (a real image with the LV region blanked, the region and the labels) or
    "labels" (the label map alone; every card without the ``conditioning`` param)."""
    return str((card.params or {}).get("conditioning", "labels"))


def default_generator(context: bool = False) -> str | None:
    """The default synthesis model's name: where a context image is available, a context generator (a bundled one
    whose card says ``"default_context": true``, else the first context generator, bundled before user models);
    otherwise (or where none is installed) the default labels-only generator. None where there is no generator."""
    from .models.registry import default_model_name, list_models

    entries = list_models("synthesis")
    with_context = [e for e in entries if conditioning(e.card) == "context"]
    if context and with_context:
        marked = [e for e in with_context if e.source == "bundled" and e.card.extra.get("default_context")]
        return (marked or with_context)[0].name
    labels_only = [e for e in entries if conditioning(e.card) != "context"]
    return default_model_name("synthesis", labels_only) if labels_only else None


def load_synthesis_model(model=None, context: bool = False) -> tuple:
    """``(generator, card)`` from a name, path, ``(net, card)`` tuple or None (the default model: a context
    generator where ``context`` says a context image is available, `default_generator`)."""
    if isinstance(model, tuple):
        return model
    from .models.registry import load_model

    if model in (None, ""):
        model = default_generator(context)
        if model is None:
            raise LvsegError(NO_MODEL)
    return load_model(model, task="synthesis")


def _model_path(model) -> str | None:
    if isinstance(model, tuple):
        return None
    from .models.registry import resolve

    return str(resolve(model, "synthesis"))


def _check_mask(mask, name) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise LvsegError(f"expected a 2-D mask or a (Z, Y, X) stack, got shape {mask.shape}", name)
    if mask.dtype.kind not in "biuf":
        raise LvsegError(f"mask has non-numeric type {mask.dtype}", name)
    bad = invalid_values(mask)
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise LvsegError(f"mask values must be integers 0..4; found {shown}", name)
    return mask.astype(np.uint8)


# -- synthesis ------------------------------------------------------------------------------------
def fill_for(wanted: str, mask, context_labels) -> str:
    """The fill an interactive user gets: ``wanted``, except that "changes" falls back to "lv" where the context's
    own labels are unknown or the mask equals them (nothing changed to redraw)."""
    if wanted == "changes" and (context_labels is None or np.array_equal(np.asarray(mask), context_labels)):
        return "lv"
    return wanted


def synthesize(mask, model=None, seed: int = 0, name: str = "mask", context=None, context_labels=None,
               context_name: str = "context", donors=None, donor=0, grain: bool = True,
               fill: str = "lv") -> np.ndarray:
    """A synthetic LGE image (same shape as ``mask``) for a 2-D mask or (Z, Y, X) stack.

    Same seed, same image; each slice is rendered with ``seed``. ``model`` as in `load_synthesis_model` (None: the
    context generator where a context or donors are given, else the labels-only default).

    ``context``: a real image of the mask's shape that the mask is rendered into (a context generator fills in the
    LV region only; every pixel outside it is the context's); ``context_labels``: the context's own labels, where
    known (its LV is blanked out too). ``grain``: give the fill-in the context's own noise texture, measured over
    the pixels it replaces (`data.grain`; with ``fill="changes"``, the replaced pixels' own fine texture itself;
    False: the generator's smooth output as it is). Without a context,
    ``donors`` (a folder of EMIDEC cases or pairs, or a list of `Donor`) give one: per slice, the donor of rank
    ``donor`` by LV size (0: the nearest; or a donor's name). ``fill``: "lv" (the LV region) or "changes" (only the
    pixels whose label differs from ``context_labels``, which it needs, plus the blend margin; see `FILLS`).
    A labels-only generator renders the whole image from the mask (float32) and takes no context.
    """
    labels = _check_mask(mask, name)
    if fill not in FILLS:
        raise LvsegError(f"unknown fill '{fill}': choose {' or '.join(FILLS)}", name)
    if fill == "changes" and (context is None or context_labels is None):
        raise LvsegError("filling in only what changed needs a context image and its own labels to compare the "
                         "mask with (--context IMAGE --context-labels LABELS)", name)
    if fill == "changes" and np.array_equal(labels, np.asarray(context_labels)):
        raise LvsegError("the mask is the context's own labels: nothing changed to fill in (edit it first, or fill in "
                         "the whole LV to re-render the heart)", name)
    if context is None and donors is not None:
        context, context_labels, _ = donor_contexts(labels, donors, donor, name)
        context_name = "donor"
    net, card = load_synthesis_model(model, context=context is not None)
    if conditioning(card) == "context":
        if context is None:
            raise LvsegError(f"{card.name} fills in the LV region of a real image: give a context image "
                             "(--context IMAGE) or donors to take one from (--donors FOLDER)", name)
        return _synthesize_in_context(labels, context, context_labels, net, card, seed, context_name, grain, fill)
    if context is not None:
        raise LvsegError(f"{card.name} renders whole images from the mask alone and takes no context image: "
                         "choose a context generator (e.g. lvseg-pix2pix-context), or leave the context out", name)
    norm = card.normalization or synthesis_normalization()
    size = int(card.input_size or 128)
    stack = labels[None] if labels.ndim == 2 else labels
    center = labels_center(stack) if stack.shape[-2:] != (size, size) else None
    grid, box = to_grid(stack, size, center)
    low, high = norm.get("intensity_range", (0.0, 1.0))
    image = low + from_tanh(generate_slices(net, grid, seed), norm) * (high - low)
    out = from_grid(image.astype(np.float32), box, stack.shape, fill=np.nan)
    for z in range(len(out)):  # outside the grid: the slice's synthetic background level
        outside = np.isnan(out[z])
        if outside.any():
            background = image[z][grid[z] == BACKGROUND]
            out[z][outside] = np.median(background) if background.size else low
    return out[0] if labels.ndim == 2 else out


def _check_context(context, labels: np.ndarray, context_labels, name) -> tuple:
    """The context image (as given, float) and its labels (uint8 or None), each of the mask's shape, or LvsegError."""
    context = np.asarray(context)
    if context.dtype.kind not in "biuf":
        raise LvsegError(f"context image has non-numeric type {context.dtype}", name)
    if context.shape != labels.shape:
        raise LvsegError(f"context image has shape {context.shape}; the mask has {labels.shape}: they must match",
                         name)
    if not np.isfinite(context).all():
        raise LvsegError("context image contains NaN or Inf", name)
    if context_labels is not None:
        context_labels = _check_mask(context_labels, f"{name} labels")
        if context_labels.shape != labels.shape:
            raise LvsegError(f"context labels have shape {context_labels.shape}; the mask has {labels.shape}", name)
    return context, context_labels


def context_output(context) -> np.ndarray:
    """A writable copy of the context in the dtype a synthetic image in it has: its own float type, float32 for
    integer images (exact up to 2**24), so every pixel outside the region is the context's value."""
    context = np.asarray(context)
    return context.astype(context.dtype if context.dtype.kind == "f" else np.float32, copy=True)


def _synthesize_in_context(labels, context, context_labels, net, card, seed, name, grain=True,
                           fill="lv") -> np.ndarray:
    import torch

    from .data.grain import matched_grain, own_detail
    from .data.normalize import DEFAULT_NORMALIZATION, grid_window, normalize_view
    from .models.pix2pix import blend_weights, changed_region

    context, context_labels = _check_context(context, labels, context_labels, name)
    norm = {**DEFAULT_NORMALIZATION, **(card.normalization or synthesis_normalization())}
    size = int(card.input_size or 128)
    stack = labels[None] if labels.ndim == 2 else labels
    ctx = context[None] if context.ndim == 2 else context
    ctx_lab = None if context_labels is None else (context_labels[None] if context_labels.ndim == 2
                                                   else context_labels)
    union = stack if ctx_lab is None else np.maximum(stack > 0, ctx_lab > 0).astype(np.uint8)
    center = labels_center(union) if stack.shape[-2:] != (size, size) else None
    grid, box = to_grid(stack, size, center)
    ctx_grid, _ = to_grid(ctx.astype(np.float32), size, center)
    inside, _ = to_grid(np.ones(stack.shape[-2:], bool), size, center)
    lab_grid = None if ctx_lab is None else to_grid(ctx_lab, size, center)[0]
    if fill == "changes":   # every changed pixel the generator's alone; the blend in the margin around them
        region = changed_region(torch.from_numpy(grid), torch.from_numpy(lab_grid), net.blend_width).numpy() & inside
    else:
        region = region_slices(grid, lab_grid, net.region_dilation) & inside
    weights = blend_weights(torch.from_numpy(region), net.blend_width).numpy()
    normalised = normalize_view(ctx_grid, inside, norm)   # as training read its crops
    out = context_output(ctx)
    ys, xs = grid_window(box, (size, size), stack.shape)
    gy, gx = slice(ys.start - box[0], ys.stop - box[0]), slice(xs.start - box[1], xs.stop - box[1])
    for z in range(len(stack)):
        if not region[z].any():
            continue   # no LV here: the slice is the context's
        pixels = ctx_grid[z][inside]
        low, high = np.percentile(pixels, [norm["low"], norm["high"]])
        scale = high - low
        if scale <= 1e-6 + 1e-4 * max(abs(low), abs(high)):   # a flat slice, as normalize_slices treats it
            low, scale = high, 1.0
        fake = net.generate(torch.from_numpy(np.ascontiguousarray(grid[z], np.int64)), seed=seed,
                            context=torch.from_numpy(to_tanh(normalised[z], norm)),
                            region=torch.from_numpy(region[z]))[0, 0].cpu().numpy()
        raw = low + from_tanh(fake, norm) * scale
        if grain:   # only what changed: the same tissue under a new label keeps its own texture (no surrogate)
            raw = raw + (own_detail(ctx_grid[z], raw) if fill == "changes" else
                         matched_grain(ctx_grid[z], raw, region[z], np.random.default_rng([seed, z])))
            if pixels.min() >= 0:   # a magnitude image: its noise never takes it below zero
                raw = np.maximum(raw, 0.0)
        window = out[z][ys, xs]
        r, w = region[z][gy, gx], weights[z][gy, gx]
        window[r] = (w[r] * raw[gy, gx][r] + (1.0 - w[r]) * window[r]).astype(out.dtype)
        out[z][ys, xs] = window
    return out[0] if labels.ndim == 2 else out


def region_slices(labels, context_labels=None, dilation=None):
    """The regions a context generator fills in (`engine.synthesis.region_slices`)."""
    from .engine.synthesis import region_slices as regions

    return regions(labels, context_labels, dilation)


# -- islands --------------------------------------------------------------------------------------
def clean_islands(mask) -> tuple:
    """``(cleaned, islands)``: per slice, only the largest piece of cavity (4-connected) and of wall (myocardium,
    infarct and no-reflow together, 8-connected) kept, as the anatomy check asks. A removed island the LV encloses
    takes the class nearest it (a wall speck in the cavity becomes cavity), any other removed pixel background.
    ``islands``: one dict per removed piece, with ``slice`` (None for a 2-D mask), ``label`` ("cavity" / "wall"),
    ``pixels`` and ``at`` (its centre, y x)."""
    from scipy import ndimage as ndi

    from .labels import CAVITY

    labels = _check_mask(mask, "mask")
    stack = labels[None].copy() if labels.ndim == 2 else labels.copy()
    square, cross = np.ones((3, 3), bool), ndi.generate_binary_structure(2, 1)
    islands = []
    for z, sl in enumerate(stack):
        for name, members, structure in (("wall", (MYOCARDIUM, INFARCT, NO_REFLOW), square),
                                         ("cavity", (CAVITY,), cross)):
            pieces, n = ndi.label(np.isin(sl, members), structure)
            if n < 2:
                continue
            sizes = np.bincount(pieces.ravel())[1:]
            keep = int(np.argmax(sizes)) + 1
            for k in range(1, n + 1):
                if k == keep:
                    continue
                where = pieces == k
                ys, xs = np.nonzero(where)
                islands.append({"slice": None if labels.ndim == 2 else z, "label": name, "pixels": int(where.sum()),
                                "at": (int(round(ys.mean())), int(round(xs.mean())))})
                sl[where] = BACKGROUND
        # an island the LV enclosed leaves a hole: it takes the nearest class around it (wall in cavity: cavity)
        holes = ndi.binary_fill_holes(sl != BACKGROUND) & (sl == BACKGROUND)
        if holes.any():
            iy, ix = ndi.distance_transform_edt(sl == BACKGROUND, return_distances=False, return_indices=True)
            sl[holes] = sl[iy[holes], ix[holes]]
    return (stack[0] if labels.ndim == 2 else stack), islands


def describe_islands(islands, limit: int = 4) -> str:
    """'slice 2: cavity 1 px at (40, 51); ...' (at most ``limit`` named, then how many more)."""
    parts = [f"{'' if i['slice'] is None else 'slice %d: ' % i['slice']}{i['label']} {i['pixels']} px at "
             f"({i['at'][0]}, {i['at'][1]})" for i in islands[:limit]]
    more = f" (+{len(islands) - limit} more)" if len(islands) > limit else ""
    return "; ".join(parts) + more


# -- donors ---------------------------------------------------------------------------------------
class Donor:
    """A real slice a drawn mask can be rendered into: its image (Y, X), labels (Y, X) and a name."""

    def __init__(self, name: str, image, labels):
        self.name, self.image, self.labels = name, np.asarray(image), np.asarray(labels, np.uint8)
        self.area = int(np.count_nonzero(self.labels))   # LV pixels: cavity + myocardium

    def __repr__(self) -> str:
        return f"Donor({self.name!r}, LV {self.area} px)"


def donors_from_volumes(volumes) -> list:
    """`Donor` slices (those with an LV) of ``(name, image, labels)`` volumes, (Y, X) or (Z, Y, X) each."""
    out = []
    for name, image, labels in volumes:
        image, labels = np.asarray(image), np.asarray(labels)
        if image.shape != labels.shape or image.ndim not in (2, 3):
            raise LvsegError(f"image {image.shape} and labels {labels.shape} must be one slice or stack of one shape",
                             name)
        if image.ndim == 2:
            image, labels = image[None], labels[None]
        for z in range(len(image)):
            if labels[z].any() and not invalid_values(labels[z]):
                out.append(Donor(f"{name} slice {z}", image[z], labels[z]))
    return out


def read_donors(folder, cases=None) -> list:
    """Donor slices of a folder of real images with labels: an EMIDEC case or dataset folder (Case_X/Images,
    Case_X/Contours) or a pair folder (its synthetic pairs left out); ``cases`` keeps only those names."""
    from pathlib import Path

    from .io import emidec
    from .io.pairs import PairFolder

    folder = Path(folder)
    if not folder.is_dir():
        raise LvsegError("no such folder of donor cases (EMIDEC cases or a pair folder)", folder)
    volumes = []
    if PairFolder.is_pair_folder(folder):
        pairs = PairFolder.open(folder)
        for record in pairs.records():
            if record.get("origin") != "synthetic" and (cases is None or record["name"] in cases):
                image, mask = pairs.read(record["name"])
                volumes.append((record["name"], image, mask))
    else:
        for case in emidec.find_cases(folder):
            if cases is not None and case.name not in cases:
                continue
            image, labels = emidec.read_case(case)
            if labels is not None:
                volumes.append((case.name, image.data, labels.data))
    donors = donors_from_volumes(volumes)
    if not donors:
        raise LvsegError("no real slice with an LV mask to take as a donor (EMIDEC cases with Contours, or pairs)",
                         folder)
    return donors


def rank_donors(mask, donors, exclude=()) -> list:
    """``donors`` nearest first by LV size: |log(donor LV area / mask LV area)| (the same order as the equivalent
    diameters'); ties keep the given order. ``exclude``: names left out (e.g. the mask's own slice)."""
    area = max(int(np.count_nonzero(np.asarray(mask))), 1)
    kept = [d for d in donors if d.name not in set(exclude)]
    return sorted(kept, key=lambda d: abs(np.log(max(d.area, 1) / area)))


def donor_context(mask, donor) -> tuple:
    """``(context, context_labels)`` of the mask's shape (Y, X): the donor's image and labels moved so that its
    LV centre lies on the mask's (edge pixels repeated where the donor's image ends; labels 0 there)."""
    mask = np.asarray(mask)
    h, w = mask.shape
    target, source = labels_center(mask), labels_center(donor.labels)
    if target is None:   # no LV drawn on this slice: the donor's slice centred on the mask's
        target = ((h - 1) / 2.0, (w - 1) / 2.0)
    dy, dx = int(round(target[0] - source[0])), int(round(target[1] - source[1]))
    ys, xs = np.arange(h) - dy, np.arange(w) - dx
    dh, dw = donor.image.shape
    yi, xi = np.clip(ys, 0, dh - 1), np.clip(xs, 0, dw - 1)
    image = donor.image[yi[:, None], xi[None, :]]
    labels = donor.labels[yi[:, None], xi[None, :]].copy()
    labels[(ys < 0) | (ys >= dh), :] = 0
    labels[:, (xs < 0) | (xs >= dw)] = 0
    return image, labels


def _pick_donor(mask_slice, donors, choice, name):
    if isinstance(choice, Donor):
        return choice
    if isinstance(choice, str):
        for d in donors:
            if d.name == choice:
                return d
        raise LvsegError(f"no donor slice named {choice!r}", name)
    ranked = rank_donors(mask_slice, donors)
    if not 0 <= int(choice) < len(ranked):
        raise LvsegError(f"donor rank {choice} asked for; there are {len(ranked)} donor slices", name)
    return ranked[int(choice)]


def donor_contexts(labels, donors, choice=0, name: str = "mask") -> tuple:
    """``(context, context_labels, donor names)`` for a mask slice or stack: each slice its own donor (rank
    ``choice`` by LV size, a donor's name, or a `Donor`), moved onto the slice's LV (`donor_context`). ``donors``:
    a list of `Donor` or a folder for `read_donors`."""
    if not isinstance(donors, (list, tuple)):
        donors = read_donors(donors)
    if not donors:
        raise LvsegError("no donor slices to take a context from", name)
    labels = np.asarray(labels)
    stack = labels[None] if labels.ndim == 2 else labels
    dtype = np.result_type(*[d.image.dtype for d in donors], np.float32)
    context, context_labels, names = np.empty(stack.shape, dtype), np.empty(stack.shape, np.uint8), []
    for z, mask_slice in enumerate(stack):
        donor = _pick_donor(mask_slice, donors, choice, name)
        context[z], context_labels[z] = donor_context(mask_slice, donor)
        names.append(donor.name)
    if labels.ndim == 2:
        return context[0], context_labels[0], names
    return context, context_labels, names


def iter_variants(mask, n: int, model=None, seed: int = 0, **context):
    """``n`` images of the same mask, seeds ``seed``, ``seed + 1``, ..., made one at a time as the returned
    iterator is read (a caller can report progress and stop between images). ``n`` and the model are checked
    at once. ``context``: `synthesize`'s context, context_labels, context_name, donors and donor."""
    if n < 1:
        raise LvsegError(f"number of variants must be at least 1, got {n}")
    has_context = context.get("context") is not None or context.get("donors") is not None
    model = load_synthesis_model(model, context=has_context)
    return (synthesize(mask, model, seed + i, **context) for i in range(n))


def synthesize_variants(mask, n: int, model=None, seed: int = 0, **context) -> list:
    """``n`` images of the same mask, seeds ``seed``, ``seed + 1``, ..."""
    return list(iter_variants(mask, n, model, seed, **context))


def _slice_numbers(cases: list) -> list:
    """Index of each slice within its case (slices of a case are stored in order)."""
    seen: dict = {}
    out = []
    for case in cases:
        out.append(seen.get(case, 0))
        seen[case] = out[-1] + 1
    return out


def synthesize_dataset(masks_from, n: int, out, model=None, seed: int = 0, cases=None, simulate: bool = True,
                       device=None, stacks: bool = False, slice_seeds: bool = False):
    """Write ``n`` synthetic pairs into the pair folder ``out`` (returned as a `PairFolder`).

    Each pair: a random LV slice of ``masks_from`` (EMIDEC case/dataset folder or pair folder), varied
    by ``simulate_mask`` (rng seeded by ``seed``) unless ``simulate`` is False, rendered with seed
    ``seed + k``. With ``stacks`` each pair is a whole synthetic case instead: a random case's stack
    varied by ``simulate_stack``, so a 2.5-D network sees synthetic neighbours that differ like real ones.
    Its slices share the seed ``seed + k`` or, with ``slice_seeds``, slice ``z`` gets ``seed + k + z * n``
    (the generator's noise then differs between neighbours, as a real scan's does).
    Manifest records: origin 'synthetic', source case and slice (None for a stack), generator, seed.
    ``device`` runs the generator there (a GPU draws other dropout noise than the CPU for a seed).
    """
    from .io.lock import FolderLock
    from .io.pairs import PairFolder

    if n < 1:
        raise LvsegError(f"--n must be at least 1, got {n}")
    PairFolder(out).check_writable()   # before the generator loads and the masks are read
    # one writer at a time; under the lock, what a killed run left is stale and cleared before the first new pair
    with FolderLock(out, "synthetic pair folder"):
        _clear_interrupted(PairFolder(out))
        return _synthesize_pairs(masks_from, n, out, model, seed, cases, simulate, device, stacks, slice_seeds)


def _clear_interrupted(folder) -> None:
    """Remove the temp files and the manifest lines without files (`PairFolder.drop_incomplete`) that a killed
    writer left; say which pairs were dropped."""
    from .errors import warn
    from .io.atomic import remove_stale_temps
    from .io.pairs import MANIFEST

    for where in (folder.root, folder.images_dir, folder.masks_dir):
        remove_stale_temps(where)
    dropped = folder.drop_incomplete() if folder.manifest_path.is_file() else []
    if dropped:
        warn(f"{len(dropped)} unfinished pair(s) an interrupted run left dropped from {MANIFEST}: "
             f"{', '.join(dropped[:5])}{' ...' if len(dropped) > 5 else ''}", folder.root)


def _synthesize_pairs(masks_from, n, out, model, seed, cases, simulate, device, stacks, slice_seeds):
    from .data.datasets import load_source
    from .data.simulator import anatomy_problems, simulate_mask, simulate_stack
    from .io.pairs import PairFolder

    net, card = load_synthesis_model(model)
    if device is not None:
        net = net.to(device)
    generator_path = _model_path(model)
    size = int(card.input_size or 128)
    source = load_source(masks_from, size, None, cases=cases)
    # Templates: LV slices, or whole stacks, that pass the anatomy check (the simulator demands it; so do the outputs).
    if stacks:
        templates = [(case, None, lab) for case, _, lab in source.volumes() if lab.any() and not anatomy_problems(lab)]
    else:
        templates = [(case, z, lab) for case, z, lab in zip(source.cases, _slice_numbers(source.cases), source.labels)
                     if lab.any() and not anatomy_problems(lab)]
    if not templates:
        raise LvsegError(f"no {'case' if stacks else 'slice'} with a valid LV mask to start from", masks_from)
    simulator = simulate_stack if stacks else simulate_mask
    slice_seeds = stacks and slice_seeds   # a lone slice has one seed anyway
    rng = np.random.default_rng(seed)
    folder = PairFolder(out)
    names = [f"synthetic_s{seed}_{k:05d}" for k in range(n)]
    if PairFolder.is_pair_folder(out):   # adding to a folder: never replace the pairs already there
        taken = {r["name"] for r in folder.records()} & set(names)
        if taken:
            raise LvsegError(f"already holds {len(taken)} of the pairs seed {seed} makes ({min(taken)} ...): "
                             "add more with another --seed, or write to another --out", out)
    for k in range(n):
        case, z, template = templates[int(rng.integers(len(templates)))]
        mask = simulator(template, rng) if simulate else template.copy()
        if slice_seeds:
            image = np.stack([synthesize(m, (net, card), seed + k + i * n) for i, m in enumerate(mask)])
        else:
            image = synthesize(mask, (net, card), seed + k)
        folder.add(image, mask, origin="synthetic", source=case if stacks else f"{case} slice {z}", model=card.name,
                   seed=seed + k, name=names[k], source_data=str(masks_from), source_case=case,
                   source_slice=z, generator_path=generator_path, simulated=bool(simulate),
                   **({"slice_seeds": True} if slice_seeds else {}))
    return folder


# -- evaluation -----------------------------------------------------------------------------------
class _RandomFeatures:
    """Fallback feature network: a fixed conv net, seeded random weights (no download, same everywhere)."""

    name = ("fixed random conv net (torch seed 0, He init; 4 conv layers 16-32-64-64, mean+std pooled: "
            "128 features); no bundled segmentation model")

    def __init__(self):
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            layers, cin = [], 1
            for cout in (16, 32, 64, 64):
                conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
                # He init, zero bias: activations keep their scale through the layers (torch's default
                # init shrinks them), so FID/KID values are not vanishingly small.
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)
                layers += [conv, nn.ReLU()]
                cin = cout
            self.net = nn.Sequential(*layers).eval()

    def __call__(self, x):
        import torch

        f = self.net(x)
        return torch.cat([f.mean((2, 3)), f.std((2, 3))], 1)


class _EncoderFeatures:
    """Bottleneck of a bundled segmentation network, global-average pooled."""

    def __init__(self, net, name):
        self.net, self.name = net.eval(), name

    def __call__(self, x):
        # a 2.5-D network reads a slice with its neighbours: a lone slice is its own neighbour
        f = self.net.stem(x.expand(-1, self.net.stem.conv1.in_channels, -1, -1))
        for block in self.net.encoder:
            f = block(f)
        return f.mean((2, 3))


def feature_network():
    """The FID/KID feature network: the encoder of the default bundled segmentation model where there is
    one (``stem`` + ``encoder`` blocks; of an ensemble, its first member's), else the fixed random conv net."""
    from .models.registry import list_models, load_model

    bundled = [e for e in list_models("segmentation") if e.source == "bundled"]
    bundled.sort(key=lambda e: not e.card.is_default)
    for entry in bundled:
        net, _ = load_model(entry.path, task="segmentation")
        member = ""
        if hasattr(net, "members"):
            net, member = net.members[0], "first member of "
        if hasattr(net, "stem") and hasattr(net, "encoder"):
            return _EncoderFeatures(net, f"encoder bottleneck of the {member}bundled segmentation model "
                                         f"'{entry.name}' (global average pool)")
    return _RandomFeatures()


def features(network, slices: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """(N, F) float64 features of normalised slices (N, S, S)."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(slices), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(slices[start:start + batch_size], np.float32))[:, None]
            out.append(network(x).double().numpy())
    return np.concatenate(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets (N, F): |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)."""
    import warnings

    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        # With fewer slices than features the covariances are singular: expected, not worth a warning.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():  # regularise, as the reference FID code does
            eps = 1e-6 * np.eye(len(cov_a))
            covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = np.real(covmean)
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean), 0.0))


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 20, subset_size: int = 100, seed: int = 0):
    """KID: unbiased MMD^2 with the cubic polynomial kernel (x.y / F + 1)^3, mean and std over random subsets
    of ``min(subset_size, N)`` rows (with fewer than ``subset_size`` rows every subset is the whole set: std 0)."""
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise LvsegError("KID needs at least 2 slices")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = m * (m - 1)
        values.append((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def evaluate_synthesis(model, data, cases=None, seed: int = 0) -> dict:
    """How real the generator's images look on the LV slices of ``data`` (EMIDEC folder or pair folder).

    Each slice's mask is rendered with ``seed`` and compared with its real image in the generator range
    [-1, 1]: L1, PSNR (dB), SSIM per pair and mean; class mean intensities (normalised units, 0..1 =
    percentiles 1..99) of synthetic and real slices with two contrast checks; FID and KID between
    features of real and synthetic slices ('feature_network' names the network used).
    """
    from .data.datasets import load_source
    from .engine.synthesis import class_means

    t0 = time.time()
    net, card = load_synthesis_model(model)
    norm = card.normalization or synthesis_normalization()
    size = int(card.input_size or 128)
    source = load_source(data, size, norm, cases=cases)
    keep = np.flatnonzero(source.labels.any(axis=(1, 2)))
    if len(keep) < 2:
        raise LvsegError("fewer than 2 slices with an LV mask to evaluate on", data)
    labels, real_v = source.labels[keep], source.images[keep]
    numbers = _slice_numbers(source.cases)
    real = to_tanh(real_v, norm)
    if conditioning(card) == "context":   # each real slice its own context: the LV region filled in
        from .engine.synthesis import generate_context_slices

        fake, _ = generate_context_slices(net, labels, real, region_slices(labels, None, net.region_dilation), seed)
    else:
        fake = generate_slices(net, labels, seed)
    pairs = [{"case": source.cases[i], "slice": numbers[i], **compare_slices(r, f)}
             for i, r, f in zip(keep, real, fake)]
    fake_v = from_tanh(fake, norm)
    synthetic_means, real_means = class_means(fake_v, labels), class_means(real_v, labels)

    def brighter(a, b):
        return None if np.isnan(a) or np.isnan(b) else bool(a > b)

    network = feature_network()
    f_real, f_fake = features(network, real_v), features(network, fake_v)
    kid, kid_std = kernel_distance(f_real, f_fake, seed=seed)
    return {
        "model": card.name,
        "data": str(data),
        "n_slices": len(pairs),
        "seed": seed,
        "l1": float(np.mean([p["l1"] for p in pairs])),
        "psnr": float(np.mean([p["psnr"] for p in pairs])),
        "ssim": float(np.mean([p["ssim"] for p in pairs])),
        "class_means_synthetic": synthetic_means,
        "class_means_real": real_means,
        "infarct_brighter_than_myocardium": brighter(synthetic_means[SHORT_NAMES[INFARCT]],
                                                     synthetic_means[SHORT_NAMES[MYOCARDIUM]]),
        "no_reflow_darker_than_infarct": brighter(synthetic_means[SHORT_NAMES[INFARCT]],
                                                  synthetic_means[SHORT_NAMES[NO_REFLOW]]),
        "fid": frechet_distance(f_real, f_fake),
        "kid": kid,
        "kid_std": kid_std,
        "feature_network": network.name,
        "seconds": round(time.time() - t0, 2),
        "pairs": pairs,
    }


# -- timing ---------------------------------------------------------------------------------------
def ms_per_image(model=None, size: int = 128, repeats: int = 5, seed: int = 0) -> float:
    """Median milliseconds of one `synthesize` call on a size x size LV ring mask (after a warm-up).

    ``model``: as for `synthesize`, or a bare generator module (timed with an identity intensity range).
    """
    from .data.simulator import draw_lv_ring

    if hasattr(model, "generate"):
        from .models.card import ModelCard

        card = ModelCard(name="unsaved", task="synthesis", architecture=type(model).__name__,
                         params=model.architecture_params(), normalization=synthesis_normalization([0.0, 1.0]),
                         input_size=size)
        model = (model, card)
    model = load_synthesis_model(model)
    mask = draw_lv_ring((size, size), (size / 2, size / 2), size * 0.17, size * 0.07)
    synthesize(mask, model, seed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        synthesize(mask, model, seed)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
