"""The synthesis task of the training engine: Pix2Pix (label map -> LGE image) on real slices.

Intensities: each slice is normalised like segmentation (percentiles 1/99 -> 0/1, clipped to
[-0.5, 1.5]); that whole normalised range maps linearly onto the generator's tanh range [-1, 1]
(``to_tanh``), so nothing is clipped away (the bright infarct tail lies above 1). The model card
records this mapping and the raw intensity range of the training slices, which `synthesize` uses to
give its images an LGE-like scale.

Loss: the original pix2pix objective, BCE-with-logits adversarial loss on PatchGAN logits, plus
``l1_lambda`` x class-weighted L1. The weighted L1 is sum(w |G - x|) / sum(w) with w = l1_weights[label],
so it stays on the scale of a plain L1 (and pix2pix's lambda 100 keeps its meaning) while small rare
classes (infarct, no-reflow) weigh as much per pixel as the weights say.

Texture (``l1_blur``, ``noise_levels``, ``disc_layers``): an L1 on every pixel makes the generator draw the mean of
what a region could be, smooth where real LGE is grainy, and a classifier tells such images from real ones every
time (training/RESULTS.md, "Realism, measured"). With ``l1_blur`` the L1 reads both images blurred, so it holds the
shading and the class contrasts and leaves the pixel-scale texture to the critic; ``noise_levels`` gives the
generator per-pixel noise to draw that texture from; a critic with fewer layers (``disc_layers``) judges smaller
patches, the texture rather than the layout.

Optional segmentation guide (``seg_guide``): a frozen segmentation model, trained on real images, reads
each generated image (normalised per slice as inference does; a 2.5-D model sees the slice as its own
neighbours) and ``seg_guide_lambda`` x its cross-entropy against the input mask, class-weighted like the
L1, joins the generator loss. Why: networks trained on real slices only recognise the bundled generator's
no-reflow poorly (Dice 0.06-0.11 on its images of 64 training masks, against 0.67-0.76 on the real
slices), and a network trained on such images learns lesions poorly; the guide pulls the rendered
classes towards what a real-image network sees. Left to itself the generator also answers the guide with
a fine grid pattern, which a network reads but a reader does not; ``seg_guide_blur`` (a Gaussian of that
sigma, in pixels, on the image the guide reads) takes that channel away.

LV critic (``lv_critic``, context-preserving only): the PatchGAN judges the whole 128-pixel composite, and the realism
test's classifier (`models.pix2pix.crop_classifier`), shown 64-pixel crops around the LV (each slice normalised, clipped
to 0..1), tells its fill-ins from real slices every time. A second critic of that very shape, at its learning rate,
judges those crops, real against composite, and its adversarial loss joins the generator's with this weight.

Context-preserving synthesis (``context_inpaint``, lesion inpainting): the generator also reads the real slice
itself with its LV region (cavity + myocardium dilated by 3..8 pixels, drawn per sample) blanked out, and the region
mask; its output is composited into the real slice with soft weights that live strictly inside the region
(`models.pix2pix.blend_weights`), so every pixel outside stays the real one. The L1 counts inside the region only
(class-weighted as above); the critic judges the composite, conditioned on the labels and the region. The card's
params record ``conditioning: "context"``; ``init`` from a labels-only generator widens its input (the two new
channels start at zero weight), so training starts from a generator that already draws LGE.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..data.augment import build_augmentation
from ..data.normalize import DEFAULT_NORMALIZATION
from ..errors import LvsegError
from ..labels import N_CLASSES, NAMES, SHORT_NAMES
from .data import Task, TrainingData, reading_message

# Normalised range that maps onto the generator's [-1, 1]: that of normalize_slices' clipping.
GENERATOR_RANGE = (-0.5, 1.5)


def synthesis_augmentation(augment: str) -> str:
    """The strength a synthesis run's ``augment`` option means: none, lossless, or light for any other (geometry only:
    an intensity change would teach the generator wrong class contrasts)."""
    return augment if augment in ("none", "lossless") else "light"


def synthesis_normalization(intensity_range=None) -> dict:
    """The card's normalization block: per-slice percentiles, the tanh mapping, the raw intensity range."""
    norm = {**DEFAULT_NORMALIZATION, "generator_range": list(GENERATOR_RANGE)}
    if intensity_range is not None:
        norm["intensity_range"] = [float(v) for v in intensity_range]
    return norm


