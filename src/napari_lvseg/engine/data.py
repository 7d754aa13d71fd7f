"""The data side of a training run, shared by both tasks: sources, case-level split, mixing, batches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.augment import augment_sample
from ..data.datasets import common_pixel_size, epoch_indices, load_source, mentions_case, read_split, split_cases
from ..errors import LvsegError
from ..locate import pixel_zoom

EMIDEC_LICENCE = "CC BY-NC-SA 4.0 (weights trained on EMIDEC data, emidec.com)"


def split_sources(options, sets):
    """Case-level train/validation split of the real sources; pair folders train.

    A corrected or synthetic pair made from a held-out case (a validation case; under a split file a
    validation or test case) would show that case's image in training too: it is left out.
    Returns (train, val, left_out): two lists aligned with ``sets`` (an entry may hold no slices) and
    the names of the pairs left out.
    """
    split = read_split(options.split) if options.split else None
    real_names = sorted({c for s in sets for c, o in zip(s.cases, s.origin) if o == "real"})
    if split is None:
        _, val_names = split_cases(real_names, options.val_fraction, options.seed)
        val_names = held_out_cases(sets, val_names, options.hold_out, options.seed)
        held_out = set(val_names)
    else:
        val_names = list(split.get("val", []))
        held_out = set(val_names) | set(split.get("test", []))
        known = {c for s in sets for c in s.case_names()}
        unknown = sorted((set(split["train"]) | set(val_names)) - known)
        if unknown:   # a misspelt case would silently leave training or validation
            raise LvsegError(f"split file names {len(unknown)} training or validation case(s) the data do not hold: "
                             f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}", options.split)
    train, val, left_out = [], [], []
    for s in sets:
        derived = {c: d for c, o, d in zip(s.cases, s.origin, s.derived_from) if o != "real"}
        leaked = {c for c, d in derived.items() if mentions_case(d, held_out)}
        left_out += sorted(leaked)
        allowed = None if split is None else set(split["train"]) | set(derived)
        train.append(s.subset([c for c in s.case_names() if c not in val_names and c not in leaked
                               and (allowed is None or c in allowed)]))
        val.append(s.subset([c for c in s.case_names() if c in val_names]))
    return train, val, left_out


def held_out_cases(sets, val_names, hold_out: int, seed: int) -> list:
    """``val_names`` and, while fewer than ``hold_out``, more real or corrected cases (a few corrected cases are too
    few for `split_cases`' fraction: without this a small run has no validation and keeps its last model); one case
    at least always trains."""
    candidates = sorted({c for s in sets for c, o in zip(s.cases, s.origin) if o in ("real", "corrected")}
                        - set(val_names))
    wanted = min(hold_out - len(val_names), len(candidates) - 1)
    if wanted <= 0:
        return list(val_names)
    extra = [candidates[i] for i in np.random.default_rng(seed).permutation(len(candidates))[:wanted]]
    return sorted(list(val_names) + extra)


def reading_message(sources) -> str:
    """What a run says while it reads its data: the folders and how many cases or pairs each holds."""
    parts = []
    for source in sources:
        path = Path(source)
        count = sum(1 for p in path.iterdir() if not p.name.startswith(".")) if path.is_dir() else 0
        parts.append(f"{path.name or path} ({count} entries)" if count else str(path))
    return "reading " + ", ".join(parts)


class Task:
    """What both tasks share: options, device, rank, and the step arithmetic of their `TrainingData`.

    A task's ``setup()`` is a generator: it yields one line of what it is doing (loading a model, reading the
    data) before each slow part, which the engine passes on as "message" events before the run starts."""

    score_name = ""

    def __init__(self, options, device, world):
        self.options, self.device, self.world = options, device, world
        self.data: TrainingData | None = None  # set by the task's setup()

    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch()

    def samples_per_step(self) -> int:
        return self.data.samples_per_step()

    def parallel(self, module):
        """``module`` on this task's device; under torchrun wrapped in DistributedDataParallel."""
        module.to(self.device)
        if not self.world.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module)


def _as_is(batch):
    """DataLoader collate function that keeps the worker's numpy arrays (module level: picklable)."""
    return batch


class _EpochBatches:
    """Map-style dataset of one epoch's batches from ``first_step`` on, for DataLoader workers."""

    def __init__(self, data: "TrainingData", epoch: int, first_step: int):
        self.data, self.epoch, self.first_step = data, epoch, first_step

    def __len__(self) -> int:
        return self.data.steps_per_epoch() - self.first_step

    def __getitem__(self, i: int):
        step = self.first_step + i
        return (step, *self.data.make_batch(self.epoch, step))


