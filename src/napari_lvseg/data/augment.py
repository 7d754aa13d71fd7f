"""Joint image/mask augmentation with MONAI transforms.

Every sample is augmented with its own seed (run seed, epoch, sample index), so an epoch's
augmentations do not depend on what ran before: a resumed run sees exactly the samples it would have.
"""

from __future__ import annotations

import math

import numpy as np

# "scanner": the default plus pixel sizes from 0.6x to 1.7x the data's (isotropic; RandAffine's independent per-axis
# scale of +-15 % adds mild anisotropy), the range real scanners give, and a receive coil's shading up to about 2.5x
# across the heart (the default's bias field reaches about 1.3x; an uncorrected surface coil's 2.5x takes the bundled
# model from 0.71 to 0.48 pooled Dice: training/RESULTS.md, "Robustness to another scanner's images"). Segmenting
# already zooms an LV outside the training range into it (locate.zoom_for); this makes the network itself less
# dependent on that. Not the default until cross-validation chooses it (training/RESULTS.md, "Still to do").
SCANNER_ZOOM = (0.6, 1.7)
SCANNER_SHADING = 0.9   # RandBiasField's largest coefficient: over the central half, 1.55x / 1.9x / 2.46x (10/50/90 %)
# "distractors": "scanner" plus, in half the samples, an LV-sized smooth bright blob pasted beside the heart (labels
# background): in a whole field of view the network read such a blob (another heart filled in, in the robustness
# benchmark) as a blood pool ringed by wall, and the search followed it (training/RESULTS.md, "Why the surroundings at
# pixels 1.33x larger fall short").
DISTRACTOR_PROB = 0.5
# "lossless": flips and quarter turns only, every pixel value kept as it was. Any resampling smooths the grain (a
# bilinear turn at a random angle takes a real LV's 1-px residual to 0.88x), and a generator that learns from smoothed
# real slices learns to draw them smooth, which the realism test's classifier sees (a real LV blurred by 0.5 px is told
# apart 67 % of the time): training/RESULTS.md, "Synthesis trained on resampled slices".
STRENGTHS = ("none", "lossless", "light", "default", "scanner", "distractors")


