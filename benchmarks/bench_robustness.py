"""Robustness to another scanner's images: ``OMP_NUM_THREADS=2 python benchmarks/bench_robustness.py``.

The cases a model never trained on (default: the validation and test cases of ``training/split.json``, which the
bundled model did not train on), changed as another scanner would change them, each segmented with no options
(`inference.segment`, as `lvseg segment` does), scored against the truth changed alike. Every variant is printed
beside the unchanged input measured in the same run (the baseline): pooled Dice mean over cavity, myocardium,
infarct and no-reflow, per-case mean, their ratio to the baseline's, and the time taken.

Variants: intensity units, gamma, noise, a receive coil's shading, rotation; pixel size (the image rescaled, labels
alike), isotropic and anisotropic; a wider field of view (the crop inside a 256 x 256 frame); the crop placed
off-centre in other cases' surroundings (their hearts filled in, so that one LV remains); that frame at another pixel
size; 512 x 512.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rescale_pair(image, labels, factor_y, factor_x):
    """Image and labels (Z, Y, X) at another pixel size: the image smoothed and resampled (scikit-image), the labels
    by their classes' resampled indicator maps (no class lost to nearest-neighbour picking)."""
    from skimage.transform import resize

    z, h, w = image.shape
    shape = (z, max(1, round(h * factor_y)), max(1, round(w * factor_x)))
    img = resize(image, shape, order=1, anti_aliasing=min(factor_y, factor_x) < 1, preserve_range=True)
    onehot = np.stack([resize((labels == k).astype(np.float32), shape, order=1, anti_aliasing=False)
                       for k in range(5)])
    return img.astype(np.float32), onehot.argmax(0).astype(np.uint8)


