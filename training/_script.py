"""The one bootstrap of the scripts in training/: ``python training/run.py ...`` runs as ``python -m training.run ...``.

A script run by its path has training/ as ``sys.path[0]`` and no package, so its relative imports (``from . import
run``) cannot work. Each script's first lines hand over to `run_as_module` when it is run that way: training/ on the
path is replaced by the repository root (what ``python -m`` puts there, run from the root) and the script's code runs
again as the package module ``training.<name>`` under ``__main__``, its arguments (``sys.argv``) unchanged. Nothing
else in training/ edits ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def run_as_module(file: str):
    """Run the script ``file`` (training/<name>.py) as the module training.<name>; never returns."""
    path = Path(file).resolve()
    root = str(path.parents[1])
    sys.path[:] = [root] + [entry for entry in sys.path
                            if entry != root and not (entry and Path(entry).resolve() == path.parent)]
    spec = importlib.util.find_spec(f"training.{path.stem}")
    main = sys.modules["__main__"]   # the script's own module, as `python -m` would make it
    main.__dict__.update(__spec__=spec, __package__=spec.parent, __loader__=spec.loader, __file__=spec.origin,
                         __cached__=spec.cached)
    exec(spec.loader.get_code(spec.name), main.__dict__)
    raise SystemExit(0)   # the scripts end in sys.exit(main()); this is for one that does not
