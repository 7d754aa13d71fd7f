"""Whole-process speed of segmenting a folder: ``OMP_NUM_THREADS=2 python benchmarks/bench_segment_folder.py``.

Times, as a user waits for them (a new process each, start-up and file reading and writing included):

- the baseline: a plain MONAI ``AttentionUnet`` (widths 16..256) forward pass over every case of the folder, each
  case read from NIfTI, normalised per slice, one batch, argmax, written as NIfTI (`baseline_main`, run as
  ``python bench_segment_folder.py --baseline IN OUT``);
- ``lvseg segment IN -o OUT`` with no options (the default model, the LV search and the zoom included);
- the same with ``--model M`` for each ``--model`` given (other models side by side);
- the same with ``--tta`` (unless ``--no-tta``).

The folder is the first ``--cases`` EMIDEC cases (default 25), linked into a temporary folder. Each command runs
``--repeats`` times (default 2); the best time is kept, and printed beside the baseline's as a ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def baseline_main(src: str, out: str) -> None:
    """The MONAI yardstick's forward pass over a folder of EMIDEC cases (untrained weights: the time is the same)."""
    import nibabel as nib
    import numpy as np
    import torch
    from monai.networks.nets import AttentionUnet

    from napari_lvseg.data.normalize import normalize_slices

    torch.manual_seed(0)
    net = AttentionUnet(spatial_dims=2, in_channels=1, out_channels=5, channels=(16, 32, 64, 128, 256),
                        strides=(2, 2, 2, 2)).eval()
    Path(out).mkdir(parents=True, exist_ok=True)
    for case in sorted(Path(src).glob("Case_*")):
        image = nib.load(case / "Images" / f"{case.name}.nii.gz")
        stack = np.asarray(image.dataobj, np.float32).transpose(2, 1, 0)   # (Z, Y, X)
        with torch.inference_mode():
            labels = net(torch.from_numpy(normalize_slices(stack)[:, None])).argmax(1).numpy().astype(np.uint8)
        nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), image.affine), Path(out) / f"{case.name}.nii.gz")


def best_seconds(command: list, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emidec-lge-128"))
    parser.add_argument("--cases", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", action="append", default=[],
                        help="also time `lvseg segment --model MODEL` (repeatable: several models side by side)")
    parser.add_argument("--no-tta", action="store_true", help="leave out the --tta row")
    parser.add_argument("--baseline", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline:
        baseline_main(*args.baseline)
        return
    lvseg = [sys.executable, "-m", "napari_lvseg.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cases"
        folder.mkdir()
        cases = sorted(p for p in Path(args.data).glob("Case_*") if p.is_dir())[:args.cases]
        for case in cases:
            os.symlink(case, folder / case.name)
        rows = {
            "MONAI AttentionUnet 16..256 forward (baseline)": [sys.executable, __file__, "--baseline", str(folder),
                                                                f"{tmp}/monai"],
            "lvseg segment, no options": lvseg + ["segment", str(folder), "-o", f"{tmp}/plain"],
        }
        for k, model in enumerate(args.model):
            rows[f"lvseg segment --model {model}"] = lvseg + ["segment", str(folder), "-o", f"{tmp}/m{k}", "--model",
                                                               model]
        if not args.no_tta:
            rows["lvseg segment --tta"] = lvseg + ["segment", str(folder), "-o", f"{tmp}/tta", "--tta"]
        print(f"{len(cases)} cases, {args.repeats} runs each, best kept")
        base = None
        for name, command in rows.items():
            seconds = best_seconds(command, args.repeats)
            base = base or seconds
            print(f"| {name} | {seconds:.1f} s | {seconds / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
