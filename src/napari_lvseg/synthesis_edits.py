"""Synthetic datasets from real cases' edited masks, rendered in the real image's own surroundings.

Each pair: a real slice (or whole case) of ``masks_from``, its mask edited (`data.edits`: grow, shrink or move the
infarct, add or remove no-reflow, a new infarct, no infarct, or a donor case's lesion fused into it,
`data.fusion`), rendered by the generator with the real image as its context. The context goes through the
public `synthesis.synthesize(..., context=IMAGE)` where the installed package has it and the generator is a
context generator (``conditioning == 'context'``); `Renderer` checks that the pixels away from the LV came back
unchanged and records it. Where no context generator exists (the bundled labels-only generators), the image is
rendered from the edited mask alone, and the pair's manifest line says so (``context: false``).

For ``fusion`` the donor comes first: a random lesion slice (one connected lesion touching the endocardium) of
one case, and the recipient is one of the 3 slices of the *other* cases nearest to it in LV size and shape
(`fusion.nearest_recipients`); the recipient's real image is the context. A rejected fusion (not anatomically
possible) is retried with another donor; the rejections and their reasons are counted in the result.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import LvsegError
from .labels import BACKGROUND

CONTEXT_MARGIN = 12   # px beyond the LV where a context generator must have kept the context image's pixels
_FUSION_TRIES = 20
_FUSION_ROUNDS = 5   # rounds of tries in a row without a fusion: the cases cannot give one another a lesion


def read_cases(data, cases=None) -> list:
    """[(case, raw image (Z, Y, X) float32, labels (Z, Y, X) uint8)] of an EMIDEC case/dataset folder or a pair
    folder, the slices with an LV only; ``cases`` keeps those names (a missing one is an error)."""
    from .io import emidec
    from .io.pairs import PairFolder

    data = Path(data)
    if not data.is_dir():
        raise LvsegError("no such folder of EMIDEC cases or pairs", data)
    if PairFolder.is_pair_folder(data):
        folder = PairFolder.open(data)
        items = [(r["name"], lambda r=r: folder.read(r["name"])) for r in folder.records()]
    else:
        found = emidec.find_cases(data)
        if not found:
            raise LvsegError("no EMIDEC cases (Case_X/Images, Case_X/Contours) or pairs found", data)

        def read(case):
            image, labels = emidec.read_case(case)
            return image.data, (labels.data if labels is not None else None)

        items = [(c.name, lambda c=c: read(c)) for c in found]
    if cases is not None:
        missing = sorted(set(cases) - {name for name, _ in items})
        if missing:
            raise LvsegError(f"no case or pair named {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                             data)
    out = []
    for name, read_item in items:
        if cases is not None and name not in cases:
            continue
        image, labels = read_item()
        if labels is None:
            continue
        image, labels = np.asarray(image, np.float32), np.asarray(labels, np.uint8)
        if image.ndim == 2:
            image, labels = image[None], labels[None]
        keep = labels.reshape(len(labels), -1).any(1)
        if keep.any():
            out.append((name, image[keep], labels[keep]))
    if not out:
        raise LvsegError("no slice with an LV mask", data)
    return out


class Renderer:
    """``renderer(mask, image, seed, image_labels)``: the generator's image of ``mask`` in ``image``'s surroundings
    where it can (see the module doc; ``image_labels``, the real image's own labels, blank its own LV too), else of
    the mask alone. ``describe()`` says which, and why."""

    def __init__(self, model, grain: bool = True, fill: str = "lv"):
        from .synthesis import load_synthesis_model, synthesize

        self._synthesize = synthesize
        self._params = inspect.signature(synthesize).parameters
        takes_context = "context" in self._params
        self.model = load_synthesis_model(model, context=takes_context)   # no model named: the context default
        net, card = self.model
        conditioning = (card.params or {}).get("conditioning", getattr(net, "conditioning", "labels"))
        self.context = takes_context and conditioning == "context"
        self.why = ("context generator: the real image's surroundings kept" if self.context else
                    "labels-only generator: the whole image rendered from the mask" if takes_context else
                    "this package's synthesize() takes no context yet: the whole image rendered from the mask")
        self.kept = Counter()
        self.grain = grain and "grain" in self._params
        if fill != "lv" and not self.context:
            raise LvsegError(f"redrawing only what changed (--fill {fill}) needs a context generator; {card.name} "
                             "renders whole images from the mask")
        self.fill = fill   # "changes": only the pixels the edit changed (`synthesize`)

    def __call__(self, mask, image, seed: int, image_labels=None) -> np.ndarray:
        if not self.context:
            return self._synthesize(mask, self.model, seed)
        extra = {"context_labels": image_labels} if image_labels is not None and "context_labels" in self._params \
            else {}
        if "grain" in self._params:
            extra["grain"] = self.grain
        if self.fill != "lv":
            extra["fill"] = self.fill
        out = self._synthesize(mask, self.model, seed, context=image, **extra)
        self.kept[context_kept(out, image, mask if image_labels is None else (mask > 0) | (image_labels > 0))] += 1
        return out

    def describe(self) -> dict:
        out = {"context": bool(self.context), "how": self.why}
        if self.context:
            out["grain"] = bool(self.grain)
            out["fill"] = self.fill
        if self.kept:
            out["context_kept"] = {"yes": self.kept[True], "no": self.kept[False]}
        return out


def context_kept(image, context, mask, margin: int = CONTEXT_MARGIN) -> bool:
    """Whether ``image`` equals ``context`` everywhere more than ``margin`` px from the LV of ``mask``."""
    from scipy import ndimage as ndi

    lv = np.asarray(mask) != BACKGROUND
    stack = lv if lv.ndim == 2 else lv.any(0)
    far = ~ndi.binary_dilation(stack, iterations=margin)
    a, b = np.asarray(image, np.float32), np.asarray(context, np.float32)
    scale = max(float(np.abs(b).max()), 1.0)
    return bool(np.allclose(a[..., far], b[..., far], rtol=0, atol=1e-4 * scale))


# -- the dataset ---------------------------------------------------------------------------------------------------
def synthesize_edited_dataset(masks_from, n: int, out, edits=("all",), model=None, seed: int = 0, cases=None,
                              stacks: bool = False, device=None, grain: bool = True, fill: str = "lv") -> tuple:
    """Write ``n`` pairs of edited real masks and their images into the pair folder ``out``.

    Returns (`PairFolder`, summary dict: pairs per edit kind, the rendering, the fusions and moves rejected as
    anatomically impossible and why).
    Manifest records: origin 'synthetic', source case and slice (None for a stack), ``edit`` and its parameters,
    for a fusion the donor case and slice, ``context`` (whether the real image was the context), generator, seed.
    ``grain``: a context generator's fill-in gets its context's noise texture; ``fill``: "lv" (the LV region
    redrawn) or "changes" (only the pixels the edit changed; an edit that changes nothing is drawn again)
    (`synthesis.synthesize`).
    """
    from .data.edits import UNCHANGED, check_edits
    from .io.lock import FolderLock
    from .io.pairs import PairFolder
    from .synthesis import _clear_interrupted

    if n < 1:
        raise LvsegError(f"--n must be at least 1, got {n}")
    kinds = check_edits(edits)
    if fill == "changes" and UNCHANGED in kinds:
        raise LvsegError("the edit 'unchanged' changes nothing for --fill changes to redraw: fill in the whole LV")
    PairFolder(out).check_writable()
    with FolderLock(out, "synthetic pair folder"):
        _clear_interrupted(PairFolder(out))
        return _write_pairs(masks_from, n, out, kinds, model, seed, cases, stacks, device, grain, fill)


def _templates(masks_from, cases, stacks):
    from .data.simulator import anatomy_problems

    rows = read_cases(masks_from, cases)
    if stacks:
        return [(case, None, image, labels) for case, image, labels in rows if not anatomy_problems(labels)]
    return [(case, z, image[z], labels[z]) for case, image, labels in rows for z in range(len(labels))
            if not anatomy_problems(labels[z])]


def _fusion(templates, shapes, rng, stacks):
    """(recipient template index, fused mask, details) of a random donor's lesion; rejections in details."""
    from .data.fusion import FusionRejected, donor_slices, fuse_from_donor

    if stacks:
        return _fuse_stack(templates, rng)
    donors = [i for i, _ in donor_slices([t[3][None] for t in templates])]
    if not donors:
        raise LvsegError("no slice with one connected lesion touching the endocardium to give a lesion")
    rejected = []
    for _ in range(_FUSION_TRIES):
        d = donors[int(rng.integers(len(donors)))]
        donor_case = templates[d][0]
        pool = [i for i, t in enumerate(templates) if t[0] != donor_case]
        try:
            fused, j, reasons = fuse_from_donor(templates[d][3], [templates[i][3] for i in pool], rng,
                                                shapes=[shapes[i] for i in pool])
        except FusionRejected as exc:
            rejected.append(exc.message)
            continue
        rejected += reasons
        return pool[j], fused, {"donor_case": donor_case, "donor_slice": templates[d][1]}, rejected
    raise FusionRejected(f"no fusion passed in {_FUSION_TRIES} tries: {rejected[-1] if rejected else ''}")


def _stack_shape(labels):
    from .data.fusion import lv_shape, shape_vector

    shapes = [lv_shape(s) for s in labels]
    shapes = [shape_vector(s) for s in shapes if s is not None]
    return dict(zip(("diameter", "cavity_area", "thickness", "eccentricity"), np.mean(shapes, 0))) if shapes else None


def _fuse_stack(templates, rng):
    """A donor case's lesion, slice by slice at the same relative level, fused into the recipient case nearest in
    mean LV size and shape (one of 3); a case where a lesion slice's fusion is rejected is not used."""
    from .data.fusion import FusionRejected, donor_problems, fuse_lesion, nearest_recipients

    shapes = [_stack_shape(t[3]) for t in templates]
    lesioned = [i for i, t in enumerate(templates) if np.isin(t[3], (3, 4)).any()]
    if not lesioned:
        raise LvsegError("no case with a lesion to give")
    rejected = []
    for _ in range(_FUSION_TRIES):
        d = lesioned[int(rng.integers(len(lesioned)))]
        donor = templates[d][3]
        pool = [i for i, t in enumerate(templates) if t[0] != templates[d][0] and shapes[i] is not None]
        near = nearest_recipients(shapes[d], [shapes[i] for i in pool], k=3)
        r = pool[near[int(rng.integers(len(near)))]]
        recipient = templates[r][3]
        fused = recipient.copy()
        fused[np.isin(fused, (3, 4))] = 2
        try:
            for z in range(len(recipient)):
                source = donor[int(round(z * (len(donor) - 1) / max(len(recipient) - 1, 1)))]
                if np.isin(source, (3, 4)).any() and (recipient[z] == 1).any():
                    problems = donor_problems(source)
                    if problems:
                        raise FusionRejected(f"donor slice: {problems[0]}")
                    fused[z] = fuse_lesion(source, fused[z])
        except FusionRejected as exc:
            rejected.append(exc.message)
            continue
        if not np.isin(fused, (3, 4)).any():
            rejected.append("no lesion slice of the donor met an LV slice of the recipient")
            continue
        return r, fused, {"donor_case": templates[d][0], "donor_slice": None}, rejected
    raise FusionRejected(f"no stack fusion passed in {_FUSION_TRIES} tries: {rejected[-1] if rejected else ''}")


def _write_pairs(masks_from, n, out, kinds, model, seed, cases, stacks, device, grain, fill):
    from .data.edits import applicable, edit_mask
    from .data.fusion import FusionRejected, lv_shape
    from .io.pairs import PairFolder
    from .synthesis import _model_path

    renderer = Renderer(model, grain, fill)
    if device is not None:
        renderer.model = (renderer.model[0].to(device), renderer.model[1])
    card = renderer.model[1]
    templates = _templates(masks_from, cases, stacks)
    if not templates:
        raise LvsegError(f"no {'case' if stacks else 'slice'} with a valid LV mask to edit", masks_from)
    shapes = None if stacks else [lv_shape(t[3]) for t in templates]
    # each kind draws among the templates it can change, so every kind asked for comes about equally often
    where = {kind: list(range(len(templates))) if kind == "fusion" else
             [i for i, t in enumerate(templates) if applicable(t[3], kind)] for kind in kinds}
    kinds = tuple(kind for kind in kinds if where[kind])
    if not kinds:
        raise LvsegError(f"no {'case' if stacks else 'slice'} where {', '.join(where)} would change the mask",
                         masks_from)
    folder = PairFolder(out)
    names = [f"edited_s{seed}_{k:05d}" for k in range(n)]
    if PairFolder.is_pair_folder(out):
        taken = {r["name"] for r in folder.records()} & set(names)
        if taken:
            raise LvsegError(f"already holds {len(taken)} of the pairs seed {seed} makes ({min(taken)} ...): "
                             "add more with another --seed, or write to another --out", out)
    rng = np.random.default_rng(seed)
    made, rejected = Counter(), Counter()
    failed_fusions = 0
    for k in range(n):
        while True:
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind == "fusion":
                try:
                    t, mask, detail, reasons = _fusion(templates, shapes, rng, stacks)
                except FusionRejected as exc:   # this draw of donors found no fit: draw the pair again
                    failed_fusions += 1
                    if failed_fusions > _FUSION_ROUNDS:
                        raise LvsegError(f"cross-subject fusion failed {failed_fusions} times in a row "
                                         f"({exc.message}); leave out the kind fusion", masks_from) from None
                    rejected[exc.message] += 1
                    continue
                failed_fusions = 0
                rejected.update(reasons)
                break
            t = where[kind][int(rng.integers(len(where[kind])))]
            try:
                mask, detail = edit_mask(templates[t][3], kind, rng)
            except FusionRejected as exc:   # a move with no anatomically possible place
                rejected[exc.message] += 1
                continue
            if renderer.fill == "changes" and np.array_equal(mask, templates[t][3]):
                continue   # nothing to redraw: the real image again
            break
        case, z, image, _ = templates[t]
        rendered = renderer(mask, image, seed + k, templates[t][3])
        made[kind] += 1
        folder.add(rendered, mask, origin="synthetic", source=case if stacks else f"{case} slice {z}",
                   model=card.name, seed=seed + k, name=names[k], source_data=str(masks_from), source_case=case,
                   source_slice=z, generator_path=_model_path(model), simulated=True, edit=kind, **detail,
                   context=bool(renderer.context),
                   **({"grain": renderer.grain, "fill": renderer.fill} if renderer.context else {}))
    summary = {"pairs": dict(made), "rendering": renderer.describe(), "rejections": sum(rejected.values()),
               "rejection_reasons": dict(rejected.most_common(5))}
    return folder, summary
