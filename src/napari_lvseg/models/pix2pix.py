"""Pix2Pix (Isola et al. 2017) for label-map -> LGE image synthesis: U-Net generator and PatchGAN critic.

Variety comes from dropout, which stays active at synthesis time (pix2pix's noise source), and optionally from
per-pixel noise injected at the finest decoder levels (``noise_levels``, as StyleGAN does): dropout sits at the
coarse levels and cannot draw a scanner's grain or a blood pool's trabeculae, which are per-pixel and random. Norms
are instance norms by default, so eval and training mode normalise identically and one image does not depend on
the others in its batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from napari_lvseg.labels import N_CLASSES
from napari_lvseg.models.attention_res_unet import make_norm as _norm

UPSAMPLING = ("transposed", "resize")
# What a generator is conditioned on: the label map alone (every card before context-preserving synthesis), or a real
# image with the LV region blanked out, the region mask and the label map (lesion inpainting: it fills in the region).
CONDITIONING = ("labels", "context")
CONTEXT_CHANNELS = 2   # the blanked context image and the region mask, after the one-hot labels
REGION_DILATION = 3    # pixels the LV (cavity + myocardium) is dilated by to make the region filled in
BLEND_WIDTH = 3        # pixels over which the generated region fades into the context, inside the region


def _upsampling(kind: str, cin: int, cout: int, bias: bool) -> list:
    """The layers doubling a decoder level's size: a 4x4 transposed convolution or resize + 3x3 convolution."""
    if kind == "transposed":
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1, bias=bias)]


class NoiseInjection(nn.Module):
    """Adds one map of unit Gaussian noise per sample, scaled per channel by learned weights that start at zero: a
    generator given noise starts as the generator it was, and learns how much of it to use."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], dtype=x.dtype, device=x.device)
        return x + self.scale * noise


def one_hot(labels: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """Integer label maps (B, H, W) -> float one-hot (B, n_classes, H, W)."""
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must hold integer class values")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"label values must lie in 0..{n_classes - 1}, "
                         f"got {int(labels.min())}..{int(labels.max())}")
    return F.one_hot(labels, n_classes).permute(0, 3, 1, 2).float()


def _dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary (B, H, W) mask grown by ``pixels`` (a disc-like octagon: alternating 3x3 square and cross steps)."""
    x = mask.float()[:, None]
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], device=x.device)[None, None]
    for step in range(int(pixels)):
        if step % 2:
            x = (F.conv2d(x, cross, padding=1) > 0).float()
        else:
            x = F.max_pool2d(x, 3, stride=1, padding=1)
    return x[:, 0] > 0


def context_region(labels, context_labels=None, dilation: int = REGION_DILATION) -> torch.Tensor:
    """The region a context generator fills in: the LV (labels > 0) of the target ``labels`` (B, H, W), united with
    that of the context's own ``context_labels`` where known, dilated by ``dilation`` pixels. Bool (B, H, W)."""
    labels = torch.as_tensor(labels)
    lv = labels > 0
    if context_labels is not None:
        lv = lv | (torch.as_tensor(context_labels, device=lv.device) > 0)
    return _dilate(lv, dilation) if dilation > 0 else lv


def changed_region(labels, context_labels, margin: int = BLEND_WIDTH) -> torch.Tensor:
    """The region a context generator fills in when only the edits are redrawn: the pixels whose label in ``labels``
    (B, H, W) differs from the context's own ``context_labels``, grown by ``margin`` pixels (3x3 square steps).
    With `blend_weights` of the same width every changed pixel is the generator's alone (weight 1), and the blend
    to the real pixels lies in the margin. Bool (B, H, W)."""
    labels = torch.as_tensor(labels)
    x = (labels != torch.as_tensor(context_labels, device=labels.device)).float()[:, None]
    for _ in range(int(margin)):
        x = F.max_pool2d(x, 3, stride=1, padding=1)
    return x[:, 0] > 0


