"""Attention Res-UNet (2-D): residual encoder/decoder with additive attention gates on the skips.

Oktay et al. 2018 ("Attention U-Net") gates, residual blocks as in ResUNet. Sized for CPU training:
widths ``base_width * 2**level``, stride-2 convolutions for downsampling, transpose convolutions up.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .heads import SOFTMAX, check_head, out_channels as head_channels

NORMS = ("instance", "batch")


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ResidualBlock(nn.Module):
    """Two 3x3 conv + norm + LeakyReLU with a shortcut (identity, or 1x1 projection when shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str = "instance",
                 dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                make_norm(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.act(self.norm1(self.conv1(x))))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class AttentionGate(nn.Module):
    """Additive attention: alpha = sigmoid(psi(relu(theta(x) + phi(g)))); returns x * alpha.

    As in Oktay 2018, theta downsamples the skip ``x`` to the gating grid (g is one level coarser), the
    coefficients are computed there (cheaper) and upsampled back. ``last_coefficients`` keeps the most
    recent alpha map (detached, (B, 1, H, W), values in [0, 1]) for inspection.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int):
        super().__init__()
        self.theta = nn.Conv2d(skip_channels, inter_channels, 2, stride=2, bias=False)
        self.phi = nn.Conv2d(gate_channels, inter_channels, 1, bias=True)
        self.psi = nn.Conv2d(inter_channels, 1, 1, bias=True)
        self.last_coefficients: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        theta_x = self.theta(x)
        phi_g = self.phi(g)
        if phi_g.shape[-2:] != theta_x.shape[-2:]:
            phi_g = F.interpolate(phi_g, size=theta_x.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta_x + phi_g)))
        alpha = F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)
        self.last_coefficients = alpha.detach()
        return x * alpha


class AttentionResUNet(nn.Module):
    """2-D Attention Res-UNet. Input (B, in, H, W) with H, W divisible by ``2**depth``.

    Eval mode returns logits (B, out, H, W). With ``deep_supervision`` and in training mode it returns
    ``[main, aux_1, ..., aux_{depth-1}]``: aux_k from decoder level k (k=1 finest), upsampled to (H, W).
    ``head`` says how the logits are read (models/heads.py): ``softmax``, one per class, or ``regions``, one sigmoid
    per nested region (4 output channels); it is kept in the card's params only where it is not softmax, so that
    the cards of softmax networks stay as they were.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 5, base_width: int = 16, depth: int = 4,
                 dropout: float = 0.0, deep_supervision: bool = False, norm: str = "instance",
                 head: str = SOFTMAX):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        make_norm(norm, 1)  # validates the name early
        check_head(head)
        if head != SOFTMAX and out_channels != head_channels(head):
            raise ValueError(f"a {head} head has {head_channels(head)} output channels, not {out_channels}")
        self._params = dict(in_channels=in_channels, out_channels=out_channels, base_width=base_width,
                            depth=depth, dropout=dropout, deep_supervision=deep_supervision, norm=norm)
        if head != SOFTMAX:
            self._params["head"] = head
        self.head_kind = head
        self.depth = depth
        self.deep_supervision = deep_supervision
        widths = [base_width * 2 ** level for level in range(depth + 1)]

        self.stem = ResidualBlock(in_channels, widths[0], norm=norm)
        # Dropout only in the deeper half, where features are abstract and the parameter count is largest.
        self.encoder = nn.ModuleList(
            ResidualBlock(widths[level - 1], widths[level], stride=2, norm=norm,
                          dropout=dropout if level > depth // 2 else 0.0)
            for level in range(1, depth + 1))
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2) for level in range(depth))
        self.gates = nn.ModuleList(
            AttentionGate(widths[level], widths[level + 1], max(widths[level] // 2, 1)) for level in range(depth))
        self.decoder = nn.ModuleList(
            ResidualBlock(2 * widths[level], widths[level], norm=norm) for level in range(depth))
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(widths[level], out_channels, 1) for level in range(1, depth)) if deep_supervision else None

    def architecture_params(self) -> dict:
        """The constructor arguments (what a model card stores to rebuild this network)."""
        return dict(self._params)

    def attention_maps(self) -> list:
        """The last attention coefficients of each gate, finest level first (None before a forward)."""
        return [gate.last_coefficients for gate in self.gates]

    def forward(self, x: torch.Tensor):
        factor = 2 ** self.depth
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(f"input size {height}x{width} is not divisible by 2**depth = {factor}; "
                             f"pad or crop it to a multiple of {factor}")
        skips = [self.stem(x)]
        for block in self.encoder:
            skips.append(block(skips[-1]))
        features = skips.pop()  # bottleneck
        decoded = {}
        for level in reversed(range(self.depth)):
            skip = self.gates[level](skips[level], features)  # gating signal: the coarser decoder features
            features = self.decoder[level](torch.cat([self.upsample[level](features), skip], dim=1))
            decoded[level] = features
        logits = self.head(features)
        if not (self.deep_supervision and self.training):
            return logits
        size = logits.shape[-2:]
        aux = [F.interpolate(head(decoded[level]), size=size, mode="bilinear", align_corners=False)
               for level, head in zip(range(1, self.depth), self.aux_heads)]
        return [logits, *aux]
