"""How real do synthetic LGE images look? Three honest measures, none of them a generator's own loss.

1. **Two-sample test.** A small CNN learns to tell real LV crops from synthetic ones (crops around the LV, the
   same masks rendered by the generator), on the pairs of one set of cases, and is scored on the pairs of other
   cases. Held-out accuracy 0.5 means indistinguishable to this classifier; the 95 % interval is the exact
   (Clopper-Pearson) binomial one over the held-out crops.
2. **LGE physics checks per case.** Mean intensity (each slice normalised, percentiles 1/99 -> 0/1, then pooled over
   the case's slices) of infarct > normal myocardium, no-reflow < infarct, blood pool > normal myocardium. A case
   passes when every check that applies to it passes; the rate is reported over the infarct cases.
3. **Feature distance (our encoder).** What `synthesis.evaluate_synthesis` calls ``fid``/``kid`` is a Fréchet /
   kernel distance between features of *our own* segmentation encoder (or a fixed random conv net), not of
   Inception: comparable only with itself, never with published FID figures. `feature_distance_names` gives a
   result its new names; `result_value` reads old result JSON (``fid``, ``kid``) and new alike.

Images are checked, crops made and the classifier trained here; `measure_realism` renders the synthetic images
with the public `synthesis.synthesize` (in the real image's own surroundings where the generator takes a context;
`synthesis_edits.render`).
"""

from __future__ import annotations

import time

import numpy as np

from .data.normalize import normalize_slices
from .errors import LvsegError
from .labels import BACKGROUND, CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW, invalid_values

FEATURE_DISTANCE = "feature distance (our encoder)"
KERNEL_DISTANCE = "kernel feature distance (our encoder)"
# old result key -> new one (results written before the rename keep the old keys; `result_value` reads both)
RENAMED = {"fid": "feature_distance", "kid": "kernel_distance", "kid_std": "kernel_distance_std"}
CHECKS = ("infarct_brighter_than_myocardium", "no_reflow_darker_than_infarct", "blood_pool_brighter_than_myocardium")


# -- feature distance: names --------------------------------------------------------------------------------------
def feature_distance_names(result: dict) -> dict:
    """A copy of an `evaluate_synthesis` result with ``fid``/``kid``/``kid_std`` under their new names
    (``feature_distance``, ``kernel_distance``, ``kernel_distance_std``) and the distance's name beside them."""
    out = {RENAMED.get(k, k): v for k, v in result.items()}
    if "feature_distance" in out:
        out["feature_distance_name"] = FEATURE_DISTANCE
    return out


def result_value(result: dict, key: str):
    """``result[key]`` where ``key`` is a new name (``feature_distance`` ...) read from new or old result JSON."""
    if key in result:
        return result[key]
    old = {new: old for old, new in RENAMED.items()}.get(key)
    return result.get(old) if old else None