def blend_weights(region, width: int = BLEND_WIDTH) -> torch.Tensor:
    """Soft region weights (B, H, W) in [0, 1]: 0 outside ``region`` exactly, ramping from 1/(width+1) at its edge
    to 1 at ``width`` pixels inside, so a composite ``w * generated + (1 - w) * context`` keeps every pixel outside the
    region, and blends at the border inside it."""
    x = torch.as_tensor(region).float()[:, None]
    total = x.clone()
    eroded = x
    for _ in range(int(width)):
        eroded = -F.max_pool2d(-eroded, 3, stride=1, padding=1)
        total = total + eroded
    return (total / (int(width) + 1))[:, 0] * (x[:, 0] > 0)


def context_input(labels: torch.Tensor, context: torch.Tensor, region: torch.Tensor,
                  n_classes: int = N_CLASSES) -> torch.Tensor:
    """A context generator's input (B, n_classes + 2, H, W): one-hot labels, the context image (B, H, W, generator
    range) blanked to 0 inside ``region``, and the region mask."""
    region = torch.as_tensor(region).to(context.device).float()
    blanked = context * (1.0 - region)
    return torch.cat([one_hot(labels, n_classes), blanked[:, None], region[:, None]], dim=1)


class Pix2PixGenerator(nn.Module):
    """U-Net generator: (B, in, H, W) one-hot labels -> (B, out, H, W) image in [-1, 1].

    ``conditioning="context"`` (lesion inpainting): the input is the one-hot labels plus a real image with the LV
    region blanked out and the region mask (`context_input`; ``in_channels`` = classes + 2); the output is meant
    for the region only, composited into the context with `blend_weights` (``region_dilation``, ``blend_width``:
    how the region is made, recorded with the network so inference makes it as training did).

    ``depth`` stride-2 levels (6 takes 128x128 to a 2x2 bottleneck); widths ``base_width * min(2**l, 8)``.
    Down: Conv4x4-Norm-LeakyReLU(0.2) (no norm on the first and innermost). Up: ConvTranspose4x4-Norm-ReLU,
    with dropout on the innermost three decoder levels; the outermost ends in tanh.

    ``upsample="resize"`` replaces each ConvTranspose4x4 by nearest-neighbour 2x resizing and a Conv3x3
    (Odena et al. 2016): a stride-2 transposed convolution's kernel overlaps unevenly and can lay a
    checkerboard over flat regions, which the segmentation-guided generator showed.

    ``noise_levels`` (resize upsampling only): the outermost levels whose resized features get a `NoiseInjection`
    before their convolution; 1 is the output's own resolution.
    """

    def __init__(self, in_channels: int = N_CLASSES, out_channels: int = 1, base_width: int = 32,
                 depth: int = 6, dropout: float = 0.5, norm: str = "instance", upsample: str = "transposed",
                 conditioning: str = "labels", region_dilation: int = REGION_DILATION,
                 blend_width: int = BLEND_WIDTH, noise_levels: int = 0):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONING)}, got {conditioning!r}")
        if conditioning == "context" and in_channels <= CONTEXT_CHANNELS:
            raise ValueError(f"a context generator needs the label channels + {CONTEXT_CHANNELS}, got {in_channels}")
        if not 0 <= noise_levels <= depth or (noise_levels and upsample != "resize"):
            raise ValueError(f"noise_levels must be 0..{depth}, with resize upsampling; got {noise_levels} "
                             f"with {upsample}")
        _norm(norm, 1)
        self._params = dict(in_channels=in_channels, out_channels=out_channels, base_width=base_width,
                            depth=depth, dropout=dropout, norm=norm, upsample=upsample)
        if conditioning == "context":   # labels-only cards keep their params as they were
            self._params.update(conditioning=conditioning, region_dilation=int(region_dilation),
                                blend_width=int(blend_width))
        if noise_levels:   # so do cards without noise
            self._params["noise_levels"] = int(noise_levels)
        self.depth = depth
        self.in_channels = in_channels
        self.conditioning = conditioning
        self.n_classes = in_channels - CONTEXT_CHANNELS if conditioning == "context" else in_channels
        self.region_dilation, self.blend_width = int(region_dilation), int(blend_width)
        widths = [base_width * min(2 ** level, 8) for level in range(depth)]

        self.down = nn.ModuleList()
        for level in range(depth):
            cin = in_channels if level == 0 else widths[level - 1]
            layers = [nn.Conv2d(cin, widths[level], 4, stride=2, padding=1, bias=False)]
            if 0 < level < depth - 1:
                layers.append(_norm(norm, widths[level]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            self.down.append(nn.Sequential(*layers))

        # up[level] maps decoder features at level (concat with skip, except the innermost) to level - 1.
        self.up = nn.ModuleList()
        for level in range(depth):
            cin = widths[level] if level == depth - 1 else 2 * widths[level]
            if level == 0:
                self.up.append(nn.Sequential(*_upsampling(upsample, cin, out_channels, bias=True), nn.Tanh()))
                continue
            layers = [*_upsampling(upsample, cin, widths[level - 1], bias=False),
                      _norm(norm, widths[level - 1]), nn.ReLU(inplace=True)]
            if level >= depth - 3 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        self.noise = nn.ModuleList(NoiseInjection(widths[level] if level == depth - 1 else 2 * widths[level])
                                   for level in range(noise_levels))

    def architecture_params(self) -> dict:
        return dict(self._params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** self.depth
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(f"input size {height}x{width} is not divisible by 2**depth = {factor}")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(self.depth)):
            if level < self.depth - 1:
                x = torch.cat([x, skips[level]], dim=1)
            if level < len(self.noise):   # resize, noise, then the rest of the level
                x = self.up[level][1:](self.noise[level](self.up[level][0](x)))
            else:
                x = self.up[level](x)
        return x

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, seed: int | None = None, context=None, region=None) -> torch.Tensor:
        """Synthesise images for integer label maps (B, H, W) (or (H, W)); same seed -> identical output.

        Norms run in eval mode, dropout stays active (the noise). The global RNG state is left untouched
        when a seed is given. Returns (B, out, H, W) float in [-1, 1] on the model's device.
        A context generator also takes ``context`` (B, H, W) in the generator range and the bool ``region``
        (B, H, W) it fills in; it returns the generated image, not yet composited (see `blend_weights`).
        """
        labels = torch.as_tensor(labels)
        if labels.dim() == 2:
            labels = labels[None]
        device = next(self.parameters()).device
        if self.conditioning == "context":
            if context is None or region is None:
                raise ValueError("a context generator needs a context image and its region")
            context, region = torch.as_tensor(context, dtype=torch.float32), torch.as_tensor(region)
            if context.dim() == 2:
                context, region = context[None], region[None]
            x = context_input(labels.to(device), context.to(device), region.to(device), self.n_classes)
        else:
            x = one_hot(labels.to(device), self.in_channels)
        was_training = self.training
        self.eval()
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.train()
        try:
            if seed is None:
                return self(x)
            devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                return self(x)
        finally:
            self.train(was_training)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic (70x70 receptive field with n_layers=3): one real/fake logit per patch.

    ``forward(labels_onehot, image)`` judges their concatenation; ``forward(x)`` takes it pre-concatenated.
    A 128x128 input gives a (B, 1, 14, 14) map.
    """

    def __init__(self, in_channels: int = N_CLASSES + 1, base_width: int = 32, n_layers: int = 3,
                 norm: str = "instance"):
        super().__init__()
        _norm(norm, 1)
        self._params = dict(in_channels=in_channels, base_width=base_width, n_layers=n_layers, norm=norm)
        layers = [nn.Conv2d(in_channels, base_width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        width = base_width
        for n in range(1, n_layers + 1):
            stride = 2 if n < n_layers else 1
            next_width = base_width * min(2 ** n, 8)
            layers += [nn.Conv2d(width, next_width, 4, stride=stride, padding=1, bias=False),
                       _norm(norm, next_width), nn.LeakyReLU(0.2, inplace=True)]
            width = next_width
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def architecture_params(self) -> dict:
        return dict(self._params)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        if image is not None:
            x = torch.cat([x, image], dim=1)
        return self.net(x)


def crop_classifier(width: int = 16) -> nn.Module:
    """A small real-vs-synthetic classifier of image crops (N, 1, H, W) -> one logit each: three conv blocks (width,
    2x, 4x; batch norm, ReLU, max pooling), global average pooling, dropout. The realism test's two-sample classifier
    (`realism.two_sample_test`), and the synthesis engine's LV critic (``--lv-critic``)."""
    layers, cin = [], 1
    for cout in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(cin, 1))
