"""One options object per training run, saved as ``options.json`` beside its checkpoints.

Each field declares its `Option` (engine/schema.py): type and default here, range, choices, help and panel label
there; `lvseg train`'s flags and the Train panel's fields are built from them. Field order is the panel's row order.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..data.augment import STRENGTHS
from ..errors import LvsegError
from ..models.heads import HEADS, REGIONS, SOFTMAX
from .schema import OptionError, option, schema

TASKS = ("segmentation", "synthesis")
DEPTH_DEFAULT = 4
TUNE = ("all", "shallow")   # the parameters a run trains (segmentation): see engine/segmentation.py, trainable()
UPSAMPLING = ("resize", "transposed")   # the generator's (models/pix2pix.py); resize leaves no checkerboard
RUN, DATA, MODEL, SYNTHESIS, ENGINE = ("training run", "data", "network", "synthesis (Pix2Pix)", "engine")


def _cores() -> int:
    """The panel's threads: every core. The run is a child process, and napari stayed responsive with both cores of
    a 2-core machine training (event-loop p95 lateness 11 ms; benchmarks/bench_gui_latency.py)."""
    return min(os.cpu_count() or 1, 256)


def check_head_options(head: str, ce_weights) -> None:
    """Class weights are the softmax head's cross-entropy weights: a regions head (sigmoid per region, BCE) has no
    per-class cross-entropy to weigh, so the pair is refused rather than ignored."""
    if head == REGIONS and ce_weights:
        raise OptionError("ce_weights", "weigh the softmax head's cross-entropy; a regions head (see {head}) has "
                                        "none: leave them out", refs=("head",))


@dataclass
class TrainOptions:
    # -- shown in the Train panel, in its row order
    task: str = option("segmentation", choices=TASKS, group=RUN, panel=True, label="task", help="",
                       tip="segmentation: Attention Res-UNet (image -> labels); synthesis: Pix2Pix (labels -> image).")
    data: list = option([], group=DATA, panel=True, label="data folder", metavar="DIR",
                        help="EMIDEC case folder(s) or pair folder; repeatable (not needed with --resume)",
                        tip="Training data: EMIDEC case folders or pair folders. The ratio column sets how often each "
                            "is sampled.")
    mix: list | None = option(None, group=DATA, panel=True, label="mixing ratios",   # the data table's ratio column
                              help="sampling ratio of the --data sources, e.g. 1:1 (default: by size)")
    init: str | None = option(None, group=MODEL, panel=True, label="model", metavar="MODEL",
                              help="fine-tune from this model instead of starting from scratch",
                              tip="Start from the selected model's weights instead of from scratch.")
    epochs: int | None = option(10, low=1, high=100_000, group=RUN, panel=True, label="epochs",   # None: the run's own
                                help="total epochs, counting those before a resume (default 10; on resume: the run's "
                                     "own)",
                                tip="Number of passes over the training data (counting epochs done before a pause).")
    samples_per_epoch: int | None = option(None, low=1, high=10_000_000, group=RUN, panel=True,
                                           label="samples per epoch", none_text="one pass",
                                           help="default: one pass over the training slices",
                                           tip="Training slices drawn per epoch ('one pass': as many as the training "
                                               "data holds).")
    batch_size: int = option(16, low=1, high=1024, group=RUN, panel=True, label="batch size", help="",
                             tip="Slices per optimisation step.")
    width: int | None = option(None, low=1, high=256, group=MODEL, panel=True, label="network width",
                               none_text="task default", help="base width of the network",
                               tip="Channels of the network's first level, doubled at each level below ('task "
                                   "default': 12 for segmentation, as the bundled networks, 32 for synthesis). "
                                   "Narrower trains faster. Fine-tuning keeps the model's own width.")
    context: int | None = option(None, low=0, high=3, unit="neighbour slices", group=MODEL, panel=True,
                                 label="2.5-D neighbours", none_text="none",   # not the --init model's: refused
                                 help="neighbour slices each side as input channels (2.5-D segmentation; 0: 2-D; "
                                      "default: the --init model's, else 0)",
                                 tip="2.5-D: neighbour slices on each side read with each slice as input channels (the "
                                     "bundled model reads 1). 'none' trains a 2-D network, or keeps the fine-tuned "
                                     "model's.")
    lr: float | None = option(None, low=0.0, low_open=True, high=1.0, group=RUN, panel=True,   # None: per task
                              label="learning rate", none_text="task default", step=1e-4, help="",
                              tip="Learning rate; 0 uses the task's default.")
    hold_out: int = option(0, low=0, high=1000, unit="cases", group=DATA, panel=True, metavar="N",
                           label="validate on one held-out case", check="validate on one held-out case",
                           help="at least N real or corrected cases validate (without --split): a few corrected cases "
                                "are otherwise all trained on, and the last model is kept",
                           tip="Hold one of the real or corrected cases out of training and validate on it after each "
                               "epoch: the plot then shows how the model does on a case it does not train on, and the "
                               "best epoch is kept. Without validation cases (a few corrected cases) the last model is "
                               "kept.")
    threads: int | None = option(None, low=1, high=256, group=ENGINE, panel=True, label="threads", help="",
                                 panel_default=_cores,   # None: torch's default
                                 tip="CPU threads for training (default: every core). Training runs in its own "
                                     "process, so napari stays responsive; lower it to keep cores free for other "
                                     "work.")
    device: str = option("auto", suggestions=("auto", "cpu", "cuda"), group=ENGINE, panel=True, label="device",
                         help="auto | cpu | cuda | cuda:N", tip="auto: the GPU if there is one, else the CPU.")
    out: str = option("run", group=RUN, panel=True, label="run folder", metavar="RUN",
                      help="run folder (options, events, checkpoints, model); required unless --options gives it",
                      tip="Folder of this training run (checkpoints, log, final model). Must be new to Start; a folder "
                          "holding a run (last.pt) can be resumed with Resume, also from an earlier session.")
    # -- command line and options file only
    seed: int = option(0, low=0, high=2 ** 32 - 1, group=RUN, label="seed", help="")
    name: str | None = option(None, group=RUN, label="model name",
                              help="name of the trained model in the registry (one no other model has)")
    split: str | None = option(None, group=DATA, label="case split", metavar="JSON",   # overrides val_fraction
                               help='case split {"train": [...], "val": [...], "test": [...]}')
    val_fraction: float = option(0.15, low=0.0, high=1.0, high_open=True, group=DATA, label="validation fraction",
                                 help="validation cases when no --split is given")
    size: int = option(128, low=1, group=DATA, label="training grid", metavar="PIXELS",
                       help="training grid (pixels), divisible by 2 to the power of --depth")
    augment: str = option("default", choices=STRENGTHS, group=DATA, label="augmentation",
                          help="scanner: the default plus pixel sizes 0.6x-1.7x the data's and a coil's shading up to "
                               "2.5x; synthesis: none, lossless (flips and quarter turns, no resampling) or any "
                               "other (light: small turns, shifts and zooms, resampled)")
    rare_boost: float = option(2.0, low=0.0, group=DATA, label="rare-class oversampling",
                               help="oversampling of slices with infarct / no-reflow")
    depth: int = option(DEPTH_DEFAULT, low=1, group=MODEL, label="network depth", help="")
    tune: str | None = option(None, choices=TUNE, group=MODEL, label="what trains",   # None: see help
                              help="what trains: all, or shallow (the input stage and the norm layers); default: all, "
                                   "and shallow with --init (another site's images)")
    dropout: float = option(0.0, low=0.0, high=1.0, high_open=True, group=MODEL, label="dropout",
                            help="dropout probability in the network")
    deep_supervision: bool = option(True, group=MODEL, label="deep supervision",
                                    help="segmentation: losses at the decoder's lower levels too")
    ce_weights: list | None = option(None, group=MODEL, label="class weights", metavar="W0:W1:W2:W3:W4",
                                     help="segmentation: cross-entropy weight of each class (default: none)")
    head: str = option(SOFTMAX, choices=HEADS, group=MODEL, label="output head",
                       help="segmentation: softmax (one output per class; Dice + cross-entropy) or regions (one "
                            "sigmoid per nested region, LV 1+2+3+4, myocardium 2+3+4, infarct 3+4, no-reflow 4, as "
                            "nnU-Net trains EMIDEC; Dice + BCE per region); --init: the model's own")
    l1_lambda: float = option(100.0, low=0.0, group=SYNTHESIS, label="L1 weight",
                              help="synthesis: weight of the class-weighted L1 loss")
    l1_weights: list = option([1.0, 7.0, 11.0, 26.0, 90.0], group=SYNTHESIS, label="L1 class weights",
                              metavar="W0:W1:W2:W3:W4", help="synthesis: L1 weight of each class's pixels")
    disc_width: int = option(32, low=1, group=SYNTHESIS, label="discriminator width",
                             help="synthesis: base width of the discriminator")
    disc_layers: int = option(3, low=1, high=5, group=SYNTHESIS, label="discriminator layers",
                              help="synthesis: the critic's strided layers (3: 70-pixel patches, as pix2pix; 2: 34; "
                                   "1: 16, the finest texture)")
    noise_levels: int = option(0, low=0, high=8, group=SYNTHESIS, label="injected noise levels",
                               help="synthesis: the generator's finest decoder levels that get per-pixel noise (its "
                                    "weights start at --noise-init; --init widens a generator without it)")
    noise_init: float = option(0.0, low=0.0, high=1.0, group=SYNTHESIS, label="starting noise weight",
                               help="synthesis: the injected noise's starting weight (0: a generator that gains noise "
                                    "starts as it was; above 0 the critic sees the noise from the first step; an "
                                    "--init generator with noise keeps its own)")
    l1_blur: float = option(0.0, low=0.0, high=8.0, unit="pixels", group=SYNTHESIS, label="L1 blur",
                            metavar="SIGMA", help="synthesis: the L1 compares Gaussian-blurred images (this sigma): it "
                                                  "holds the shading and leaves the grain to the critic")
    lv_critic: float = option(0.0, low=0.0, group=SYNTHESIS, label="LV critic weight",
                              help="synthesis, context-preserving: weight of a second critic's adversarial loss; it "
                                   "judges 64-pixel crops around the LV at full resolution, unconditioned, as the "
                                   "realism test's classifier does (0: none)")
    upsample: str = option("resize", choices=UPSAMPLING, group=SYNTHESIS, label="upsampling",
                           help="synthesis: the generator's upsampling (resize + 3x3 convolution; transposed: 4x4 "
                                "transposed convolutions, as the earlier lvseg-pix2pix, which leave a checkerboard)")
    seg_guide: str | None = option(None, group=SYNTHESIS, label="segmentation guide", metavar="MODEL",
                                   help="synthesis: a frozen segmentation model (trained on real images) whose "
                                        "class-weighted cross-entropy on the generated images joins the generator loss")
    seg_guide_lambda: float = option(10.0, low=0.0, group=SYNTHESIS, label="guide weight",
                                     help="weight of the --seg-guide loss")
    seg_guide_blur: float = option(0.0, low=0.0, high=8.0, unit="pixels", group=SYNTHESIS, label="guide blur",
                                   metavar="SIGMA", help="Gaussian blur (pixels) of the images the --seg-guide reads: "
                                                         "no fine-pattern answers")
    context_inpaint: bool = option(False, group=SYNTHESIS, label="context-preserving",
                                   help="synthesis: the generator fills in the LV region of a real slice (blanked out) "
                                        "and keeps the rest (card params conditioning 'context'); with --init from a "
                                        "labels-only generator its input is widened")
    workers: int = option(0, low=0, group=ENGINE, label="data-loading processes",
                          help="data-loading processes (0: augment in the training process)")
    checkpoint_every: int = option(50, low=1, group=ENGINE, label="checkpoint interval",
                                   help="steps between last.pt checkpoints")
    validate_every: int = option(1, low=1, group=ENGINE, label="validation interval",
                                 help="epochs between validations (and after the last)")

    def _check_types(self) -> None:
        """Each field holds its declared type (an options.json edited by hand must not crash deep inside)."""
        kinds = {"int": (int,), "float": (int, float), "str": (str,), "list": (list,), "bool": (bool,)}
        for opt in schema(type(self)):
            value = getattr(self, opt.name)
            allowed = kinds[opt.kind] + ((type(None),) if opt.optional else ())
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise OptionError(opt.name, f"must be {opt.kind}{' or None' if opt.optional else ''}, not {value!r}")
            if opt.kind == "list":
                element = str if opt.name == "data" else (int, float)
                if not all(isinstance(v, element) and not isinstance(v, bool) for v in value or []):
                    raise OptionError(opt.name, f"holds a value of the wrong kind: {value!r}")

    def validate(self) -> None:
        """Types, then each option's range or choices (its `Option`), then what options ask of each other."""
        self._check_types()
        for opt in schema(type(self)):
            problem = opt.problem(getattr(self, opt.name))
            if problem:
                raise OptionError(opt.name, problem)
        if not self.data:
            raise OptionError("data", "no training data given")
        if self.mix is not None and len(self.mix) != len(self.data):
            raise OptionError("mix", f"has {len(self.mix)} values for {len(self.data)} data sources")
        if self.mix is not None and (not all(math.isfinite(m) for m in self.mix) or min(self.mix) < 0
                                     or sum(self.mix) <= 0):
            raise OptionError("mix", f"ratios must be finite, non-negative, with a positive sum, got {self.mix}")
        if self.name is not None:
            from ..models.registry import check_model_name

            try:
                check_model_name(self.name)
            except LvsegError as exc:
                raise OptionError("name", exc.message) from None
        check_head_options(self.head, self.ce_weights)
        if self.size % 2 ** self.depth:
            raise OptionError("size", f"{self.size} must be divisible by 2 to the power of {{depth}} "
                                      f"({2 ** self.depth})", refs=("depth",))
        if self.out:
            from ..io.atomic import check_output_folder

            check_output_folder(self.out, "is a file: the run folder cannot be made there")

    def check_new_run(self) -> None:
        """What only a new run is refused for (a run saved before these checks must still resume): an epoch of one
        batch larger than asked for, and a network shape option that an ``init`` model would silently override."""
        if self.samples_per_epoch is not None and self.batch_size > self.samples_per_epoch:
            raise OptionError("batch_size", f"{self.batch_size} is larger than {{samples_per_epoch}} "
                              f"{self.samples_per_epoch}: each epoch would be one batch of {self.batch_size} "
                              f"samples; give a batch size of at most {self.samples_per_epoch}",
                              refs=("samples_per_epoch",))
        if self.init:
            self._check_init_shape()

    def _check_init_shape(self) -> None:
        """A fine-tuned model keeps its network: a width, depth or upsampling asked for that differs from the
        ``init`` model's is refused, not ignored. Only values set away from their default count as asked for."""
        from ..models.registry import model_card_only

        card = model_card_only(self.init, self.task)
        members = card.params.get("members") if card.architecture == "SegmentationEnsemble" else None
        nets = [m.get("params", {}) for m in members] if members else [card.params]
        # a synthesis --depth of 4 or less means the generator's default (engine/synthesis.py)
        depth_set = self.depth > 4 if self.task == "synthesis" else self.depth != DEPTH_DEFAULT
        asked = {"width": (self.width, "base_width") if self.width is not None else None,
                 "depth": (self.depth, "depth") if depth_set else None,
                 "upsample": (self.upsample, "upsample")
                 if self.task == "synthesis" and self.upsample != UPSAMPLING[0] else None}
        for name, pair in asked.items():
            if pair is None:
                continue
            value, key = pair
            # generators saved before the option existed upsample by transposed convolutions
            has = sorted({str(net.get(key, "transposed" if key == "upsample" else None)) for net in nets})
            if has != [str(value)]:
                raise OptionError(name, f"{value} asked for, but the model fine-tuned from has {' / '.join(has)}: "
                                  "fine-tuning keeps its network; leave it out, or train from scratch", self.init)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path) -> None:
        from ..io.atomic import write_text_atomic

        write_text_atomic(path, self.to_json())

    def to_line(self) -> str:
        """The options as one JSON line (`engine.process`'s pipe)."""
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, path) -> "TrainOptions":
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise LvsegError(f"cannot read options ({exc.strerror or exc})", path) from None
        return cls.from_text(text, path)

    @classmethod
    def from_text(cls, text: str, path) -> "TrainOptions":
        """Options from JSON text (an options.json, or ``--options``); errors name ``path``."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise LvsegError(f"cannot read options ({exc})", path) from None
        if not isinstance(raw, dict):
            raise LvsegError("options file is not a JSON object", path)
        known = {f.name for f in fields(cls)}
        # options.json files from before the option existed trained transposed-convolution generators: a resume
        # of such a run must rebuild the same generator
        raw.setdefault("upsample", "transposed")
        try:
            options = cls(**{k: v for k, v in raw.items() if k in known})
            options._check_types()   # here, so that a value edited by hand is reported with its file
        except OptionError as exc:
            raise OptionError(exc.option, exc.problem, path, exc.refs) from None
        except LvsegError as exc:
            raise LvsegError(exc.message, path) from None
        except (TypeError, ValueError) as exc:
            raise LvsegError(f"malformed options ({exc})", path) from None
        return options
