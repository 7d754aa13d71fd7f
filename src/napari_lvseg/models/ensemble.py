"""Several segmentation networks used as one model: their class probabilities are averaged (each member's output
converted by its own head, models/heads.py: softmax and regions members mix).

An ensemble is stored like any model (``card.json`` + ``model.safetensors``, architecture
``SegmentationEnsemble``), so the registry, inference, TTA, uncertainty and the GUI take it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.normalize import model_context
from ..errors import LvsegError
from .card import ModelCard
from .heads import probabilities
from .registry import load_model
from .weights import build_model


class SegmentationEnsemble(nn.Module):
    """Members (each an architecture name and its constructor arguments) whose probabilities are averaged.

    ``forward`` returns the log of the members' mean probability: softmax of it (the ensemble's own head, as
    `heads.probabilities` reads it) gives that mean exactly. Members may read
    different numbers of neighbour slices: each takes the centre channels of the widest input.
    """

    def __init__(self, members: list):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self._params = {"members": [{"architecture": m["architecture"], "params": dict(m["params"])} for m in members]}
        self.members = nn.ModuleList(build_model(m["architecture"], m["params"]) for m in members)
        self._contexts = [model_context(m) for m in self.members]  # neighbour slices each member reads

    def architecture_params(self) -> dict:
        return {"members": [dict(m) for m in self._params["members"]]}

    def in_channels(self) -> int:
        """Input channels: those of the member reading the most neighbour slices."""
        return 1 + 2 * max(self._contexts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels():
            raise ValueError(f"this ensemble reads {self.in_channels()} input channels (a slice and its neighbours), "
                             f"got {x.shape[1]}")
        mean, centre = 0, x.shape[1] // 2
        for member, context in zip(self.members, self._contexts):  # 2-D and 2.5-D: their centre channels
            out = member(x[:, centre - context:centre + context + 1])
            mean = mean + probabilities(member, out)
        return torch.log((mean / len(self.members)).clamp_min(1e-7))


def combine(refs, name: str) -> tuple[SegmentationEnsemble, ModelCard]:
    """One ensemble ``(network, card)`` from segmentation models (names, model or run folders).

    The members must read images the same way: same normalisation and input grid (2-D and 2.5-D
    members mix).
    """
    loaded = [load_model(ref, task="segmentation") for ref in refs]
    first = loaded[0][1]
    for ref, (_, card) in zip(refs, loaded):
        if card.normalization != first.normalization or card.input_size != first.input_size:
            raise LvsegError(f"normalisation or input size differs from {first.name}'s; cannot average", ref)
    net = SegmentationEnsemble([{"architecture": c.architecture, "params": c.params} for _, c in loaded])
    with torch.no_grad():
        for member, (model, _) in zip(net.members, loaded):
            member.load_state_dict(model.state_dict())
    licences = sorted({c.licence for _, c in loaded if c.licence})
    card = ModelCard(
        name=name, task="segmentation", architecture="SegmentationEnsemble", params=net.architecture_params(),
        normalization=first.normalization, classes=first.classes, input_size=first.input_size,
        training={"train_cases": sorted({n for _, c in loaded for n in c.training.get("train_cases", [])}),
                  "val_cases": sorted({n for _, c in loaded for n in c.training.get("val_cases", [])}),
                  # the members' own training blocks, less their case lists (the union above)
                  "ensemble_of": [{"name": c.name, "source": str(ref),
                                   **{k: v for k, v in c.training.items() if k not in ("train_cases", "val_cases")}}
                                  for ref, (_, c) in zip(refs, loaded)]},
        licence="; ".join(licences),
        notes=f"mean class probability of {len(loaded)} networks",
    )
    expects = combined_expectation([c.extra.get("expects") for _, c in loaded])
    if expects:   # the LV size segmenting zooms to (locate.zoom_for)
        card.extra["expects"] = expects
    return net.eval(), card


def combined_expectation(expects: list) -> dict | None:
    """One ``expects`` block for an ensemble: the members' own where they agree; where they differ (the fold models
    of a cross-validation, each trained on its own cases) the median of their LV sizes and range ends. None where a
    member records none or the members were read at different pixel sizes (no one zoom suits them all)."""
    import numpy as np

    if not expects or not all(expects) or len({e.get("pixel_size_mm") for e in expects}) > 1:
        return None
    if all(e == expects[0] for e in expects):
        return expects[0]
    ranges = np.array([e["lv_diameter_range_px"] for e in expects], float)
    return {**expects[0], "lv_diameter_px": round(float(np.median([e["lv_diameter_px"] for e in expects])), 1),
            "lv_diameter_range_px": [round(float(v), 1) for v in np.median(ranges, axis=0)],
            "measure": expects[0].get("measure", "") + "; the median of the ensemble members' figures"}