def to_tanh(normalised: np.ndarray, normalization: dict | None = None) -> np.ndarray:
    """Normalised slice values -> generator range [-1, 1] (linear; ``generator_range`` ends -> -1, 1)."""
    lo, hi = (normalization or {}).get("generator_range", GENERATOR_RANGE)
    return np.clip(2.0 * (np.asarray(normalised, np.float32) - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(np.float32)


def from_tanh_t(values):
    """`from_tanh` of a torch tensor at the default `GENERATOR_RANGE` (differentiable)."""
    lo, hi = GENERATOR_RANGE
    return (values + 1.0) * 0.5 * (hi - lo) + lo


def from_tanh(values: np.ndarray, normalization: dict | None = None) -> np.ndarray:
    """Inverse of `to_tanh`: generator output -> normalised slice values (0..1 = percentiles low..high)."""
    lo, hi = (normalization or {}).get("generator_range", GENERATOR_RANGE)
    return ((np.asarray(values, np.float32) + 1.0) * 0.5 * (hi - lo) + lo).astype(np.float32)


def raw_intensity_range(paths, normalization: dict | None = None) -> list[float]:
    """Mean low/high percentile (raw units) over all image slices of the sources: the scale to give
    synthetic images. Reads the files again because `load_source` keeps only normalised slices."""
    from ..io import emidec
    from ..io.pairs import PairFolder

    norm = {**DEFAULT_NORMALIZATION, **(normalization or {})}
    lows, highs = [], []
    for path in paths:
        path = Path(path)
        if PairFolder.is_pair_folder(path):
            folder = PairFolder.open(path)
            images = (folder.read(r["name"])[0] for r in folder.records())
        else:
            images = (emidec.read_case_image(c).data for c in emidec.find_cases(path))
        for image in images:
            flat = np.asarray(image, np.float32).reshape((-1,) + np.shape(image)[-2:])
            lo, hi = np.percentile(flat, [norm["low"], norm["high"]], axis=(1, 2))
            lows += lo.tolist()
            highs += hi.tolist()
    if not lows:
        return [0.0, 1.0]
    return [float(np.mean(lows)), float(np.mean(highs))]


def class_means(images: np.ndarray, labels: np.ndarray) -> dict:
    """Mean intensity per class name over all slices (NaN where a class is absent)."""
    return {SHORT_NAMES[c]: float(images[labels == c].mean()) if np.any(labels == c) else float("nan")
            for c in range(N_CLASSES)}


def compare_slices(real: np.ndarray, fake: np.ndarray) -> dict:
    """L1, PSNR and SSIM of one synthetic slice against the real one (both in the generator range [-1, 1])."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    l1 = float(np.abs(real - fake).mean())
    mse = float(np.mean((real - fake) ** 2))
    # PSNR of a perfect copy is infinite; cap it at 100 dB so means stay finite.
    psnr = 100.0 if mse < 1e-10 else float(peak_signal_noise_ratio(real, fake, data_range=2.0))
    ssim = float(structural_similarity(real, fake, data_range=2.0))
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


def generate_slices(generator, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Generator output (N, S, S) in [-1, 1] for label slices (N, S, S), each slice ``generate(slice, seed)``.

    One slice at a time, so a slice's image does not depend on the others in the stack.
    """
    import torch

    out = np.empty(labels.shape, np.float32)
    for i, mask in enumerate(labels):
        tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
        out[i] = generator.generate(tensor, seed=seed)[0, 0].cpu().numpy()
    return out


def region_slices(labels: np.ndarray, context_labels=None, dilation: int | None = None) -> np.ndarray:
    """The bool regions (N, S, S) a context generator fills in for label slices (N, S, S) (`context_region`)."""
    import torch

    from ..models.pix2pix import REGION_DILATION, context_region

    dilation = REGION_DILATION if dilation is None else dilation
    other = None if context_labels is None else torch.from_numpy(np.asarray(context_labels))
    return context_region(torch.from_numpy(np.asarray(labels)), other, dilation).numpy()


def generate_context_slices(generator, labels: np.ndarray, context: np.ndarray, region: np.ndarray,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(composite, weights)`` (N, S, S) for label slices, context slices in the generator range and their bool
    regions, one slice at a time: the generated region blended into the context (every pixel outside the region is
    the context's), and the blend weights (0 outside the region)."""
    import torch

    from ..models.pix2pix import blend_weights

    out = np.empty(labels.shape, np.float32)
    weights = blend_weights(torch.from_numpy(np.asarray(region)), generator.blend_width).numpy()
    for i, mask in enumerate(labels):
        tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
        fake = generator.generate(tensor, seed=seed, context=torch.from_numpy(np.ascontiguousarray(context[i])),
                                  region=torch.from_numpy(np.ascontiguousarray(region[i])))[0, 0].cpu().numpy()
        out[i] = np.where(region[i], weights[i] * fake + (1.0 - weights[i]) * context[i], context[i])
    return out, weights


def gaussian_blur(images, sigma: float):
    """Images (B, 1, H, W) smoothed by a separable Gaussian of ``sigma`` pixels (reflected edges; differentiable)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(images, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def weighted_l1(fake, real, weights, blur: float = 0.0):
    """sum(w |G - x|) / sum(w); with ``blur`` > 0 between the images blurred by a Gaussian of that sigma (the fine
    grain is left to the critic: an L1 on it pulls the generator to the mean, a smooth image)."""
    if blur > 0:
        fake, real = gaussian_blur(fake, blur), gaussian_blur(real, blur)
    return (weights * (fake - real).abs()).sum() / weights.sum().clamp_min(1e-6)


def with_noise(generator, params: dict, levels: int, weight: float = 0.0):
    """The generator with `NoiseInjection` at its ``levels`` finest decoder levels, all else its own weights; the
    noise starts at ``weight`` (0: it starts as the generator it was)."""
    import torch

    from ..models.weights import build_model

    params = {**params, "noise_levels": int(levels)}
    noisy = build_model("Pix2PixGenerator", params)
    missing, unexpected = noisy.load_state_dict(generator.state_dict(), strict=False)
    if unexpected or any(not key.startswith("noise.") for key in missing):
        raise LvsegError(f"cannot add noise to this generator (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        for injection in noisy.noise:
            injection.scale.fill_(float(weight))
    return noisy, params


def widen_to_context(generator, params: dict):
    """A context generator made from a labels-only one: the same weights, the first convolution's two new input
    channels (blanked context, region) at zero, so it starts as the labels-only generator it was."""
    import torch

    from ..models.pix2pix import CONTEXT_CHANNELS
    from ..models.weights import build_model

    params = {**params, "in_channels": int(params["in_channels"]) + CONTEXT_CHANNELS, "conditioning": "context"}
    wide = build_model("Pix2PixGenerator", params)
    state = generator.state_dict()
    first = "down.0.0.weight"
    weight = torch.zeros_like(wide.state_dict()[first])
    weight[:, :state[first].shape[1]] = state[first]
    state[first] = weight
    wide.load_state_dict(state)
    return wide, params


LV_CROP = 64   # the realism test's crop (`realism.lv_crops`)
LV_CRITIC_LR = 1e-3   # the realism test's classifier's: at pix2pix's 2e-4 the critic stayed at chance for 10 epochs


def lv_crops_t(images, labels, size: int = LV_CROP):
    """(B, 1, size, size) crops of generator-range images (B, 1, S, S) centred on each label map's LV centroid
    (clamped inside the image), mapped back to normalised values and clipped to 0..1, as `realism.lv_crops` reads a
    slice; differentiable in ``images``."""
    import torch

    normalised = from_tanh_t(images).clamp(0.0, 1.0)
    crops = []
    height, width = images.shape[-2:]
    size = min(size, height, width)
    for b in range(len(images)):
        ys, xs = torch.nonzero(labels[b] > 0, as_tuple=True)
        cy, cx = (int(ys.float().mean()), int(xs.float().mean())) if len(ys) else (height // 2, width // 2)
        y0 = min(max(cy - size // 2, 0), height - size)
        x0 = min(max(cx - size // 2, 0), width - size)
        crops.append(normalised[b:b + 1, :, y0:y0 + size, x0:x0 + size])
    return torch.cat(crops)


class SynthesisTask(Task):
    score_name = "validation PSNR (dB)"

    # -- set-up -------------------------------------------------------------------------------
    def generator_depth(self) -> int:
        """--depth <= 4 (the segmentation default) means the pix2pix default: a 2x2 bottleneck."""
        o = self.options
        depth = o.depth if o.depth > 4 else int(math.log2(o.size)) - 1
        if depth < 2 or o.size % 2 ** depth:
            raise LvsegError(f"size {o.size} must be divisible by 2**depth = {2 ** depth} (generator depth {depth})")
        return depth

    def setup(self):
        """Read the data, build the generator pair; yields what it is doing (a generator, as `Task.setup`)."""
        import torch

        from ..models.pix2pix import PatchDiscriminator
        from ..models.registry import load_model
        from ..models.weights import build_model

        o = self.options
        self.normalization = dict(DEFAULT_NORMALIZATION)
        # Geometry only: an intensity change would teach the generator wrong class contrasts. No rare-class
        # oversampling either: the class-weighted L1 already stresses the lesions.
        yield "setting up the augmentation (MONAI)"
        transform = build_augmentation(synthesis_augmentation(o.augment))
        yield reading_message(o.data)
        self.data = TrainingData(o, self.normalization, transform, 0.0, self.world)
        self.intensity_range = raw_intensity_range(o.data, self.normalization)
        yield f"loading {o.init} to fine-tune" if o.init else "building the generator and discriminator"
        if o.init:
            self.generator, card = load_model(o.init, task="synthesis")
            self.architecture, self.params = card.architecture, dict(card.params)
            if o.context_inpaint and card.params.get("conditioning", "labels") != "context":
                self.generator, self.params = widen_to_context(self.generator, self.params)
        else:
            self.architecture = "Pix2PixGenerator"
            self.params = {"in_channels": N_CLASSES, "out_channels": 1, "base_width": o.width or 32,
                           "depth": self.generator_depth(), "dropout": 0.5, "norm": "instance",
                           "upsample": o.upsample}
            if o.context_inpaint:
                from ..models.pix2pix import CONTEXT_CHANNELS

                self.params.update(in_channels=N_CLASSES + CONTEXT_CHANNELS, conditioning="context")
            self.generator = build_model(self.architecture, self.params)
        if o.noise_levels and self.params.get("noise_levels", 0) != o.noise_levels:
            if self.params.get("noise_levels", 0):
                raise LvsegError(f"{o.init} has noise at {self.params['noise_levels']} levels, not {o.noise_levels}")
            self.generator, self.params = with_noise(self.generator, self.params, o.noise_levels, o.noise_init)
        # an --init context generator stays one (its input needs the context)
        self.inpaint = self.params.get("conditioning", "labels") == "context"
        if self.inpaint:   # the card records how the region is made (region_dilation, blend_width)
            self.params = self.generator.architecture_params()
        # the critic reads the labels (and the region, when inpainting) beside the image
        self.discriminator = PatchDiscriminator(in_channels=N_CLASSES + 1 + int(self.inpaint),
                                                base_width=o.disc_width, n_layers=o.disc_layers)
        self.net_g, self.net_d = self.parallel(self.generator), self.parallel(self.discriminator)
        lr = o.lr or 2e-4
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.bce = torch.nn.BCEWithLogitsLoss()
        if len(o.l1_weights) != N_CLASSES:
            raise LvsegError(f"l1_weights needs {N_CLASSES} values, got {len(o.l1_weights)}")
        self.l1_weights = torch.tensor(o.l1_weights, dtype=torch.float32, device=self.device)
        self.guide, self.guide_card = self._load_guide() if o.seg_guide else (None, None)
        self.lv_critic = None
        if o.lv_critic > 0:
            if not self.inpaint:
                raise LvsegError("--lv-critic judges a context generator's fill-in: add --context-inpaint")
            from ..models.pix2pix import crop_classifier

            self.lv_critic = crop_classifier(o.disc_width // 2).to(self.device)
            self.opt_lv = torch.optim.Adam(self.lv_critic.parameters(), lr=LV_CRITIC_LR, betas=(0.5, 0.999))

    def _load_guide(self):
        from ..data.normalize import model_context
        from ..models.registry import load_model

        guide, card = load_model(self.options.seg_guide, task="segmentation")
        if card.input_size != self.options.size or card.normalization.get("method") != "percentile":
            raise LvsegError(f"the segmentation guide {card.name} reads {card.input_size}-pixel slices normalised by "
                             f"{card.normalization.get('method')}; this run needs {self.options.size}-pixel "
                             "percentile-normalised slices", self.options.seg_guide)
        for p in guide.parameters():
            p.requires_grad_(False)
        self.guide_channels = 1 + 2 * model_context(guide)
        return guide.to(self.device).eval(), card

    def guide_loss(self, fake, labels):
        """Class-weighted cross-entropy of the frozen guide on the generated images (differentiable in ``fake``)."""
        import torch
        import torch.nn.functional as F

        from ..models.heads import SOFTMAX, head_of, probabilities

        image = from_tanh_t(fake)
        flat = image.flatten(1)
        norm = self.guide_card.normalization
        low = torch.quantile(flat, norm.get("low", 1.0) / 100, dim=1)[:, None, None, None]
        high = torch.quantile(flat, norm.get("high", 99.0) / 100, dim=1)[:, None, None, None]
        image = ((image - low) / (high - low).clamp_min(1e-6)).clamp(-0.5, 1.5)
        if self.options.seg_guide_blur > 0:
            image = gaussian_blur(image, self.options.seg_guide_blur)
        out = self.guide(image.expand(-1, self.guide_channels, -1, -1))
        out = out[0] if isinstance(out, (list, tuple)) else out
        if head_of(self.guide) != SOFTMAX:   # a regions guide: the cross-entropy of its 5-class probabilities
            log_prob = torch.log(probabilities(self.guide, out).clamp_min(1e-7))
            return F.nll_loss(log_prob, labels, weight=self.l1_weights)
        return F.cross_entropy(out, labels, weight=self.l1_weights)

    def describe(self) -> str:
        what = "; context-preserving (fills in the LV region of the real slice)" if self.inpaint else ""
        n_g = sum(p.numel() for p in self.generator.parameters())
        n_d = sum(p.numel() for p in self.discriminator.parameters())
        guide = "" if self.guide is None else f"; guided by {self.guide_card.name} x {self.options.seg_guide_lambda}"
        return (f"{self.architecture} width {self.params.get('base_width')} depth {self.params.get('depth')} "
                f"({n_g / 1e6:.2f}M) + PatchGAN width {self.options.disc_width} ({n_d / 1e6:.2f}M); "
                f"{self.data.describe()} on {self.device}{guide}{what}")

    # -- training -----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.data.begin_epoch(epoch)
        self.generator.train()
        self.discriminator.train()

    def batch(self, epoch: int, step: int):
        import torch

        images, labels = self.data.batch(epoch, step)
        x = torch.from_numpy(to_tanh(images, synthesis_normalization())).to(self.device)  # (B, 1, S, S)
        return x, torch.from_numpy(labels).to(self.device)

    def train_regions(self, labels, epoch: int, step: int):
        """Each sample's region, its LV dilated by 3..8 pixels (drawn from (seed, epoch, step): a resumed run redraws
        the same), and its blend weights; at synthesis the region is the dilated union of two LVs, often wider."""
        import torch

        from ..models.pix2pix import REGION_DILATION, blend_weights, context_region

        rng = np.random.default_rng((self.options.seed, epoch, step, 7))
        region = torch.cat([context_region(lab[None], None, REGION_DILATION + int(rng.integers(0, 6)))
                            for lab in labels])
        return region, blend_weights(region, self.generator.blend_width)

    def inpaint_step(self, epoch: int, step: int) -> dict:
        """One step of context-preserving training (see the module docstring)."""
        import torch

        from ..models.pix2pix import context_input, one_hot

        real, labels = self.batch(epoch, step)
        region, weights = self.train_regions(labels, epoch, step)
        region_f, weights = region.float()[:, None], weights[:, None]
        self.generator.train()
        fake = self.net_g(context_input(labels, real[:, 0], region))
        composite = weights * fake + (1.0 - weights) * real
        cond = torch.cat([one_hot(labels), region_f], dim=1)

        loss_d, adversarial = self.critic_step(cond, real, composite)
        l1 = weighted_l1(fake, real, self.l1_weights[labels][:, None] * region_f, self.options.l1_blur)   # region only
        loss_g = adversarial + self.options.l1_lambda * l1
        losses = {}
        if self.lv_critic is not None:
            loss_lv, adversarial_lv = self.lv_critic_step(lv_crops_t(real, labels), lv_crops_t(composite, labels))
            loss_g = loss_g + self.options.lv_critic * adversarial_lv
            losses = {"g_adv_lv": float(adversarial_lv.detach()), "d_lv": float(loss_lv.detach())}
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"loss": float(loss_g.detach()), "g_adv": float(adversarial.detach()), "l1": float(l1.detach()),
                "d": float(loss_d.detach()), **losses, "lr": self.opt_g.param_groups[0]["lr"]}

    def lv_critic_step(self, real, fake):
        """One update of the LV critic on crops (real -> 1, composite -> 0, in one batch, as the realism classifier
        trains: its batch norm sees both); its adversarial loss for the generator, read with the critic's running
        statistics (a batch of composites alone would normalise away what tells them apart)."""
        import torch

        self.lv_critic.train()
        logits = self.lv_critic(torch.cat([real, fake.detach()]))
        targets = torch.cat([logits.new_ones((len(real), 1)), logits.new_zeros((len(fake), 1))])
        loss = self.bce(logits, targets)
        self.opt_lv.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_lv.step()
        self.lv_critic.eval()
        d_fake = self.lv_critic(fake)
        return loss, self.bce(d_fake, d_fake.new_ones(d_fake.shape))

    def critic_step(self, cond, real, fake):
        """One discriminator update (real pairs -> 1, generated pairs -> 0); returns its loss and the generator's
        adversarial loss against the just updated critic."""
        d_real = self.net_d(cond, real)
        d_fake = self.net_d(cond, fake.detach())
        loss_d = 0.5 * (self.bce(d_real, d_real.new_ones(d_real.shape))
                        + self.bce(d_fake, d_fake.new_zeros(d_fake.shape)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        d_fake = self.net_d(cond, fake)
        return loss_d, self.bce(d_fake, d_fake.new_ones(d_fake.shape))

    def train_step(self, epoch: int, step: int) -> dict:
        from ..models.pix2pix import one_hot

        if self.inpaint:
            return self.inpaint_step(epoch, step)
        real, labels = self.batch(epoch, step)
        cond = one_hot(labels)
        self.generator.train()
        fake = self.net_g(cond)

        loss_d, adversarial = self.critic_step(cond, real, fake)
        # Generator: fool the (just updated) critic and stay close to the real image.
        l1 = weighted_l1(fake, real, self.l1_weights[labels][:, None], self.options.l1_blur)
        loss_g = adversarial + self.options.l1_lambda * l1
        losses = {}
        if self.guide is not None:
            guide = self.guide_loss(fake, labels)
            loss_g = loss_g + self.options.seg_guide_lambda * guide
            losses["guide"] = float(guide.detach())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"loss": float(loss_g.detach()), "g_adv": float(adversarial.detach()), "l1": float(l1.detach()),
                **losses, "d": float(loss_d.detach()), "lr": self.opt_g.param_groups[0]["lr"]}

    # -- validation and export ----------------------------------------------------------------
    def validate(self) -> dict:
        if not self.data.val_sets:
            return {}
        t0 = time.time()
        norm = synthesis_normalization()
        rows, fakes, labels_all = [], [], []
        for s in self.data.val_sets:
            real = to_tanh(s.images, norm)
            if self.inpaint:   # the real slice as its own context: L1 / PSNR / SSIM of the composite
                fake, _ = generate_context_slices(self.generator, s.labels, real, region_slices(s.labels), seed=0)
            else:
                fake = generate_slices(self.generator, s.labels, seed=0)
            rows += [compare_slices(r, f) for r, f in zip(real, fake)]
            fakes.append(from_tanh(fake, norm))
            labels_all.append(s.labels)
        self.generator.train()
        metrics = {key: float(np.mean([r[key] for r in rows])) for key in ("l1", "psnr", "ssim")}
        means = class_means(np.concatenate(fakes), np.concatenate(labels_all))
        metrics.update({f"mean_{name}": value for name, value in means.items()})
        metrics["seconds"] = round(time.time() - t0, 2)
        return metrics

    def score(self, metrics: dict) -> float:
        return metrics.get("psnr", -math.inf)

    def export(self, out: Path, metrics: dict, epoch: int) -> None:
        from ..models.card import ModelCard
        from ..models.weights import save_model

        o = self.options
        card = ModelCard(
            name=o.name or Path(o.out).name, task="synthesis", architecture=self.architecture,
            params=self.params, normalization=synthesis_normalization(self.intensity_range),
            classes={str(k): v for k, v in NAMES.items()}, input_size=o.size,
            training={**self.data.card_training(epoch), "l1_lambda": o.l1_lambda, "l1_weights": list(o.l1_weights),
                      "adversarial_loss": "BCEWithLogits", "disc_width": o.disc_width, "disc_layers": o.disc_layers,
                      **({"l1_blur": o.l1_blur} if o.l1_blur else {}),
                      **({"noise_init": o.noise_init} if o.noise_init else {}),
                      **({"lv_critic": o.lv_critic} if o.lv_critic else {}),
                      **({"conditioning": "context", "l1": "inside the region only",
                          "train_region_dilation": "3..8 pixels per sample"} if self.inpaint else {}),
                      "augment": synthesis_augmentation(o.augment),
                      **({"seg_guide": self.guide_card.name, "seg_guide_source": str(o.seg_guide),
                          "seg_guide_lambda": o.seg_guide_lambda, "seg_guide_blur": o.seg_guide_blur}
                         if self.guide is not None else {})},
            metrics={"validation": metrics} if metrics else {}, licence=self.data.licence(),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        save_model(out, self.generator, card)

    def state_dict(self) -> dict:
        state = {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}
        if self.lv_critic is not None:
            state.update(lv_critic=self.lv_critic.state_dict(), opt_lv=self.opt_lv.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.lv_critic is not None and "lv_critic" in state:
            self.lv_critic.load_state_dict(state["lv_critic"])
            self.opt_lv.load_state_dict(state["opt_lv"])