def build_augmentation(strength: str = "default"):
    """MONAI Compose on {'image': (1,H,W) float, 'label': (1,H,W)}; ``strength`` one of `STRENGTHS`."""
    if strength == "none":
        return None
    from monai import transforms as T
    from monai.data import set_track_meta

    # MetaTensor bookkeeping triples the cost of small 2-D transforms and we never read the metadata.
    set_track_meta(False)

    keys = ("image", "label")
    if strength == "lossless":
        compose = T.Compose([T.RandFlipd(keys, prob=0.5, spatial_axis=0),
                             T.RandRotate90d(keys, prob=0.75, max_k=3, spatial_axes=(0, 1))])
        return _shared_state(compose)
    light = strength == "light"
    scanner = strength in ("scanner", "distractors")
    spatial = [] if not scanner else [
        T.RandZoomd(keys, prob=0.8, min_zoom=SCANNER_ZOOM[0], max_zoom=SCANNER_ZOOM[1], mode=("bilinear", "nearest"),
                    padding_mode="constant", keep_size=True),
    ]
    spatial += [
        T.RandFlipd(keys, prob=0.5, spatial_axis=0),
        T.RandAffined(
            keys, prob=0.9, rotate_range=(math.pi,), scale_range=((0.15, 0.15) if not light else (0.05, 0.05)),
            translate_range=(8, 8), mode=("bilinear", "nearest"), padding_mode="zeros",
        ),
    ]
    if not light:
        spatial.append(T.Rand2DElasticd(keys, prob=0.2, spacing=(24, 24), magnitude_range=(0.5, 1.5),
                                        mode=("bilinear", "nearest"), padding_mode="zeros"))
    if strength == "distractors":
        spatial.append(RandDistractord(prob=DISTRACTOR_PROB))
    shading = (0.5, SCANNER_SHADING) if scanner else (0.3, 0.3)
    intensity = [
        T.RandBiasFieldd("image", prob=shading[0], coeff_range=(0.0, shading[1])),
        T.RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
        T.RandScaleIntensityd("image", prob=0.3, factors=0.15),
        T.RandGaussianNoised("image", prob=0.3, std=0.05),
        T.RandGaussianSmoothd("image", prob=0.15, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
    ]
    return _shared_state(T.Compose(spatial + ([] if light else intensity)))


def _shared_state(compose):
    # One RandomState shared by every transform, re-seeded per sample: MONAI's own set_random_state
    # builds a new RandomState per transform per call, which was a third of the augmentation time.
    shared = np.random.RandomState(0)
    for transform in compose.transforms:
        transform.set_random_state(state=shared)
    compose.R = shared
    return compose


class RandDistractord:
    """With probability ``prob``, a smooth bright blob pasted into the image beside the LV, never over it: an
    ellipse whose axes are 0.7-1.4x the LV's equivalent diameter, at a brightness between the image's median and its
    99th percentile, with the image's own fine noise and a soft 1.5-px edge; the labels stay background there. Every
    channel (a slice and its neighbours) gets the same blob. Draws from the Compose's shared RandomState."""

    def __init__(self, prob: float = DISTRACTOR_PROB, tries: int = 10):
        self.prob, self.tries = prob, tries
        self.R = np.random.RandomState(0)

    def set_random_state(self, seed=None, state=None):
        self.R = state if state is not None else np.random.RandomState(seed)
        return self

    def __call__(self, data: dict) -> dict:
        from scipy import ndimage as ndi

        if self.R.rand() >= self.prob:
            return data
        image, label = np.asarray(data["image"], np.float32), np.asarray(data["label"])
        lv = label[0] > 0
        if not lv.any():
            return data
        h, w = lv.shape
        diameter = 2.0 * math.sqrt(lv.sum() / math.pi)
        keep_out = ndi.binary_dilation(lv, iterations=3)
        yy, xx = np.mgrid[:h, :w]
        for _ in range(self.tries):
            a, b = diameter * self.R.uniform(0.35, 0.7, 2)
            cy, cx = self.R.uniform(0, h), self.R.uniform(0, w)
            angle = self.R.uniform(0, math.pi)
            u = (yy - cy) * math.cos(angle) + (xx - cx) * math.sin(angle)
            v = -(yy - cy) * math.sin(angle) + (xx - cx) * math.cos(angle)
            blob = (u / a) ** 2 + (v / b) ** 2 <= 1.0
            if blob.sum() > 0.25 * lv.sum() and not (blob & keep_out).any():
                break
        else:
            return data
        weight = ndi.gaussian_filter(blob.astype(np.float32), 1.5) * ~keep_out
        out, brightness = image.copy(), self.R.uniform(50, 99)
        for c in range(len(out)):
            level = np.percentile(out[c], brightness)
            fine = out[c] - ndi.gaussian_filter(out[c], 1.0)
            noise = self.R.normal(0.0, 1.4826 * np.median(np.abs(fine)) + 1e-6, out[c].shape)
            out[c] = (1.0 - weight) * out[c] + weight * (level + noise)
        return {**data, "image": out}


def augment_sample(transform, image: np.ndarray, label: np.ndarray, seed) -> tuple[np.ndarray, np.ndarray]:
    """Augment one image (H, W) or (C, H, W) and its label (H, W) reproducibly from ``seed`` (an int or a
    sequence of ints). The channels of a (C, H, W) image (a slice and its neighbours) move together."""
    if transform is None:
        return image, label
    transform.R.seed(int(np.random.default_rng(seed).integers(0, 2**31 - 1)))
    channels = image if image.ndim == 3 else image[None]
    out = transform({"image": channels, "label": label[None].astype(np.float32)})
    img = np.asarray(out["image"], dtype=np.float32)
    img = img if image.ndim == 3 else img[0]
    lab = np.asarray(out["label"])[0]
    return img, np.rint(lab).astype(np.int64)