def frame(image, labels, size=256, offset=None, fill=None):
    """The crop inside a ``size`` x ``size`` frame of ``fill`` (the image's minimum), at ``offset`` (centred)."""
    z, h, w = image.shape
    oy, ox = offset if offset is not None else ((size - h) // 2, (size - w) // 2)
    img = np.full((z, size, size), image.min() if fill is None else fill, np.float32)
    lab = np.zeros((z, size, size), np.uint8)
    img[:, oy:oy + h, ox:ox + w] = image
    lab[:, oy:oy + h, ox:ox + w] = labels
    return img, lab


def heartless(image, labels, grain: bool = False):
    """A case's crop with its LV (cavity and wall, dilated) filled from the surroundings by normalised Gaussian
    convolution, plus noise: surroundings without a heart. The noise is white, 0.3 of the surroundings' spread, and
    where the hole's middle lies far from every kept pixel the fill falls towards 0: a bright noisy disc, dark in the
    middle. ``grain``: the fill from the narrowest of 10, 20 and 40 px that reaches each pixel, and the noise the
    crop's own grain (`data.grain`: its fine residual's spectrum and spread): a smooth, quieter blob."""
    from scipy import ndimage

    from napari_lvseg.data.grain import residual, robust_spread, surrogate

    rng = np.random.default_rng(0)
    out = image.astype(np.float32).copy()
    for k in range(len(out)):
        hole = ndimage.binary_dilation(labels[k] > 0, iterations=8) if labels[k].any() else np.zeros_like(labels[k],
                                                                                                           bool)
        if not hole.any():
            continue
        keep = (~hole).astype(np.float32)

        def smoothed(sigma, floor):   # normalised convolution over the kept pixels, and the kept pixels' weight
            den = ndimage.gaussian_filter(keep, sigma)
            return ndimage.gaussian_filter(out[k] * keep, sigma) / np.maximum(den, floor), den

        if not grain:
            fill = smoothed(10, 1e-3)[0]
            noise = rng.normal(0, float(np.std(out[k][~hole])) * 0.3, out[k].shape)
        else:
            fill, left = np.zeros(out[k].shape), hole.copy()
            for sigma in (10, 20, 40):
                level, den = smoothed(sigma, 1e-6)
                reached = left & (den > 0.05) if sigma < 40 else left
                fill[reached] = level[reached]
                left &= ~reached
            fine = residual(out[k])
            noise = surrogate(fine, ~hole, rng)
            noise *= robust_spread(fine[~hole]) / max(robust_spread(residual(noise)[~hole]), 1e-9)
        out[k][hole] = (fill + noise)[hole]
    return out


def in_surroundings(image, labels, fills, offset):
    """The crop pasted at ``offset`` into a 256 x 256 mosaic of four other cases' `heartless` crops (``fills``),
    feathered at its border so that no seam marks it."""
    z, h, w = image.shape
    mosaic = np.zeros((z, 256, 256), np.float32)
    for q, filled in enumerate(fills[:4]):
        r, c = divmod(q, 2)
        for k in range(z):
            mosaic[k, r * 128:(r + 1) * 128, c * 128:(c + 1) * 128] = filled[k % len(filled)]
    yy, xx = np.mgrid[:h, :w]
    edge = np.minimum.reduce([yy, xx, h - 1 - yy, w - 1 - xx]).astype(np.float32)
    alpha = np.clip(edge / 8.0, 0, 1)
    oy, ox = offset
    mosaic[:, oy:oy + h, ox:ox + w] = alpha * image + (1 - alpha) * mosaic[:, oy:oy + h, ox:ox + w]
    lab = np.zeros((z, 256, 256), np.uint8)
    lab[:, oy:oy + h, ox:ox + w] = labels
    return mosaic, lab


CORNERS = ("top left", "bottom right")   # where the coil sits: the field is brightest near it


def shading(image, strength: float = 1.1, corner: str = CORNERS[0]):
    """A receive coil's shading: the image times a smooth field, brightest near one corner; over the central half of
    a 128-px crop (the heart) it varies 2.5x at ``strength`` 1.1 (0.45 to 1.55 over the crop), 1.7x at 0.45.
    ``corner`` "bottom right": the same field mirrored."""
    z, h, w = image.shape
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    field = 0.45 + strength * np.exp(-((yy - 0.1) ** 2 + (xx - 0.2) ** 2) / 0.35)
    if corner == "bottom right":
        field = field[::-1, ::-1]
    return (image * field[None]).astype(np.float32)


def variants(cases, corner: str = CORNERS[0]):
    """name -> function (index, image, labels) -> (image, labels); ``corner``: where the shading variants' coil sits."""
    fills = {}   # each case's heartless crop, made once for every variant that uses it

    def others(i, grain=False):
        indices = [(i + k) % len(cases) for k in range(1, 5)]
        for j in indices:
            if (j, grain) not in fills:
                fills[j, grain] = heartless(*cases[j][1:], grain=grain)
        return [fills[j, grain] for j in indices]

    def offset(i):
        return [(10, 118), (118, 10), (100, 120), (20, 30)][i % 4]

    return {
        "as they are (128-px crops)": lambda i, im, lb: (im, lb),
        "intensities in other units (x0.2 + 50)": lambda i, im, lb: (im * 0.2 + 50, lb),
        "gamma 0.7": lambda i, im, lb: (im.min() + (im.max() - im.min())
                                        * ((im - im.min()) / (im.max() - im.min())) ** 0.7, lb),
        "Gaussian noise 5 % of range": lambda i, im, lb: (
            im + np.random.default_rng(i).normal(0, 0.05 * (im.max() - im.min()), im.shape).astype(np.float32), lb),
        "a receive coil's shading, up to 1.7x across the heart": lambda i, im, lb: (shading(im, 0.45, corner),
                                                                                      lb),
        "a receive coil's shading, up to 2.5x across the heart": lambda i, im, lb: (shading(im, 1.1, corner), lb),
        "rotated 90 degrees": lambda i, im, lb: (np.rot90(im, 1, (1, 2)).copy(), np.rot90(lb, 1, (1, 2)).copy()),
        "pixels 1.67x larger (image scaled to 0.6)": lambda i, im, lb: rescale_pair(im, lb, 0.6, 0.6),
        "pixels 1.33x larger (image scaled to 0.75)": lambda i, im, lb: rescale_pair(im, lb, 0.75, 0.75),
        "pixels 1.5x smaller (image scaled to 1.5)": lambda i, im, lb: rescale_pair(im, lb, 1.5, 1.5),
        "pixels 1.7x smaller (image scaled to 1.7)": lambda i, im, lb: rescale_pair(im, lb, 1.7, 1.7),
        "anisotropic pixels (scaled 0.8 x 1.1)": lambda i, im, lb: rescale_pair(im, lb, 0.8, 1.1),
        "wider field of view (the crop inside a 256 x 256 frame)": lambda i, im, lb: frame(im, lb),
        "off-centre in other cases' surroundings (256 x 256)": lambda i, im, lb: in_surroundings(im, lb, others(i),
                                                                                                   offset(i)),
        "surroundings, pixels 1.5x smaller (384 x 384)": lambda i, im, lb: rescale_pair(
            *in_surroundings(im, lb, others(i), offset(i)), 1.5, 1.5),
        "surroundings, pixels 1.33x larger (192 x 192)": lambda i, im, lb: rescale_pair(
            *in_surroundings(im, lb, others(i), offset(i)), 0.75, 0.75),
        "other cases' surroundings (256 x 256) under a coil's shading (strength 0.45)": lambda i, im, lb: (
            lambda img, lab: (shading(img, 0.45, corner), lab))(*in_surroundings(im, lb, others(i), offset(i))),
        "other cases' surroundings (256 x 256) under a coil's shading (strength 1.1)": lambda i, im, lb: (
            lambda img, lab: (shading(img, 1.1, corner), lab))(*in_surroundings(im, lb, others(i), offset(i))),
        "512 x 512 field of view, pixels 2x smaller": lambda i, im, lb: rescale_pair(
            *in_surroundings(im, lb, others(i), offset(i)), 2.0, 2.0),
        "other cases' surroundings, their hearts filled smooth (256 x 256)": lambda i, im, lb: in_surroundings(
            im, lb, others(i, grain=True), offset(i)),
        "other cases' surroundings, their hearts filled smooth, pixels 1.33x larger (192 x 192)": lambda i, im, lb:
        rescale_pair(
            *in_surroundings(im, lb, others(i, grain=True), offset(i)), 0.75, 0.75),
    }


def score(pairs):
    """(pooled mean, per-case mean) Dice over the four classes, the protocols of training/RESULTS.md."""
    from napari_lvseg.evaluation import evaluate_cases

    report = evaluate_cases(pairs, emidec=False, bootstrap=0)
    return report.pooled["mean"], report.per_case["mean"]


def field_of_view_speed(cases, model, repeats: int = 3):
    """Seconds (best of ``repeats``) of `segment` on a 10-slice crop (the baseline), the same inside a 256 x 256
    frame, and a 512 x 512 x 20 field of view (the crop in other cases' surroundings, pixels 2x smaller)."""
    from napari_lvseg.inference import segment

    _, image, labels = cases[0]
    ten = np.resize(image, (10,) + image.shape[1:])
    ten_labels = np.resize(labels, (10,) + labels.shape[1:])
    others = [heartless(*c[1:]) for c in cases[1:5]]
    inputs = {"10-slice 128 x 128 crop (baseline)": ten,
              "the crop inside a 256 x 256 frame": frame(ten, ten_labels)[0],
              "512 x 512 x 20 field of view": rescale_pair(*in_surroundings(
                  np.concatenate([ten, ten]), np.concatenate([ten_labels, ten_labels]), others, (60, 100)), 2, 2)[0]}
    segment(ten, model)
    out = {}
    for name, img in inputs.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            segment(img, model)
            times.append(time.perf_counter() - start)
        out[name] = min(times)
    return out


def fold_groups(configs, folds: int, data, last: bool = True, post_from=None, seed=None) -> list:
    """``[(model, cases)]``, one per fold of a cross-validation: each fold's own network (its last epoch unless
    ``last`` is False) with the cases it never trained on, so that every case is scored by a model that did not see
    it. ``configs``: one config, or several (comma-separated), whose fold networks are averaged per fold (an
    ensemble that is still out of fold). ``post_from``: a model whose card's post-processing every fold network
    applies (the shipped ensemble's)."""
    sys.path.insert(0, str(ROOT))
    from napari_lvseg.models.ensemble import combine
    from napari_lvseg.models.registry import load_model, model_card_only
    from training import cross_validate as cv

    post = model_card_only(post_from, task="segmentation").extra.get("postprocess") if post_from else None
    groups = []
    for k in range(1, folds + 1):
        states = [cv.fold_state(config, folds, k, seed) for config in configs.split(",")]
        unfinished = [str(run) for run, _, finished in states if not finished]
        if unfinished:
            print(f"fold {k} left out: not finished ({', '.join(unfinished)})")
            continue
        runs = [cv.last_epoch_model(run) if last else run for run, _, _ in states]
        model = load_model(runs[0], task="segmentation") if len(runs) == 1 else combine(runs, f"fold {k} ensemble")
        if post is not None:
            model[1].extra["postprocess"] = post
        names = json.loads(cv.fold_path(folds, k).read_text())["val"]
        groups.append((model, read_cases(data, set(names))))
    return groups


def read_cases(data, wanted) -> list:
    """``[(name, image, labels)]`` of the EMIDEC cases named in ``wanted``, in folder order."""
    from napari_lvseg.io.emidec import find_cases, read_case

    cases = []
    for case in find_cases(data):
        if case.name in wanted:
            image, labels = read_case(case)
            cases.append((case.name, image.data.astype(np.float32), labels.data.astype(np.uint8)))
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emidec-lge-128"))
    parser.add_argument("--split", default=str(ROOT / "training" / "split.json"))
    parser.add_argument("--cases", default="val,test", help="the split's parts to use (comma-separated)")
    parser.add_argument("--model", default=None, help="model name or folder (default: the bundled default)")
    parser.add_argument("--out-of-fold", metavar="CONFIG", help="a cross-validated config: every case of every fold, "
                        "each segmented by its fold's network (last epoch); several, comma-separated: their fold "
                        "networks averaged per fold")
    parser.add_argument("--tta", action="store_true", help="segment with test-time augmentation (as `--tta`)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, help="with --out-of-fold: the fold runs of this seed")
    parser.add_argument("--post-from", metavar="MODEL", help="with --out-of-fold: the post-processing of this "
                        "model's card (default: the bundled default's)")
    parser.add_argument("--report", help="the unchanged input's full report (three protocols, 95 %% intervals), JSON")
    parser.add_argument("--only", default="", help="comma-separated substrings of the variants to run")
    parser.add_argument("--json", default="", help="write the rows here too")
    parser.add_argument("--speed", action="store_true", help="only the field-of-view timings")
    parser.add_argument("--shading-corner", choices=CORNERS, default=CORNERS[0],
                        help="where the shading variants' coil sits (its field brightest)")
    args = parser.parse_args(argv)

    from napari_lvseg.inference import segment
    from napari_lvseg.models.registry import load_model

    if args.out_of_fold:
        groups = fold_groups(args.out_of_fold, args.folds, args.data, post_from=args.post_from or "lvseg-seg",
                             seed=args.seed)
        print(f"{sum(len(c) for _, c in groups)} cases out of fold, {len(groups)} of {args.folds} fold networks of "
              f"{args.out_of_fold}, post-processing {groups[0][0][1].extra.get('postprocess')}")
    else:
        split = json.loads(Path(args.split).read_text())
        model = load_model(args.model, task="segmentation")
        groups = [(model, read_cases(args.data, {name for part in args.cases.split(",") for name in split[part]}))]
        print(f"{len(groups[0][1])} cases, model {model[1].name}")
    model, cases = groups[0]
    segment(cases[0][1], model)   # warm-up
    if args.speed:
        times = field_of_view_speed(cases, model)
        base = next(iter(times.values()))
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.2f} s | {seconds / base:.2f} |")
        return
    # per group: surroundings from its own cases
    made = [variants(group_cases, args.shading_corner) for _, group_cases in groups]
    rows, base = [], None
    for name in made[0]:
        chosen = not args.only or any(s.strip() and s.strip() in name for s in args.only.split(","))
        if not chosen and (base is not None or not name.startswith("as they are")):   # the baseline always runs
            continue
        pairs, seconds, zooms = [], 0.0, []
        for (group_model, group_cases), group_variants in zip(groups, made):
            for i, (case_name, image, labels) in enumerate(group_cases):
                img, lab = group_variants[name](i, image, labels)
                start = time.perf_counter()
                result = segment(img, group_model, tta=args.tta)
                seconds += time.perf_counter() - start
                zooms.append(result.info.get("zoom", 1.0))
                pairs.append((case_name, result.labels, lab))
        pooled, per_case = score([(labels, truth) for _, labels, truth in pairs])
        if base is None and args.report:
            from napari_lvseg.evaluation import evaluate_cases

            report = evaluate_cases({n: (labels, truth) for n, labels, truth in pairs},
                                    meta={"command": " ".join(["bench_robustness.py"] + (argv or sys.argv[1:]))})
            report.to_json(args.report)
            print(report.tables())
        base = base or (pooled, per_case, seconds)
        row = {"variant": name, "pooled": round(pooled, 3), "per_case": round(per_case, 3),
               "pooled_ratio": round(pooled / base[0], 3), "per_case_ratio": round(per_case / base[1], 3),
               "seconds": round(seconds, 1), "time_ratio": round(seconds / base[2], 2),
               "median_zoom": round(float(np.median(zooms)), 2)}
        rows.append(row)
        print(f"| {name} | {row['pooled']:.3f} | {row['pooled_ratio']:.3f} | {row['per_case']:.3f} | "
              f"{row['per_case_ratio']:.3f} | {row['seconds']:.1f} | {row['time_ratio']:.2f} | {row['median_zoom']} |",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
