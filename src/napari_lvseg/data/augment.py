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
STRENGTHS = ("none", "light", "default", "scanner")


def build_augmentation(strength: str = "default"):
    """MONAI Compose on {'image': (1,H,W) float, 'label': (1,H,W)}; ``strength`` one of `STRENGTHS`."""
    if strength == "none":
        return None
    from monai import transforms as T
    from monai.data import set_track_meta

    # MetaTensor bookkeeping triples the cost of small 2-D transforms and we never read the metadata.
    set_track_meta(False)

    keys = ("image", "label")
    light = strength == "light"
    spatial = [] if strength != "scanner" else [
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
    shading = (0.5, SCANNER_SHADING) if strength == "scanner" else (0.3, 0.3)
    intensity = [
        T.RandBiasFieldd("image", prob=shading[0], coeff_range=(0.0, shading[1])),
        T.RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
        T.RandScaleIntensityd("image", prob=0.3, factors=0.15),
        T.RandGaussianNoised("image", prob=0.3, std=0.05),
        T.RandGaussianSmoothd("image", prob=0.15, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0)),
    ]
    compose = T.Compose(spatial + ([] if light else intensity))
    # One RandomState shared by every transform, re-seeded per sample: MONAI's own set_random_state
    # builds a new RandomState per transform per call, which was a third of the augmentation time.
    shared = np.random.RandomState(0)
    for transform in compose.transforms:
        transform.set_random_state(state=shared)
    compose.R = shared
    return compose


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
