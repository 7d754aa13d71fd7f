"""A segmentation network's output head, and the one conversion of its output into class probabilities.

Two heads:

- ``softmax`` (every model before this, and any card whose params name no head): 5 logits, one per class; the
  probabilities are their softmax.
- ``regions``: 4 logits, one per nested region as nnU-Net trains EMIDEC-like labels (LV = 1+2+3+4, myocardium =
  2+3+4, infarct = 3+4, no-reflow = 4), each read by a sigmoid. The region probabilities are made nested by a
  cumulative minimum (r1 >= r2 >= r3 >= r4) and turned into the 5 classes' probabilities: P(background) = 1 - r1,
  P(cavity) = r1 - r2, P(myocardium) = r2 - r3, P(infarct) = r3 - r4, P(no-reflow) = r4 (non-negative, summing
  to 1).

Whatever turns a network's output into probabilities or labels (inference and its TTA, the LV search, the engine's
validation, ensembles, the uncertainty map) goes through `probabilities` / `labels_of`, so that post-processing,
class weights and everything downstream read 5-class probabilities whatever the head. Qt-free; torch is imported
where a tensor is converted, so that the options schema can read `HEADS` without it.
"""

from __future__ import annotations

from ..labels import N_CLASSES

SOFTMAX, REGIONS = "softmax", "regions"
HEADS = (SOFTMAX, REGIONS)
# the regions head's channels: label >= 1 (LV), >= 2 (myocardium), >= 3 (infarct), >= 4 (no-reflow)
REGION_NAMES = ("LV", "myocardium", "infarct", "no_reflow")


def out_channels(head: str) -> int:
    """Output channels of a network with ``head``."""
    check_head(head)
    return len(REGION_NAMES) if head == REGIONS else N_CLASSES


def check_head(head) -> str:
    if head not in HEADS:
        raise ValueError(f"head must be {' or '.join(HEADS)}, not {head!r}")
    return head


def head_of(model) -> str:
    """The head of a network (a DDP wrapper's module too): `AttentionResUNet`'s ``head_kind``; softmax for any
    other (an ensemble's output is the log of its mean probability: its softmax is that mean)."""
    model = getattr(model, "module", model)
    return getattr(model, "head_kind", SOFTMAX)


def main_output(out):
    """The full-resolution output of a forward pass (deep supervision in training mode returns a list)."""
    return out[0] if isinstance(out, (list, tuple)) else out


def to_probabilities(logits, head: str = SOFTMAX):
    """Class probabilities (N, 5, H, W) from a network's output logits (N, 5 or 4, H, W) under ``head``."""
    import torch

    if head == SOFTMAX:
        return torch.softmax(logits, dim=1)
    check_head(head)
    if logits.shape[1] != len(REGION_NAMES):
        raise ValueError(f"a regions head has {len(REGION_NAMES)} output channels, got {logits.shape[1]}")
    regions = torch.cummin(torch.sigmoid(logits), dim=1).values   # nested: r1 >= r2 >= r3 >= r4
    return torch.cat([1.0 - regions[:, :1], regions[:, :-1] - regions[:, 1:], regions[:, -1:]], dim=1)


def probabilities(model, out):
    """Class probabilities (N, 5, H, W) of ``model``'s output ``out`` (its main output where it is a list)."""
    return to_probabilities(main_output(out), head_of(model))


def labels_of(model, out):
    """Labels (N, H, W), int64 tensor, of ``model``'s output: the argmax of `probabilities`. A softmax head's are
    the argmax of its logits, which is the argmax of their softmax (taken from the logits, so that labels are
    exactly those of before the regions head, ties and rounding included)."""
    out = main_output(out)
    head = head_of(model)
    return out.argmax(1) if head == SOFTMAX else to_probabilities(out, head).argmax(1)


def region_targets(labels):
    """The regions head's targets (N, 4, H, W) float, from labels (N, H, W) or (N, 1, H, W): channel k is
    ``labels >= k + 1`` (LV, myocardium, infarct, no-reflow: the labels are ordered so that each region is a
    threshold)."""
    import torch

    if labels.ndim == 4:
        labels = labels[:, 0]
    levels = torch.arange(1, len(REGION_NAMES) + 1, device=labels.device).view(1, -1, 1, 1)
    return (labels[:, None] >= levels).float()