class TrainingData:
    """Training and validation slices of a run and the sample order of each epoch.

    Every sample is augmented with its own seed (run seed, epoch, index), and an epoch's order
    depends only on (seed, epoch): a resumed run replays exactly the batches it would have seen.
    With ``options.workers`` > 0, worker processes build the coming batches ahead of the training
    step (the same batches: a batch is a pure function of (seed, epoch, step)).
    """

    def __init__(self, options, normalization: dict, transform, rare_boost: float, world, context: int = 0,
                 expected=None, min_samples: int = 0, read_at: float | None = None):
        o = self.options = options
        self.context = context  # neighbour slices each side in a sample's channels
        self.transform, self.rare_boost, self.world = transform, rare_boost, world
        # a fine-tuned model's cases at the zoom segmenting reads them at (``expected``: its LV size; ``read_at``: its
        # pixel size in mm; see load_source); a new model's at its cases' common pixel size, where their files record
        # one (`common_pixel_size`), read again where some differ from it
        sets = [load_source(p, o.size, normalization, expected=expected, read_at=read_at) for p in o.data]
        if read_at is None and expected is None:
            read_at = common_pixel_size(sets)
            if read_at and any(v and pixel_zoom(v, read_at) != 1.0 for s in sets for v in s.pixel_sizes.values()):
                sets = [load_source(p, o.size, normalization, read_at=read_at) for p in o.data]
        self.pixel_size = read_at   # what the card's ``expects`` records
        train, val, self.left_out = split_sources(o, sets)
        mix = list(o.mix) if o.mix else [len(t) for t in train]  # default: proportional to training slices
        # a source at ratio 0 only validates: it adds nothing to training, to the epoch length or to the card
        self.train_sets = [t for t, m in zip(train, mix) if len(t) and m > 0]
        self.mix = [m for t, m in zip(train, mix) if len(t) and m > 0]
        self.val_sets = [v for v in val if len(v)]
        if not self.train_sets:
            raise LvsegError("no training slices left after the validation split")
        # default: one pass over the training slices, at least ``min_samples`` (a few corrected cases' one pass is a
        # step or two)
        self.samples = o.samples_per_epoch or max(sum(len(s) for s in self.train_sets), min_samples)
        self.indices: list = []
        self._loader, self._next = None, None  # worker iterator and the (epoch, step) it yields next

    def describe(self) -> str:
        n_train = sum(len(s) for s in self.train_sets)
        n_val = sum(len(s) for s in self.val_sets)
        cases = sum(len(s.case_names()) for s in self.val_sets)
        left = f"; {len(self.left_out)} pairs made from held-out cases left out" if self.left_out else ""
        return (f"{n_train} training slices, {n_val} validation slices from {cases} cases; "
                f"{self.samples} samples/epoch{left}")

    def samples_per_step(self) -> int:
        return self.options.batch_size * self.world.size

    def steps_per_epoch(self) -> int:
        return math.ceil(self.samples / self.samples_per_step())

    def begin_epoch(self, epoch: int) -> None:
        self.close()
        self.indices = epoch_indices(self.train_sets, self.mix, self.steps_per_epoch() * self.samples_per_step(),
                                     self.options.seed, epoch, self.rare_boost)

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's augmented (images (B, C, S, S) float32, labels (B, S, S) int64) of a step."""
        workers = self.options.workers
        if workers <= 0:
            return self.make_batch(epoch, step)
        if self._next != (epoch, step):  # first batch of an epoch, or a resume mid-epoch
            from torch.utils.data import DataLoader

            self.close()
            loader = DataLoader(_EpochBatches(self, epoch, step), batch_size=None, shuffle=False,
                                num_workers=workers, prefetch_factor=4, collate_fn=_as_is)
            self._loader = iter(loader)
        got, images, labels = next(self._loader)
        assert got == step, f"data worker gave step {got} for step {step}"
        self._next = (epoch, step + 1)
        return images, labels

    def close(self) -> None:
        """End the worker processes of the current epoch, if any."""
        loader, self._loader, self._next = self._loader, None, None
        if loader is not None and hasattr(loader, "_shutdown_workers"):
            loader._shutdown_workers()

    def make_batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of (epoch, step) for this rank, built in this process: images (B, C, S, S)."""
        b, w = self.options.batch_size, self.world
        first = (step * w.size + w.rank) * b
        images, labels = [], []
        for i in range(first, first + b):
            k, j = self.indices[i]
            s = self.train_sets[k]
            img, lab = augment_sample(self.transform, s.input(j, self.context), s.labels[j],
                                      (self.options.seed, epoch, i))
            images.append(img)
            labels.append(lab)
        return np.stack(images), np.stack(labels).astype(np.int64)

    def card_training(self, epoch: int) -> dict:
        """The training block of a model card (what any task records)."""
        o = self.options
        origins = [(c, k) for s in self.train_sets for c, k in zip(s.cases, s.origin)]
        return {"data": [str(p) for p in o.data], "mix": self.mix, "epochs": epoch, "samples_per_epoch": self.samples,
                "batch_size": o.batch_size, "seed": o.seed, "init": o.init,
                # real and corrected cases by name; synthetic pairs (thousands of them) by number
                "train_cases": sorted({c for c, k in origins if k != "synthetic"}),
                "synthetic_pairs": len({c for c, k in origins if k == "synthetic"}),
                "val_cases": sorted({c for s in self.val_sets for c in s.cases}),
                "left_out_pairs": len(self.left_out)}  # made from held-out cases

    def lv_size_expectation(self) -> dict | None:
        """The LV size the training cases show (`locate.lv_size_expectation`): real and corrected cases, or
        the synthetic ones where there are no others."""
        from ..locate import lv_size_expectation

        def volumes(kinds):
            return [labels for s in self.train_sets for case, _, labels in s.volumes()
                    if s.origin[s.cases.index(case)] in kinds]

        return lv_size_expectation(volumes(("real", "corrected")) or volumes(("synthetic",)), self.pixel_size)

    def licence(self) -> str:
        real = any(origin == "real" for s in self.train_sets for origin in s.origin)
        emidec = any("emidec" in str(Path(p)).lower() for p in self.options.data)
        return EMIDEC_LICENCE if real and emidec else "as the training data"
