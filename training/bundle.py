"""Copy a trained run into the package as a bundled model (half-precision weights, card with test metrics).

    python training/bundle.py training/runs/seg_real lvseg-seg --default
    python training/bundle.py training/runs/pix2pix lvseg-pix2pix --default --from-last
    python training/bundle.py training/runs/pix2pix_context lvseg-pix2pix-context --default-context --from-last

--from-last takes the weights of the run's last checkpoint instead of its best-scoring model: for the
GAN, validation PSNR rewards the blurry images of the first epochs, so "best" is not the best generator.
--default-context marks a context-preserving generator as the default where a context image is available
(`synthesis.default_generator`); the labels-only default stays the default everywhere else.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import json
import sys
from pathlib import Path

from . import run as runner  # training/run.py: a run's last checkpoint as a model

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src/napari_lvseg/weights"


def bundle(run, name: str, default: bool, from_last: bool = False, default_context: bool = False) -> Path:
    from napari_lvseg.models.registry import load_model
    from napari_lvseg.models.weights import save_model

    run = Path(run)
    if from_last:
        net, card = runner.load_last(run)
        card.notes = (f"weights of the last checkpoint (epoch {card.training['epochs']}), not of the best "
                      "validation PSNR")
    else:
        net, card = load_model(str(run))
    card.name = name
    card.extra["default"] = default
    if default_context:
        card.extra["default_context"] = True
    card.extra["source_run"] = str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run)
    for result in sorted(run.glob("test_metrics*.json")):
        data = json.loads(result.read_text())
        card.metrics[result.stem] = {"study_mean": data["study"][-1], "emidec_mean": data["emidec"][-1],
                                     "pooled": data["pooled"], "cases": data["cases"], "tta": data["tta"]}
    synthesis = run / "synthesis_metrics.json"
    if synthesis.exists():
        from napari_lvseg.realism import feature_distance_names  # an older run's fid/kid under their new names

        summary = feature_distance_names({k: v for k, v in json.loads(synthesis.read_text()).items() if k != "pairs"})
        card.metrics["synthesis_test_split"] = summary
    card.training["data"] = ["EMIDEC development set (60 cases, 128x128 LV crops); split training/split.json"]
    out = save_model(WEIGHTS / name, net, card, half=True)
    print(f"{out}: {sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB")
    return out


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("name")
    parser.add_argument("--default", action="store_true")
    parser.add_argument("--from-last", action="store_true")
    parser.add_argument("--default-context", action="store_true",
                        help="the default generator where a context image is available (a context generator)")
    args = parser.parse_args(argv)
    bundle(args.run, args.name, args.default, args.from_last, args.default_context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
