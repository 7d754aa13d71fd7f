"""One options object per training run, saved as ``options.json`` beside its checkpoints."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import LvsegError

TASKS = ("segmentation", "synthesis")
DEPTH_DEFAULT = 4
TUNE = ("all", "shallow")   # the parameters a run trains (segmentation): see engine/segmentation.py, trainable()
UPSAMPLING = ("resize", "transposed")   # the generator's (models/pix2pix.py); resize leaves no checkerboard


@dataclass
class TrainOptions:
    task: str = "segmentation"
    data: list = field(default_factory=list)       # case folders / pair folders
    mix: list | None = None                        # sampling ratio per data source, e.g. [1, 1]
    out: str = "run"
    epochs: int | None = 10                        # total, counting epochs before a resume (None: the run's own)
    samples_per_epoch: int | None = None           # default: one pass over the training slices
    batch_size: int = 16
    lr: float | None = None                        # default per task
    seed: int = 0
    threads: int | None = None                     # torch intra-op threads (None: torch's default)
    workers: int = 0                               # data-loading processes (0: augment in the training process)
    device: str = "auto"                           # auto | cpu | cuda | cuda:N
    size: int = 128                                # training grid (pixels)
    # case-level validation split
    split: str | None = None                       # JSON {"train": [...], "val": [...]}: overrides val_fraction
    val_fraction: float = 0.15
    hold_out: int = 0                              # at least this many real or corrected cases validate (a few
                                                   # corrected cases otherwise have none); without a split file
    # model
    init: str | None = None                        # model name/path to fine-tune from
    name: str | None = None                        # registry name of the trained model
    width: int | None = None                       # base width (default per task)
    depth: int = DEPTH_DEFAULT
    dropout: float = 0.0
    deep_supervision: bool = True
    context: int | None = None                     # neighbour slices each side as input channels (2.5-D; None: the
                                                   # --init model's, else 0; another than the --init model's: refused)
    # segmentation
    augment: str = "default"                       # none | light | default | scanner (+ pixel sizes 0.6x-1.7x)
    tune: str | None = None                        # what trains: all | shallow (the input stage and every norm);
                                                   # None: all from scratch, shallow when fine-tuning (--init)
    rare_boost: float = 2.0                        # oversampling of infarct / no-reflow slices
    ce_weights: list | None = None                 # cross-entropy class weights (5 values)
    # synthesis (Pix2Pix)
    l1_lambda: float = 100.0
    l1_weights: list = field(default_factory=lambda: [1.0, 7.0, 11.0, 26.0, 90.0])
    disc_width: int = 32
    upsample: str = "resize"                       # generator: resize | transposed (--init keeps its model's)
    seg_guide: str | None = None                   # frozen segmentation model judging the images (see synthesis.py)
    seg_guide_lambda: float = 10.0
    seg_guide_blur: float = 0.0                    # Gaussian sigma (pixels) of the image the guide reads
    context_inpaint: bool = False                  # context-preserving generator: fills in the LV region of a real
                                                   # slice (card params conditioning "context"; see synthesis.py)
    # engine
    checkpoint_every: int = 50                     # steps between `last` checkpoints (and each epoch end)
    validate_every: int = 1                        # epochs

    def _check_types(self) -> None:
        """Each field holds its declared type (an options.json edited by hand must not crash deep inside)."""
        kinds = {"int": (int,), "float": (int, float), "str": (str,), "list": (list,), "bool": (bool,),
                 "None": (type(None),)}
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = tuple(t for part in str(f.type).split("|") for t in kinds[part.strip()])
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise LvsegError(f"option {f.name} must be {str(f.type).replace('|', 'or')}, not {value!r}")
        for name in ("data", "mix", "ce_weights", "l1_weights"):
            value = getattr(self, name) or []
            element = str if name == "data" else (int, float)
            if not all(isinstance(v, element) and not isinstance(v, bool) for v in value):
                raise LvsegError(f"option {name} holds a value of the wrong kind: {value!r}")

    def validate(self) -> None:
        self._check_types()
        if self.task not in TASKS:
            raise LvsegError(f"unknown task {self.task!r} (choose {', '.join(TASKS)})")
        if not self.data:
            raise LvsegError("no training data given (--data DIR)")
        if self.mix is not None and len(self.mix) != len(self.data):
            raise LvsegError(f"--mix has {len(self.mix)} values for {len(self.data)} data sources")
        for name in ("epochs", "batch_size", "size", "checkpoint_every", "validate_every"):
            if getattr(self, name) < 1:
                raise LvsegError(f"--{name.replace('_', '-')} must be at least 1")
        if self.mix is not None and (not all(math.isfinite(m) for m in self.mix) or min(self.mix) < 0
                                     or sum(self.mix) <= 0):
            raise LvsegError(f"--mix ratios must be finite, non-negative, with a positive sum, got {self.mix}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise LvsegError(f"--lr must be a positive number, got {self.lr}")
        for name in ("rare_boost", "val_fraction", "dropout", "l1_lambda", "seg_guide_lambda",
                     "seg_guide_blur"):
            if not math.isfinite(getattr(self, name)):
                raise LvsegError(f"--{name.replace('_', '-')} must be a number, got {getattr(self, name)}")
        if self.width is not None and self.width < 1:
            raise LvsegError(f"--width must be at least 1, got {self.width}")
        if self.depth < 1 or not 0 <= self.seed < 2 ** 32:
            raise LvsegError(f"--depth must be at least 1 and --seed in 0..{2 ** 32 - 1}")
        if self.name is not None:
            from ..models.registry import check_model_name

            check_model_name(self.name)
        if self.context is not None and not 0 <= self.context <= 3:
            raise LvsegError(f"--context must be 0..3 neighbour slices, got {self.context}")
        if self.workers < 0:
            raise LvsegError(f"--workers must be 0 or more, got {self.workers}")
        if self.seg_guide_lambda < 0 or not 0 <= self.seg_guide_blur <= 8:
            raise LvsegError(f"--seg-guide-lambda must be 0 or more and --seg-guide-blur 0..8 pixels, got "
                             f"{self.seg_guide_lambda} and {self.seg_guide_blur}")
        if self.tune is not None and self.tune not in TUNE:
            raise LvsegError(f"--tune must be {' or '.join(TUNE)}, got {self.tune!r}")
        if self.upsample not in UPSAMPLING:
            raise LvsegError(f"--upsample must be {' or '.join(UPSAMPLING)}, got {self.upsample!r}")
        if not 0 <= self.hold_out <= 1000:
            raise LvsegError(f"--hold-out must be 0..1000 cases, got {self.hold_out}")
        if self.rare_boost < 0 or not 0 <= self.val_fraction < 1:
            raise LvsegError("--rare-boost must be >= 0 and --val-fraction in [0, 1)")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise LvsegError("--samples-per-epoch must be at least 1")
        if self.size % 2 ** self.depth:
            raise LvsegError(f"size {self.size} must be divisible by 2**depth = {2 ** self.depth}")
        if self.out:
            from ..io.atomic import check_output_folder

            check_output_folder(self.out, "is a file: the run folder cannot be made there")

    def check_new_run(self) -> None:
        """What only a new run is refused for (a run saved before these checks must still resume): an epoch of one
        batch larger than asked for, and a network shape option that an ``init`` model would silently override."""
        if self.samples_per_epoch is not None and self.batch_size > self.samples_per_epoch:
            raise LvsegError(f"--batch-size {self.batch_size} is larger than --samples-per-epoch "
                             f"{self.samples_per_epoch}: each epoch would be one batch of {self.batch_size} samples; "
                             f"give a batch size of at most {self.samples_per_epoch}")
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
        for option, pair in asked.items():
            if pair is None:
                continue
            value, key = pair
            # generators saved before the option existed upsample by transposed convolutions
            has = sorted({str(net.get(key, "transposed" if key == "upsample" else None)) for net in nets})
            if has != [str(value)]:
                raise LvsegError(f"--{option} {value} asked for, but the --init model has {option} {' / '.join(has)}: "
                                 f"fine-tuning keeps its network; leave --{option} out, or train without --init",
                                 self.init)

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
        except LvsegError as exc:
            raise LvsegError(exc.message, path) from None
        except (TypeError, ValueError) as exc:
            raise LvsegError(f"malformed options ({exc})", path) from None
        return options
