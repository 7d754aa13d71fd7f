"""Config files: a base config per task and small override files on top of it.

A config is a JSON object of `napari_lvseg.engine.TrainOptions` fields, plus ``description`` and, for scenario B's
data, ``synthetic`` (the synthetic set `run.make_synthetic` makes: generator, n, seed, stacks, slice_seeds; or, with
``edits`` (kinds as `lvseg synthesize-dataset --edits`), the training cases' edited masks rendered in their own real
images by a context generator, ``grain`` true by default, ``fill`` "lv" by default or "changes"). A config
with ``"base": "other.json"`` (a path relative to the config's own folder) starts from that config's resolved options
and sets only what differs: a key of its own replaces the base's; a dict (``synthetic``) is merged key by key; a list
(``data``, ``mix``) is replaced whole. Bases chain (``seg_context_scanner.json`` -> ``seg_context.json`` ->
``seg_real.json`` -> ``base_segmentation.json``). The task bases, ``base_segmentation.json`` and
``base_synthesis.json``, leave ``out`` and ``name`` empty: they are not runs of their own.

A config's file name is its run's name: training/runs/<config>[_seed<k>], training/results/<config>[_seed<k>].

    python -m training config training/configs/seg_context_scanner.json            # the resolved options
    python -m training config training/configs/seg_context_scanner.json --paths    # ... as the runner reads them
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BASE = "base"
TASK_BASES = ("base_segmentation.json", "base_synthesis.json")


def merge(base: dict, own: dict) -> dict:
    """``base`` with ``own``'s keys set on it (dicts merged key by key, anything else replaced); new dicts."""
    out = dict(base)
    for key, value in own.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config(path) -> dict:
    """A config's options with its bases resolved; paths as written (``${EMIDEC}``, relative to the repository root).

    A missing or unreadable base, or a circle of bases, is a one-line error naming the config and the base."""
    return _resolve(Path(path), ())


def _resolve(path: Path, chain: tuple) -> dict:
    try:
        own = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: not a readable JSON config ({error})") from None
    if not isinstance(own, dict):
        raise SystemExit(f"{path}: a config is a JSON object")
    base = own.pop(BASE, None)
    if base is None:
        return own
    base_path = path.parent / base
    if not base_path.is_file():
        raise SystemExit(f"{path}: its base {base!r} is not a file ({base_path})")
    if base_path.resolve() in chain + (path.resolve(),):
        raise SystemExit(f"{path}: its base {base!r} leads back to itself")
    return merge(_resolve(base_path, chain + (path.resolve(),)), own)


def is_task_base(path) -> bool:
    """Whether ``path`` is one of the task bases (not a run of its own)."""
    return Path(path).name in TASK_BASES


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--paths", action="store_true",
                        help="paths as the runner reads them (run.load_config: ${EMIDEC}, the repository root)")
    args = parser.parse_args(argv)
    from . import run as runner

    for path in args.configs:
        options = runner.load_config(path) if args.paths else read_config(path)
        print(json.dumps(options, indent=1))
    return 0