# -- binomial interval ---------------------------------------------------------------------------------------------
def binomial_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion."""
    from scipy.stats import beta

    if n < 1 or not 0 <= successes <= n:
        raise LvsegError(f"a binomial interval needs 0 <= successes <= n and n >= 1, got {successes} of {n}")
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high


# -- crops ---------------------------------------------------------------------------------------------------------
def _check_pair(images, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 2:
        images, labels = images[None], labels[None]
    if images.ndim != 3 or images.shape != labels.shape:
        raise LvsegError(f"images {images.shape} and masks {labels.shape} must be slices (N, Y, X) of one shape",
                         name)
    if not np.isfinite(images).all():
        raise LvsegError("images contain NaN or Inf", name)
    bad = invalid_values(labels)
    if bad:
        raise LvsegError(f"mask values must be classes 0..4; found {bad[:5]}", name)
    return images.astype(np.float32), labels.astype(np.uint8)


def lv_crops(images, labels, size: int = 64, name: str = "images", clip: bool = True,
             lv_margin: int | None = None) -> np.ndarray:
    """(N, size, size) crops centred on each slice's LV (its labels' centroid; the image centre where a slice has no
    LV), each slice first normalised over the whole slice (percentiles 1/99 -> 0/1), real and synthetic alike, and
    with ``clip`` clipped to [0, 1]: the EMIDEC crops were clipped to a global intensity range before cropping, so
    some real slices hold flat plateaus at their extremes, a cue that says nothing about how a heart looks.
    With ``lv_margin`` only the LV (cavity + wall) and that many pixels around it are kept, the rest set to 0: the
    heart alone, without the surroundings. Outside the image: 0."""
    from .data.normalize import labels_center, to_grid

    images, labels = _check_pair(images, labels, name)
    if size < 8:
        raise LvsegError(f"crop size must be at least 8 px, got {size}", name)
    normalised = normalize_slices(images)
    if clip:
        normalised = np.clip(normalised, 0.0, 1.0)
    if lv_margin is not None:
        from scipy import ndimage as ndi

        for z, mask in enumerate(labels):
            lv = mask != BACKGROUND
            keep = ndi.binary_dilation(lv, iterations=int(lv_margin)) if lv_margin > 0 else lv
            normalised[z][~keep] = 0.0
    out = np.empty((len(images), size, size), np.float32)
    for i, (image, mask) in enumerate(zip(normalised, labels)):
        out[i] = to_grid(image, size, labels_center(mask))[0]
    return out


# -- the classifier ------------------------------------------------------------------------------------------------
def _augment(x, generator):
    """The same random flips and quarter turns for real and synthetic crops (no class can be told by them)."""
    import torch

    k = int(torch.randint(4, (1,), generator=generator))
    x = torch.rot90(x, k, (2, 3))
    if bool(torch.randint(2, (1,), generator=generator)):
        x = torch.flip(x, (3,))
    return x


def train_classifier(real, synthetic, epochs: int = 30, batch_size: int = 32, lr: float = 1e-3, width: int = 16,
                     seed: int = 0):
    """A small CNN (3 conv blocks ``width``-2x-4x, global pool, linear) trained to output 1 for real crops and 0 for
    synthetic ones (N, S, S each). Deterministic for a seed on one device and thread count."""
    import torch

    from .models.pix2pix import crop_classifier

    real, synthetic = np.asarray(real, np.float32), np.asarray(synthetic, np.float32)
    if real.ndim != 3 or synthetic.ndim != 3 or real.shape[1:] != synthetic.shape[1:]:
        raise LvsegError(f"crops must be (N, S, S) of one size, got {real.shape} and {synthetic.shape}")
    if len(real) < 2 or len(synthetic) < 2:
        raise LvsegError(f"the classifier needs at least 2 real and 2 synthetic crops, got {len(real)} and "
                         f"{len(synthetic)}")
    x = torch.from_numpy(np.concatenate([real, synthetic])[:, None])
    y = torch.cat([torch.ones(len(real)), torch.zeros(len(synthetic))])
    # each class weighs half of the loss, however many crops it has
    weight = torch.cat([torch.full((len(real),), 0.5 / len(real)), torch.full((len(synthetic),), 0.5 / len(synthetic))])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = crop_classifier(width)
        generator = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
        net.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2:   # batch norm needs two
                    continue
                logits = net(_augment(x[idx], generator))[:, 0]
                loss = (loss_fn(logits, y[idx]) * weight[idx]).sum() / weight[idx].sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    return net.eval()


def real_probability(net, crops, batch_size: int = 128) -> np.ndarray:
    """The classifier's probability that each crop (N, S, S) is real."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[start:start + batch_size], np.float32))[:, None]
            out.append(torch.sigmoid(net(x)[:, 0]).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def best_threshold(p_real, p_synthetic) -> float:
    """The probability threshold that calls the most of these (training) crops right, each class weighing half:
    chosen on the training crops, so a classifier whose scores rank well but sit off 0.5 is not underrated."""
    scores = np.unique(np.concatenate([p_real, p_synthetic]))
    candidates = np.concatenate([[0.0], (scores[:-1] + scores[1:]) / 2, [1.0]]) if len(scores) > 1 else [0.5]
    best = max(candidates, key=lambda t: ((p_real > t).mean() + (p_synthetic <= t).mean(), -abs(t - 0.5)))
    return float(best)


def two_sample_test(train_real, train_synthetic, test_real, test_synthetic, epochs: int = 30, seed: int = 0,
                    width: int = 16, batch_size: int = 32) -> dict:
    """Train the classifier on the first two crop sets, score it on the other two.

    ``accuracy``: fraction of held-out crops called right, with its exact 95 % interval; 0.5 = indistinguishable.
    The threshold on the classifier's probability is the one that calls the most training crops right
    (`best_threshold`). Where the held-out sets are pairs (the same masks, same order), ``paired_accuracy`` is the
    fraction of pairs whose real crop gets the higher probability of being real (a two-alternative forced choice).
    """
    t0 = time.time()
    net = train_classifier(train_real, train_synthetic, epochs=epochs, seed=seed, width=width, batch_size=batch_size)
    t_real = real_probability(net, np.asarray(train_real))
    t_synthetic = real_probability(net, np.asarray(train_synthetic))
    threshold = best_threshold(t_real, t_synthetic)
    p_real = real_probability(net, np.asarray(test_real))
    p_synthetic = real_probability(net, np.asarray(test_synthetic))
    if not len(p_real) or not len(p_synthetic):
        raise LvsegError("the two-sample test needs held-out real and synthetic crops")
    correct = int((p_real > threshold).sum() + (p_synthetic <= threshold).sum())
    n = len(p_real) + len(p_synthetic)
    low, high = binomial_interval(correct, n)
    train_correct = int((t_real > threshold).sum() + (t_synthetic <= threshold).sum())
    out = {"accuracy": correct / n, "correct": correct, "n": n, "ci95": [low, high], "threshold": threshold,
           "real_called_real": float((p_real > threshold).mean()),
           "synthetic_called_real": float((p_synthetic > threshold).mean()),
           "train_accuracy": train_correct / (len(t_real) + len(t_synthetic)),
           "n_train": len(t_real) + len(t_synthetic), "epochs": epochs, "seed": seed, "width": width,
           "seconds": round(time.time() - t0, 1)}
    if len(p_real) == len(p_synthetic):
        wins = int((p_real > p_synthetic).sum())
        out["paired_accuracy"] = wins / len(p_real)
        out["paired_ci95"] = list(binomial_interval(wins, len(p_real)))
    return out


# -- LGE physics ---------------------------------------------------------------------------------------------------
def physics_checks(images, labels, name: str = "case") -> dict:
    """The LGE contrast checks of one case (slices (Z, Y, X) or one slice): each slice normalised (percentiles 1/99
    -> 0/1), class means pooled over the case. A check is None where a class it needs is absent; ``passes`` is True
    when every check that applies passes (None when none applies)."""
    images, labels = _check_pair(images, labels, name)
    normalised = normalize_slices(images)
    means = {}
    for key, value in (("background", BACKGROUND), ("blood_pool", CAVITY), ("myocardium", MYOCARDIUM),
                       ("infarct", INFARCT), ("no_reflow", NO_REFLOW)):
        inside = labels == value
        means[key] = float(normalised[inside].mean()) if inside.any() else None

    def above(a, b):
        return None if means[a] is None or means[b] is None else bool(means[a] > means[b])

    checks = {"infarct_brighter_than_myocardium": above("infarct", "myocardium"),
              "no_reflow_darker_than_infarct": above("infarct", "no_reflow"),
              "blood_pool_brighter_than_myocardium": above("blood_pool", "myocardium")}
    applied = [v for v in checks.values() if v is not None]
    return {**checks, "passes": all(applied) if applied else None, "means": means,
            "has_infarct": bool(np.isin(labels, (INFARCT, NO_REFLOW)).any())}


def physics_summary(rows: list) -> dict:
    """Pass rates over the infarct cases of ``rows`` (`physics_checks` results): all checks, and each check over the
    infarct cases where it applies."""
    infarct = [r for r in rows if r["has_infarct"]]
    out = {"n_cases": len(rows), "n_infarct_cases": len(infarct)}
    passed = [r for r in infarct if r["passes"]]
    out["pass_rate"] = len(passed) / len(infarct) if infarct else None
    out["passed"] = len(passed)
    for check in CHECKS:
        values = [r[check] for r in infarct if r[check] is not None]
        out[check] = {"rate": (sum(values) / len(values)) if values else None, "passed": int(sum(values)),
                      "n": len(values)}
    return out


# -- the whole measurement -----------------------------------------------------------------------------------------
def render_cases(cases: list, model, seed: int = 0, on_case=None, masks=None, fill: str = "lv") -> tuple[list, dict]:
    """Each case's masks rendered by the generator (`synthesis_edits.Renderer`: in the real image's surroundings where
    the generator takes a context). ``masks``: one mask per case to render instead of its own (an edit of it);
    ``fill`` as `synthesis.synthesize`'s. Returns ([(case, synthetic (Z, Y, X), labels)], how: {'context': bool,
    ...})."""
    from .synthesis import load_synthesis_model
    from .synthesis_edits import Renderer

    renderer = Renderer(load_synthesis_model(model), fill=fill)
    out = []
    for k, (case, image, labels) in enumerate(cases):
        mask = labels if masks is None else masks[k]
        out.append((case, renderer(mask, image, seed, labels), mask))
        if on_case is not None:
            on_case(k + 1, len(cases))
    return out, renderer.describe()


def edited_masks(cases: list, seed: int = 0) -> list:
    """One simulator edit per case (`data.edits`; the kind drawn per case among those that change its mask, the
    cross-subject fusion left out): [(case, image, labels, edited, kind)]; a case that no edit changes is left out."""
    from .data.edits import EDITS, FusionRejected, applicable, edit_mask

    kinds = [k for k in EDITS if k != "fusion"]
    out = []
    for i, (case, image, labels) in enumerate(cases):
        rng = np.random.default_rng([seed, i])
        for kind in rng.permutation(kinds):
            if not applicable(labels, kind):
                continue
            try:
                edited, _ = edit_mask(labels, kind, rng)
            except FusionRejected:
                continue
            if (edited != labels).any():
                out.append((case, image, labels, edited, str(kind)))
                break
    return out


def edit_fidelity(real: list, synthetic: list) -> dict:
    """Do the edits show? For each class an edit turned pixels into (myocardium, infarct, no-reflow): the mean
    intensity of those pixels in the synthetic images (each slice normalised as in `physics_checks`), against the
    class's own mean in the real images; both the mean of the cases' means. ``real``: [(case, image, labels)],
    ``synthetic``: [(case, image, edited labels)] in the same order."""
    out = {}
    for key, value in (("myocardium", MYOCARDIUM), ("infarct", INFARCT), ("no_reflow", NO_REFLOW)):
        made, own = [], []
        for (_, image, labels), (_, fake, edited) in zip(real, synthetic):
            turned = (edited == value) & (labels != value)
            if turned.sum() >= 20:   # a handful of pixels says little
                made.append(float(normalize_slices(fake)[turned].mean()))
            if (labels == value).any():
                own.append(float(normalize_slices(image)[labels == value].mean()))
        out[key] = {"changed_pixels": round(float(np.mean(made)), 3) if made else None, "n_cases": len(made),
                    "real_class": round(float(np.mean(own)), 3) if own else None}
    return out


def measure_realism(model, data, train_cases, test_cases, crop: int = 64, seed: int = 0, epochs: int = 30,
                    width: int = 16, progress=None, clip: bool = True, lv_margin: int | None = None,
                    edits: bool = False, fill: str = "lv") -> dict:
    """The two-sample test (classifier trained on ``train_cases``' real/synthetic pairs, scored on ``test_cases``')
    and the physics checks (real and synthetic, per case, held-out and training cases) of one generator on the real
    masks of ``data``. ``clip`` and ``lv_margin`` as in `lv_crops`. ``edits``: each case's mask edited once
    (`edited_masks`) before it is rendered (with ``fill``), and the classifier sees only the slices the edit changed,
    real and synthetic. ``progress(text)`` hears what it is doing."""
    from .synthesis import load_synthesis_model
    from .synthesis_edits import read_cases

    say = progress or (lambda text: None)
    overlap = sorted(set(train_cases) & set(test_cases))
    if overlap:
        raise LvsegError(f"training and held-out cases overlap: {', '.join(overlap[:5])}")
    t0 = time.time()
    net, card = load_synthesis_model(model)
    sets, kinds, judged = {}, {}, {}   # judged: per case, the slices the classifier sees
    for part, names in (("train", train_cases), ("test", test_cases)):
        real = read_cases(data, names)
        masks = None
        if edits:
            rows = edited_masks(real, seed)
            real = [(c, image, labels) for c, image, labels, _, _ in rows]
            masks = [edited for _, _, _, edited, _ in rows]
            kinds[part] = {c: kind for c, _, _, _, kind in rows}
        judged[part] = [[z for z in range(len(lab)) if masks is None or (masks[i][z] != lab[z]).any()]
                        for i, (_, _, lab) in enumerate(real)]
        say(f"rendering {sum(len(lab) for _, _, lab in real)} slices of {len(real)} {part} cases"
            + (" (each mask edited once)" if edits else ""))
        synthetic, how = render_cases(real, (net, card), seed, masks=masks, fill=fill)
        sets[part] = (real, synthetic)

    def crops(rows, part):
        return np.concatenate([lv_crops(image[z], labels[z], crop, case, clip, lv_margin)
                               for (case, image, labels), z in zip(rows, judged[part])])

    say("training the real-vs-synthetic classifier")
    test = two_sample_test(crops(sets["train"][0], "train"), crops(sets["train"][1], "train"),
                           crops(sets["test"][0], "test"), crops(sets["test"][1], "test"), epochs=epochs, seed=seed,
                           width=width)
    physics = {}
    for part, (real, synthetic) in sets.items():
        rows = {"real": [physics_checks(i, lab, c) for c, i, lab in real],
                "synthetic": [physics_checks(i, lab, c) for c, i, lab in synthetic]}
        physics[part] = {kind: {"summary": physics_summary(r),
                                "cases": {c: r_ for (c, _, _), r_ in zip(real, r)}} for kind, r in rows.items()}
    return {"model": card.name, "data": str(data), "rendering": how, "seed": seed, "crop": crop, "clip": clip,
            "lv_margin": lv_margin, "edits": kinds if edits else None,
            "train_cases": list(train_cases), "test_cases": list(test_cases),
            "n_train_slices": sum(map(len, judged["train"])), "n_test_slices": sum(map(len, judged["test"])),
            "two_sample_test": test, "physics": physics,
            "edit_fidelity": {part: edit_fidelity(*sets[part]) for part in sets} if edits else None,
            "seconds": round(time.time() - t0, 1)}


def format_interval(result: dict) -> str:
    """'0.62 (95 % CI 0.55-0.68, 147/236)' of a `two_sample_test` result."""
    low, high = result["ci95"]
    return f"{result['accuracy']:.3f} (95 % CI {low:.3f}-{high:.3f}, {result['correct']}/{result['n']})"
