"""The segmentation task of the training engine: Attention Res-UNet on real/corrected/synthetic slices."""

from __future__ import annotations

import math
import time
from pathlib import Path

from ..data.augment import build_augmentation
from ..data.normalize import DEFAULT_NORMALIZATION, model_context
from ..labels import NAMES
from ..locate import expected_lv_size, expected_pixel_size
from ..models.heads import REGIONS, SOFTMAX, head_of, out_channels, region_targets
from .data import Task, TrainingData, reading_message
from .options import check_head_options
from .schema import OptionError

# The fine-tuning recipe (--init, the other options left at their defaults): 10 epochs of at least 160 samples, so
# that a few corrected cases train for 100 steps of 16 (about 4.3 CPU-minutes for the bundled 3-network ensemble),
# only the shallow layers (`SHALLOW`), at a tenth of the learning rate from scratch. On 3 corrected cases of another
# site this raised the site's other cases from 0.317 to 0.479 pooled Dice while unchanged cases kept 0.710 of 0.714;
# training everything at 1e-4 or the shallow layers at 5e-4 gained less there and lost 0.025 on the unchanged cases
# (benchmarks/bench_adaptation.py; training/RESULTS.md, "Fine-tuning on a new site's corrected cases").
FINE_TUNE_LR = 2e-4
FINE_TUNE_MIN_SAMPLES = 160


# "shallow": the input stage (stem and first encoder level) and the affine of every norm layer train, the rest stays
# as it was: another site's images differ mostly in how they look (shading, contrast, noise, blur), which the first
# layers and the norms read, and the frozen rest keeps what the model knew.
SHALLOW = ("stem.", "encoder.0.", "norm")


def trainable(model, tune: str = "all") -> list:
    """The parameters a run trains (``tune``: `options.TUNE`); the others get ``requires_grad = False``."""
    params = []
    for name, param in model.named_parameters():
        keep = tune == "all" or any(part in name for part in SHALLOW)
        param.requires_grad_(keep)
        if keep:
            params.append(param)
    return params


