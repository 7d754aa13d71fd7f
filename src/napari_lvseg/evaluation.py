"""Scoring predicted label stacks against truth: `evaluate_cases` gives one `Report` with every figure we report.

Label stacks are (Z, Y, X) (or one (Y, X) slice) in the scheme of ``labels``; spacing is (z, y, x) in mm. The
per-case Dice, EMIDEC metrics and Hausdorff distances of one case are `metrics`'; this module aggregates them:

- **Per case** (the study's protocol): Dice per class (cavity, myocardium, infarct, no-reflow) and case in 3-D; a
  class absent from both truth and prediction gives NaN and is left out of that class's mean over cases. A case's
  'mean' is over its present classes; the per-case 'mean' is the mean of the four class means.
- **Pooled**: one Dice per class over all voxels of all cases; 'mean' over the classes that have one.
- **EMIDEC**: per case, Dice of myocardium (2+3+4), infarct (3+4) and no-reflow (4), 1.0 when both are empty; the
  infarct and no-reflow volume errors in % of the true myocardium; the myocardium's Hausdorff distances (NaN when
  either myocardium is empty). Means over cases skip NaN.
- **Volumes** (cases whose spacing is known): cavity and the EMIDEC regions in ml, predicted and true.
- **Intervals**: percentile bootstrap over cases: ``bootstrap`` draws (default 2000) of as many cases as there are,
  with replacement, from ``numpy.random.default_rng(seed)`` (seed 0 unless given), so the same cases give the same
  intervals; level 95 % unless given. Each draw's per-case means, pooled Dice and EMIDEC Dice means are computed as
  above; a class no drawn case holds is left out of that draw, and bounds are NaN where no draw has it. One case
  gives no intervals. A test split of a dozen cases measures a model loosely; the intervals say how loosely.

`Report.to_json` / `to_csv` write atomically; `Report.from_json` reads a report back, also the result files written
before this module (``study``/``pooled``/``emidec`` tables, `training/results/`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import labels as lb
from .errors import LvsegError
from .metrics import (
    CLASS_KEYS,
    CLASSES,
    _spacing,
    dice_from_counts,
    emidec_case_metrics,
    format_table,
    overlap_counts,
    write_csv,
)

FORMAT = "lvseg evaluation 1"
STUDY_KEYS = CLASS_KEYS + ("mean",)
EMIDEC_DICE = tuple(f"dice_{name}" for name in lb.EMIDEC_REGIONS)
VOLUME_REGIONS = ("cavity",) + tuple(lb.EMIDEC_REGIONS)   # cavity, myocardium (2+3+4), infarct (3+4), no_reflow
BOOTSTRAP = 2000
LEVEL = 0.95
SEED = 0


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# The report


@dataclass
class Report:
    """Every figure of an evaluation (see the module's docstring for the protocols).

    ``cases``: one row a case: ``case``, Dice per class and the case's ``mean``, then (where computed) the EMIDEC
    metrics and the volumes. ``per_case``: the class means over cases and their ``mean``; ``pooled``: Dice per class
    over all voxels and ``mean``; ``emidec``: the EMIDEC metrics' means over cases (None: not computed);
    ``intervals``: ``{"per_case": {key: (low, high)}, "pooled": {...}, "emidec": {...}, "n", "level", "seed"}``
    (None: not computed, or one case); ``counts``: case -> (2, 4) voxel counts, |P∩T| and |P|+|T| per class
    (pooled Dice and its intervals over any subset of the cases); ``meta``: what the caller adds (run, split, ...).
    """

    cases: list
    per_case: dict
    pooled: dict
    emidec: dict | None = None
    intervals: dict | None = None
    counts: dict | None = None
    meta: dict = field(default_factory=dict)

    @property
    def names(self) -> list:
        return [row["case"] for row in self.cases]

    @property
    def study_rows(self) -> list:
        """Per-case Dice rows ``{'case', <class>..., 'mean'}``, then the ``'mean'`` row (the per-case means)."""
        return ([{"case": row["case"], **{k: row[k] for k in STUDY_KEYS}} for row in self.cases]
                + [{"case": "mean", **self.per_case}])

    @property
    def emidec_rows(self) -> list:
        """Per-case EMIDEC rows, then the ``'mean'`` row; [] where EMIDEC was not computed."""
        if self.emidec is None:
            return []
        return ([{"case": row["case"], **{k: row[k] for k in self.emidec}} for row in self.cases]
                + [{"case": "mean", **self.emidec}])

    @property
    def volume_rows(self) -> list:
        """Per-case volumes (ml) of the cases whose spacing is known."""
        keys = volume_keys()
        return [{"case": row["case"], **{k: row[k] for k in keys}} for row in self.cases if keys[0] in row]

    def metrics(self) -> dict:
        """The flat figures of a training run's validation events: the per-case class means and ``mean``, then
        ``pooled_<class>`` and ``pooled_mean``."""
        return {**{k: float(self.per_case[k]) for k in STUDY_KEYS},
                **{f"pooled_{k}": float(v) for k, v in self.pooled.items()}}

    # -- text ----------------------------------------------------------------------------------
    def summary(self) -> str:
        """A few lines: the per-case and pooled means (with intervals), pooled Dice per class, EMIDEC Dice."""
        spans = self.intervals or {}

        def figure(value, group, key="mean"):
            span = spans.get(group, {}).get(key)
            return f"{_fmt(value)}" + (f" ({_span(*span)})" if span else "")

        lines = [f"{len(self.cases)} case(s): Dice per case mean {figure(self.per_case['mean'], 'per_case')}, "
                 f"pooled mean {figure(self.pooled['mean'], 'pooled')}"
                 + (f"; {spans['level']:.0%} intervals over {spans['n']} draws of the cases" if spans else ""),
                 "pooled: " + ", ".join(f"{k.replace('_', '-')} {_fmt(self.pooled[k])}" for k in CLASS_KEYS)]
        if self.emidec is not None:
            lines.append("EMIDEC: " + ", ".join(f"{k[5:].replace('_', '-')} {figure(self.emidec[k], 'emidec', k)}"
                                                for k in EMIDEC_DICE))
        return "\n".join(lines)

    def tables(self) -> str:
        """The per-case, pooled, interval and EMIDEC tables, as `lvseg evaluate` prints them."""
        out = [f"Study protocol (per-case 3-D Dice, {len(self.cases)} cases):", format_table(self.study_rows),
               "\nPooled protocol (Dice over all voxels of all cases):",
               format_table([{"case": "pooled", **self.pooled}])]
        if self.intervals:
            out += [f"\n{self.intervals['level']:.0%} intervals over {self.intervals['n']} draws of the "
                    f"{len(self.cases)} cases:",
                    format_table([{"protocol": name.replace("_", " "),
                                   **{k: _span(*span) for k, span in self.intervals[name].items()}}
                                  for name in ("per_case", "pooled", "emidec") if name in self.intervals])]
        if self.emidec is not None:
            out += ["\nEMIDEC protocol:", format_table(self.emidec_rows)]
        if self.volume_rows:
            out += ["\nVolumes (ml):", format_table(self.volume_rows)]
        return "\n".join(out)

    # -- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON layout: the caller's ``meta`` keys, then ``format``, ``cases`` (how many), ``study`` (rows and
        the mean row), ``pooled``, ``emidec`` (rows and the mean row), ``volumes``, ``bootstrap`` (the intervals or
        None) and ``counts``; NaN becomes null in the file."""
        out = {**self.meta, "format": FORMAT, "cases": len(self.cases), "study": self.study_rows,
               "pooled": self.pooled}
        if self.emidec is not None:
            out["emidec"] = self.emidec_rows
        if self.volume_rows:
            out["volumes"] = self.volume_rows
        out["bootstrap"] = self.intervals
        if self.counts is not None:
            out["counts"] = {name: np.asarray(c).tolist() for name, c in self.counts.items()}
        return out

    def to_json(self, path) -> Path:
        """Write `to_dict` as strict JSON (NaN as null), atomically."""
        from .io.atomic import write_json_atomic

        write_json_atomic(path, self.to_dict())
        return Path(path)

    def csv_rows(self) -> list:
        """One row a case, then ``mean`` (the per-case and EMIDEC means) and ``pooled``; with intervals the rows
        ``mean <level> low`` / ``high`` and ``pooled <level> low`` / ``high``."""
        rows = [dict(row) for row in self.cases]
        rows.append({"case": "mean", **self.per_case, **(self.emidec or {})})
        rows.append({"case": "pooled", **self.pooled})
        if self.intervals:
            level = f"{self.intervals['level']:.0%}"
            for name, group in (("mean", ("per_case", "emidec")), ("pooled", ("pooled",))):
                for side, which in (("low", 0), ("high", 1)):
                    rows.append({"case": f"{name} {level} {side}",
                                 **{k: span[which] for g in group for k, span in self.intervals.get(g, {}).items()}})
        return rows

    def to_csv(self, path) -> Path:
        """Write `csv_rows` as CSV (NaN as an empty cell), atomically."""
        return write_csv(self.csv_rows(), path)

    @classmethod
    def from_dict(cls, data: Mapping) -> Report:
        """A report from `to_dict`'s layout, or from a result file written before this module: ``study`` and
        ``pooled``, with or without ``emidec``, ``bootstrap`` and the run's own keys (kept as ``meta``)."""
        try:
            study = [_numbers(row) for row in data["study"]]
            pooled = _numbers(data["pooled"])
        except (KeyError, TypeError) as error:
            raise LvsegError(f"not an evaluation report: no {error}") from None
        rows, per_case = _split_mean(study)
        emidec = None
        if data.get("emidec"):
            emidec_rows, emidec = _split_mean([_numbers(row) for row in data["emidec"]])
            _merge(rows, emidec_rows)
        _merge(rows, [_numbers(row) for row in data.get("volumes") or []])
        intervals = data.get("bootstrap")
        if intervals:
            intervals = {k: ({key: tuple(_number(x) for x in span) for key, span in v.items()}
                             if isinstance(v, dict) else v) for k, v in intervals.items()}
        counts = data.get("counts")
        if counts is not None:
            counts = {name: np.asarray(c, dtype=np.int64) for name, c in counts.items()}
        known = {"format", "cases", "study", "pooled", "emidec", "volumes", "bootstrap", "counts"}
        return cls(cases=rows, per_case=per_case, pooled=pooled, emidec=emidec, intervals=intervals or None,
                   counts=counts, meta={k: v for k, v in data.items() if k not in known})

    @classmethod
    def from_json(cls, path) -> Report:
        """`from_dict` of a JSON file (`to_json`'s, `lvseg evaluate`'s, `training/run.py evaluate`'s)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise LvsegError(f"cannot read the report: {error}", path) from None
        try:
            return cls.from_dict(data)
        except LvsegError as error:
            raise LvsegError(str(error), path) from None


def volume_keys() -> tuple:
    return tuple(f"{side}_ml_{name}" for name in VOLUME_REGIONS for side in ("pred", "true"))


def _fmt(value) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _span(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"{low:.3f} to {high:.3f}"


def _number(value):
    return float("nan") if value is None else value


def _numbers(row: Mapping) -> dict:
    """A row read from JSON: null (NaN when written) back to NaN."""
    return {k: _number(v) if k != "case" else v for k, v in row.items()}


def _split_mean(rows: list) -> tuple[list, dict]:
    """(case rows, the trailing 'mean' row without its 'case')."""
    if not rows or rows[-1].get("case") != "mean":
        raise LvsegError("not an evaluation report: a table without its 'mean' row")
    return rows[:-1], {k: v for k, v in rows[-1].items() if k != "case"}


def _merge(rows: list, extra: list) -> None:
    by_name = {row["case"]: row for row in rows}
    for row in extra:
        if row["case"] in by_name:
            by_name[row["case"]].update({k: v for k, v in row.items() if k != "case"})


# ---------------------------------------------------------------------------------------------
# Evaluating


def _items(cases, spacing) -> list:
    """[(name, prediction, truth, spacing or None)] of `evaluate_cases`'s accepted inputs."""
    if isinstance(cases, Mapping):
        items = [(name, *value) for name, value in cases.items()]
    else:
        items = []
        for index, value in enumerate(cases):
            value = tuple(value)
            items.append((str(index), *value) if len(value) == 2 else value)
    out = []
    for item in items:
        if len(item) not in (3, 4):
            raise LvsegError("each case is (name, prediction, truth) or (name, prediction, truth, spacing), or a "
                             f"(prediction, truth) pair; got {len(item)} items")
        name, pred, truth = str(item[0]), item[1], item[2]
        own = item[3] if len(item) == 4 else (spacing.get(item[0]) if isinstance(spacing, Mapping) else spacing)
        out.append((name, pred, truth, own))
    names = [item[0] for item in out]
    if len(set(names)) != len(names):
        raise LvsegError(f"case names repeat: {sorted({n for n in names if names.count(n) > 1})[:5]}")
    return out


def _volumes(pred, truth, spacing) -> dict:
    voxel_ml = float(np.prod(_spacing(spacing))) / 1000.0
    out = {}
    for name in VOLUME_REGIONS:
        masks = ((p == lb.CAVITY) for p in (pred, truth)) if name == "cavity" else \
            (lb.region(p, name) for p in (pred, truth))
        for side, mask in zip(("pred", "true"), masks, strict=True):
            out[f"{side}_ml_{name}"] = int(mask.sum()) * voxel_ml
    return out


def evaluate_cases(cases, *, emidec: bool = True, bootstrap: int = BOOTSTRAP, level: float = LEVEL,
                   seed: int = SEED, spacing=None, meta: dict | None = None) -> Report:
    """Score predictions against truth, case by case: the per-case, pooled and EMIDEC protocols, volumes where the
    spacing is known, and bootstrap intervals over the cases.

    ``cases``: a dict name -> (prediction, truth[, spacing]), or an iterable of (name, prediction, truth[,
    spacing]) or of unnamed (prediction, truth) pairs (named by their position). ``spacing``: one (z, y, x) for
    the cases that bring none, or a dict name -> (z, y, x); without any, EMIDEC's Hausdorff distances are in
    voxels and there are no volumes. ``emidec``: False leaves out the EMIDEC metrics (their Hausdorff distances
    are the slow part: a training run's validation and post-processing choices need only the Dice).
    ``bootstrap``: draws for the intervals (0: none; one case gives none either).
    """
    rows, counts, emidec_keys = [], {}, None
    for name, pred, truth, case_spacing in _items(cases, spacing):
        try:
            count = overlap_counts(pred, truth)
            scores = dice_from_counts(count)
            row = {"case": name, **scores, "mean": _nanmean(scores.values())}
            if emidec:
                scored = emidec_case_metrics(pred, truth, case_spacing)
                row.update(scored)
                emidec_keys = emidec_keys or list(scored)
            if case_spacing is not None and np.ndim(pred) == 3:
                row.update(_volumes(np.asarray(pred), np.asarray(truth), case_spacing))
        except LvsegError as error:
            raise LvsegError(f"case {name}: {error}") from None
        rows.append(row)
        counts[name] = count
    class_means = {key: _nanmean(row[key] for row in rows) for key in CLASS_KEYS}
    per_case = {**class_means, "mean": _nanmean(class_means.values())}
    pooled = pooled_dice_from_counts(list(counts.values())) if counts else \
        {key: float("nan") for key in STUDY_KEYS}
    emidec_means = {k: _nanmean(row[k] for row in rows) for k in emidec_keys or ()} if emidec else None
    report = Report(cases=rows, per_case=per_case, pooled=pooled, emidec=emidec_means, counts=counts,
                    meta=dict(meta or {}))
    if bootstrap and len(rows) > 1:
        report.intervals = bootstrap_intervals(report, n=bootstrap, level=level, seed=seed)
    return report


# ---------------------------------------------------------------------------------------------
# Pooled Dice and intervals


def pooled_dice_from_counts(counts) -> dict:
    """Dice per class over the cases' `metrics.overlap_counts` (each (2, 4)), plus 'mean' over the classes that
    have one."""
    overlap, total = np.sum(np.asarray(counts, dtype=np.int64).reshape(-1, 2, len(CLASSES)), axis=0)
    result = {key: (2.0 * o / t if t else float("nan")) for key, o, t in zip(CLASS_KEYS, overlap, total, strict=True)}
    result["mean"] = _nanmean(result.values())
    return result


def _pooled_per_draw(counts: np.ndarray) -> np.ndarray:
    """Pooled Dice of each draw of cases, (draws, cases, 2, 4) counts -> (draws, 4 classes + mean); NaN for a class
    no case of the draw holds (callers silence numpy's warning about it)."""
    summed = counts.sum(axis=1)
    dice = np.where(summed[:, 1] > 0, 2.0 * summed[:, 0] / np.maximum(summed[:, 1], 1), np.nan)
    return np.column_stack([dice, np.nanmean(dice, axis=1)])


def bootstrap_intervals(report: Report, n: int = BOOTSTRAP, level: float = LEVEL, seed: int = SEED) -> dict:
    """Percentile intervals of the per-case means, the pooled Dice and (where computed) the EMIDEC Dice means
    over ``n`` draws of the report's cases with replacement (the module's docstring)."""
    rows = report.cases
    if len(rows) != len(report.counts or ()) or not rows:
        raise LvsegError(f"bootstrap: {len(rows)} case rows and {len(report.counts or ())} counts")
    scores = np.array([[r[k] for k in CLASS_KEYS] for r in rows], dtype=float)   # NaN: class absent in the case
    counts = np.asarray([report.counts[r["case"]] for r in rows], dtype=np.float64)   # (cases, 2, 4)
    draws = np.random.default_rng(seed).integers(0, len(rows), size=(n, len(rows)))
    tail = 100 * (1 - level) / 2

    def spans(keys, values):
        return dict(zip(keys, map(tuple, np.nanpercentile(values, [tail, 100 - tail], axis=0).T), strict=True))

    with warnings.catch_warnings():   # a draw without any case of a class: NaN, left out of that class's mean
        warnings.simplefilter("ignore", RuntimeWarning)
        class_means = np.nanmean(scores[draws], axis=1)                                 # (n, 4)
        out = {"per_case": spans(STUDY_KEYS, np.column_stack([class_means, np.nanmean(class_means, axis=1)])),
               "pooled": spans(STUDY_KEYS, _pooled_per_draw(counts[draws]))}
        if report.emidec is not None:
            emidec = np.array([[r[k] for k in EMIDEC_DICE] for r in rows], dtype=float)
            out["emidec"] = spans(EMIDEC_DICE, np.nanmean(emidec[draws], axis=1))
    return {**out, "n": n, "level": level, "seed": seed}


def pooled_difference_interval(first, second, n: int = BOOTSTRAP, level: float = LEVEL, seed: int = SEED) -> dict:
    """Pooled Dice of ``second`` minus ``first`` on the same cases, with a paired percentile interval.

    ``first`` and ``second``: two models' `Report`s of the same cases (matched by name), or their
    `metrics.overlap_counts` lists in the same case order. Each draw takes the same cases for both models, so what
    the cases share (an easy or a hard heart) cancels out of the difference. Returns ``{key: (difference, low,
    high)}`` for every class and 'mean'; a class no drawn case holds is left out of that draw. Each model's mean is
    `pooled_dice_from_counts`'s: over the classes it has a Dice for, so a class only one model predicts (absent
    from the truth) scores 0 in that model's mean alone.
    """
    if isinstance(first, Report) and isinstance(second, Report):
        if sorted(first.counts) != sorted(second.counts):
            raise LvsegError("pooled difference: the two reports score different cases")
        names = sorted(first.counts)
        first, second = [first.counts[k] for k in names], [second.counts[k] for k in names]
    first, second = (np.asarray(c, dtype=np.float64).reshape(-1, 2, len(CLASSES)) for c in (first, second))
    if first.shape != second.shape or not len(first):
        raise LvsegError(f"pooled difference: {len(first)} and {len(second)} cases; they must be the same cases")
    draws = np.random.default_rng(seed).integers(0, len(first), size=(n, len(first)))
    with warnings.catch_warnings():   # a draw without any case of a class: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        observed = _pooled_per_draw(second[None]) - _pooled_per_draw(first[None])
        spread = _pooled_per_draw(second[draws]) - _pooled_per_draw(first[draws])
        tail = 100 * (1 - level) / 2
        low, high = np.nanpercentile(spread, [tail, 100 - tail], axis=0)
    return {key: (float(d), float(lo), float(hi))
            for key, d, lo, hi in zip(STUDY_KEYS, observed[0], low, high, strict=True)}
