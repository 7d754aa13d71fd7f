"""The segmentation task of the training engine: Attention Res-UNet on real/corrected/synthetic slices."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..data.augment import augment_sample, build_augmentation
from ..data.datasets import epoch_indices, load_source, read_split, split_cases
from ..data.normalize import DEFAULT_NORMALIZATION
from ..errors import LvsegError
from ..labels import NAMES, SHORT_NAMES

EMIDEC_LICENCE = "CC BY-NC-SA 4.0 (weights trained on EMIDEC data, emidec.com)"


def split_sources(options, sets):
    """Case-level train/validation split of the real sources; pair folders always train.

    Returns two lists aligned with ``sets`` (an entry may hold no slices).
    """
    split = read_split(options.split) if options.split else None
    train, val = [], []
    real_names = sorted({c for s in sets for c, o in zip(s.cases, s.origin) if o == "real"})
    if split is None:
        _, val_names = split_cases(real_names, options.val_fraction, options.seed)
    else:
        val_names = list(split.get("val", []))
    for s in sets:
        if split is not None:
            allowed = set(split["train"]) | {c for c, o in zip(s.cases, s.origin) if o != "real"}
            s = s.subset([c for c in s.case_names() if c in allowed or c in val_names])
        train.append(s.subset([c for c in s.case_names() if c not in val_names]))
        val.append(s.subset([c for c in s.case_names() if c in val_names]))
    return train, val


class SegmentationTask:
    score_name = "validation mean Dice"

    def __init__(self, options, device, world):
        self.options, self.device, self.world = options, device, world

    # -- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        from ..models.store import build_model, load_model

        o = self.options
        self.normalization = dict(DEFAULT_NORMALIZATION)
        sets = [load_source(p, o.size, self.normalization) for p in o.data]
        mix = list(o.mix) if o.mix else [len(s) for s in sets]  # default: proportional to size
        train, val = split_sources(o, sets)
        self.train_sets = [t for t in train if len(t)]
        self.mix = [m for t, m in zip(train, mix) if len(t)]
        self.val_sets = [v for v in val if len(v)]
        if not self.train_sets:
            raise LvsegError("no training slices left after the validation split")
        n_train = sum(len(s) for s in self.train_sets)
        self.samples = o.samples_per_epoch or n_train
        self.transform = build_augmentation(o.augment)
        if o.init:
            self.model, card = load_model(o.init, task="segmentation")
            self.architecture, self.params = card.architecture, dict(card.params)
            self.normalization = dict(card.normalization or self.normalization)
        else:
            self.architecture = "AttentionResUNet"
            self.params = {"in_channels": 1, "out_channels": 5, "base_width": o.width or 16, "depth": o.depth,
                           "dropout": o.dropout, "deep_supervision": o.deep_supervision}
            self.model = build_model(self.architecture, self.params)
        self.model.to(self.device)
        self.net = self.model
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model)
        lr = o.lr or (2e-3 if not o.init else 5e-4)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=1e-4)
        total = max(1, self.steps_per_epoch() * o.epochs)
        warmup = min(100, total // 10 + 1)
        # Cosine decay over the total steps of the run (a resume with more epochs stretches it).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        from monai.losses import DiceCELoss

        weight = torch.tensor(o.ce_weights, dtype=torch.float32, device=self.device) if o.ce_weights else None
        # batch=True: Dice over the whole batch, so a rare class absent from one slice is not scored 0.
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, weight=weight)

    def describe(self) -> str:
        n_train = sum(len(s) for s in self.train_sets)
        n_val = sum(len(s) for s in self.val_sets)
        cases = sum(len(s.case_names()) for s in self.val_sets)
        n_params = sum(p.numel() for p in self.model.parameters())
        return (f"{self.architecture} width {self.params.get('base_width')}, {n_params / 1e6:.2f}M parameters; "
                f"{n_train} training slices, {n_val} validation slices from {cases} cases; "
                f"{self.samples} samples/epoch on {self.device}")

    def steps_per_epoch(self) -> int:
        return math.ceil(self.samples / (self.options.batch_size * self.world.size))

    def samples_per_step(self) -> int:
        return self.options.batch_size * self.world.size

    # -- training -----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.indices = epoch_indices(self.train_sets, self.mix, self.steps_per_epoch() * self.samples_per_step(),
                                     self.options.seed, epoch, self.options.rare_boost)
        self.model.train()

    def batch(self, epoch: int, step: int):
        import torch

        b, w = self.options.batch_size, self.world
        first = (step * w.size + w.rank) * b
        images, labels = [], []
        for i in range(first, first + b):
            k, j = self.indices[i]
            s = self.train_sets[k]
            img, lab = augment_sample(self.transform, s.images[j], s.labels[j], (self.options.seed, epoch, i))
            images.append(img)
            labels.append(lab)
        x = torch.from_numpy(np.stack(images)[:, None]).to(self.device)
        y = torch.from_numpy(np.stack(labels)[:, None]).to(self.device)
        return x, y

    def train_step(self, epoch: int, step: int) -> dict:
        x, y = self.batch(epoch, step)
        self.model.train()
        out = self.net(x)
        outputs = out if isinstance(out, (list, tuple)) else [out]
        # deep supervision: auxiliary heads weighted 1/2, 1/4, ... of the main output
        weights = [1.0 / 2 ** i for i in range(len(outputs))]
        loss = sum(w * self.loss(o, y) for w, o in zip(weights, outputs)) / sum(weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(loss.detach()), "lr": self.optimizer.param_groups[0]["lr"]}

    # -- validation and export ----------------------------------------------------------------
    def validate(self) -> dict:
        from ..inference import predict_labels
        from ..metrics import pooled_dice, study_table

        if not self.val_sets:
            return {}
        t0 = time.time()
        cases = {}
        for s in self.val_sets:
            for case, images, labels in s.volumes():
                cases[case] = (predict_labels(self.model, images, device=self.device), labels)
        self.model.train()
        table = study_table(cases)
        mean = table[-1] if isinstance(table, list) else table["mean"]
        metrics = {SHORT_NAMES[c]: float(mean[SHORT_NAMES[c]]) for c in (1, 2, 3, 4)}
        metrics["mean"] = float(np.nanmean([metrics[SHORT_NAMES[c]] for c in (1, 2, 3, 4)]))
        pooled = pooled_dice(list(cases.values()))
        metrics.update({f"pooled_{k}": float(v) for k, v in pooled.items()})
        metrics["seconds"] = round(time.time() - t0, 2)
        return metrics

    def score(self, metrics: dict) -> float:
        return metrics.get("mean", -math.inf)

    def export(self, out: Path, metrics: dict, epoch: int) -> None:
        from ..models.store import ModelCard, save_model

        o = self.options
        real = any(o2 == "real" for s in self.train_sets for o2 in s.origin)
        card = ModelCard(
            name=o.name or Path(o.out).name, task="segmentation", architecture=self.architecture,
            params=self.params, normalization=self.normalization,
            classes={str(k): v for k, v in NAMES.items()}, input_size=o.size,
            training={"data": [str(p) for p in o.data], "mix": self.mix, "epochs": epoch,
                      "samples_per_epoch": self.samples, "batch_size": o.batch_size, "seed": o.seed,
                      "init": o.init,
                      "train_cases": sorted({c for s in self.train_sets for c in s.cases}),
                      "val_cases": sorted({c for s in self.val_sets for c in s.cases})},
            metrics={"validation": metrics} if metrics else {},
            licence=EMIDEC_LICENCE if real and any("emidec" in str(p).lower() for p in o.data) else "as the training data",
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        save_model(out, self.model, card)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