class SegmentationTask(Task):
    score_name = "validation mean Dice"

    # -- set-up -------------------------------------------------------------------------------
    def setup(self):
        """Build the model, read the data; yields what it is doing (a generator, as `Task.setup`)."""
        import torch

        from ..models.registry import load_model
        from ..models.weights import build_model

        o = self.options
        self.normalization = dict(DEFAULT_NORMALIZATION)
        self.init_expects = self.init_postprocess = card = None
        yield f"loading {o.init} to fine-tune" if o.init else "building the network"
        if o.init:  # fine-tuning: the model's own normalisation, for the data too
            self.model, card = load_model(o.init, task="segmentation")
            self.init_expects = card.extra.get("expects")
            self.init_postprocess = card.extra.get("postprocess")
            self.architecture, self.params = card.architecture, dict(card.params)
            self.normalization = dict(card.normalization or self.normalization)
            context = model_context(self.model)   # its input channels: another context cannot be trained into it
            if o.context not in (None, context):
                raise OptionError("context", f"{o.context} asked for, but the model fine-tuned from reads {context} "
                                  f"neighbour slice(s) each side: give {context} or leave it out", o.init)
            o.context = context   # options.json says what the model reads
            # the head it trains: its own (an ensemble's is softmax: its output is the log of its mean probability)
            head = head_of(self.model)
            if o.head not in (SOFTMAX, head):   # softmax is the default: only another head counts as asked for
                raise OptionError("head", f"{o.head} asked for, but the model fine-tuned from has a {head} head: "
                                  "fine-tuning keeps its network; leave it out, or train from scratch", o.init)
            o.head = head
            check_head_options(o.head, o.ce_weights)
        else:
            o.context = o.context or 0
            self.architecture = "AttentionResUNet"
            self.params = {"in_channels": 1 + 2 * o.context, "out_channels": out_channels(o.head),
                           "base_width": o.width or 12, "depth": o.depth, "dropout": o.dropout,
                           "deep_supervision": o.deep_supervision}
            if o.head != SOFTMAX:   # a softmax network's card stays as it was (no head: softmax)
                self.params["head"] = o.head
            self.model = build_model(self.architecture, self.params)
        yield "setting up the augmentation (MONAI)"
        transform = build_augmentation(o.augment)
        yield reading_message(o.data)
        # fine-tuning: the cases at the zoom segmenting reads them at (another site's pixel size included)
        self.data = TrainingData(o, self.normalization, transform, o.rare_boost, self.world,
                                 context=model_context(self.model), expected=expected_lv_size(card),
                                 read_at=expected_pixel_size(card),
                                 min_samples=FINE_TUNE_MIN_SAMPLES if o.init else 0)
        self.net = self.parallel(self.model)
        lr = o.lr or (2e-3 if not o.init else FINE_TUNE_LR)
        self.tune = o.tune or ("shallow" if o.init else "all")
        self.optimizer = torch.optim.AdamW(trainable(self.model, self.tune), lr=lr, weight_decay=1e-4)
        total = max(1, self.steps_per_epoch() * o.epochs)
        warmup = min(100, total // 10 + 1)
        # Cosine decay over the total steps of the run (a resume with more epochs stretches it).
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        self.head = o.head
        self.loss = self._regions_loss() if self.head == REGIONS else self._softmax_loss()

    def _softmax_loss(self):
        import torch
        from monai.losses import DiceCELoss

        o = self.options
        weight = torch.tensor(o.ce_weights, dtype=torch.float32, device=self.device) if o.ce_weights else None
        # batch=True: Dice over the whole batch, so a rare class absent from one slice is not scored 0.
        return DiceCELoss(to_onehot_y=True, softmax=True, batch=True, weight=weight)

    @staticmethod
    def _regions_loss():
        """Dice (sigmoid, batch Dice as the softmax loss) + BCE of each nested region, against `region_targets`."""
        import torch
        from monai.losses import DiceLoss

        dice, bce = DiceLoss(sigmoid=True, batch=True), torch.nn.BCEWithLogitsLoss()

        def loss(logits, targets):
            return dice(logits, targets) + bce(logits, targets)

        return loss

    def describe(self) -> str:
        n_params = sum(p.numel() for p in self.model.parameters())
        head = f", {self.head} head" if self.head != SOFTMAX else ""
        return (f"{self.architecture} width {self.params.get('base_width')}{head}, {n_params / 1e6:.2f}M parameters; "
                f"{self.data.describe()} on {self.device}")

    # -- training -----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        self.data.begin_epoch(epoch)
        self.model.train()

    def train_step(self, epoch: int, step: int) -> dict:
        import torch

        images, labels = self.data.batch(epoch, step)
        x = torch.from_numpy(images).to(self.device)
        y = torch.from_numpy(labels[:, None]).to(self.device)
        if self.head == REGIONS:
            y = region_targets(y)   # (N, 4, H, W): LV, myocardium, infarct, no-reflow
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
        """The validation cases' per-case class means and mean, and pooled Dice (`evaluation.Report.metrics`; no
        EMIDEC metrics, no intervals: they would slow every check), and the seconds it took."""
        from ..evaluation import evaluate_cases
        from ..inference import predict_labels

        if not self.data.val_sets:
            return {}
        t0 = time.time()
        cases = {}
        for s in self.data.val_sets:
            for case, images, labels in s.volumes():
                cases[case] = (predict_labels(self.model, images, device=self.device), labels)
        self.model.train()
        metrics = evaluate_cases(cases, emidec=False, bootstrap=0).metrics()
        metrics["seconds"] = round(time.time() - t0, 2)
        return metrics

    def score(self, metrics: dict) -> float:
        return metrics.get("mean", -math.inf)

    def export(self, out: Path, metrics: dict, epoch: int) -> None:
        from ..models.card import ModelCard
        from ..models.weights import save_model

        o = self.options
        card = ModelCard(
            name=o.name or Path(o.out).name, task="segmentation", architecture=self.architecture,
            params=self.params, normalization=self.normalization,
            classes={str(k): v for k, v in NAMES.items()}, input_size=o.size,
            training={**self.data.card_training(epoch), "augment": o.augment, "rare_boost": o.rare_boost,
                      "trained": self.tune,
                      "context_slices": self.data.context,
                      "loss": "Dice + BCE per nested region (batch Dice) with deep supervision" if self.head == REGIONS
                      else "DiceCE (batch Dice) with deep supervision"},
            metrics={"validation": metrics} if metrics else {}, licence=self.data.licence(),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        # segmenting reads other pixel sizes at the LV size the model trained on: a fine-tuned model keeps what its
        # --init model expects (a few corrected cases cannot say more), a new one measures its training cases
        expects = self.init_expects or self.data.lv_size_expectation()
        if expects:
            card.extra["expects"] = expects
        # a fine-tuned model keeps the post-processing chosen for its --init model (class weights, minimum lesion
        # volumes): a few corrected cases cannot choose it again, and without it the model would lose what the
        # choice gained (training/RESULTS.md, "Class weights")
        if self.init_postprocess:
            card.extra["postprocess"] = dict(self.init_postprocess)
        save_model(out, self.model, card)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
