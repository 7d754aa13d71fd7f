"""Pix2Pix (Isola et al. 2017) for label-map -> LGE image synthesis: U-Net generator and PatchGAN critic.

Variety comes from dropout, which stays active at synthesis time (pix2pix's noise source); norms are
instance norms by default, so eval and training mode normalise identically and one image does not
depend on the others in its batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from napari_lvseg.labels import N_CLASSES
from napari_lvseg.models.attention_res_unet import make_norm as _norm

UPSAMPLING = ("transposed", "resize")


def _upsampling(kind: str, cin: int, cout: int, bias: bool) -> list:
    """The layers doubling a decoder level's size: a 4x4 transposed convolution or resize + 3x3 convolution."""
    if kind == "transposed":
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1, bias=bias)]


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


class Pix2PixGenerator(nn.Module):
    """U-Net generator: (B, in, H, W) one-hot labels -> (B, out, H, W) image in [-1, 1].

    ``depth`` stride-2 levels (6 takes 128x128 to a 2x2 bottleneck); widths ``base_width * min(2**l, 8)``.
    Down: Conv4x4-Norm-LeakyReLU(0.2) (no norm on the first and innermost). Up: ConvTranspose4x4-Norm-ReLU,
    with dropout on the innermost three decoder levels; the outermost ends in tanh.

    ``upsample="resize"`` replaces each ConvTranspose4x4 by nearest-neighbour 2x resizing and a Conv3x3
    (Odena et al. 2016): a stride-2 transposed convolution's kernel overlaps unevenly and can lay a
    checkerboard over flat regions, which the segmentation-guided generator showed.
    """

    def __init__(self, in_channels: int = N_CLASSES, out_channels: int = 1, base_width: int = 32,
                 depth: int = 6, dropout: float = 0.5, norm: str = "instance", upsample: str = "transposed"):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
        _norm(norm, 1)
        self._params = dict(in_channels=in_channels, out_channels=out_channels, base_width=base_width,
                            depth=depth, dropout=dropout, norm=norm, upsample=upsample)
        self.depth = depth
        self.in_channels = in_channels
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
            x = self.up[level](x)
        return x

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Synthesise images for integer label maps (B, H, W) (or (H, W)); same seed -> identical output.

        Norms run in eval mode, dropout stays active (the noise). The global RNG state is left untouched
        when a seed is given. Returns (B, out, H, W) float in [-1, 1] on the model's device.
        """
        labels = torch.as_tensor(labels)
        if labels.dim() == 2:
            labels = labels[None]
        device = next(self.parameters()).device
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
