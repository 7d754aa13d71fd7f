"""Fine-tuning on a new site's corrected cases: ``python benchmarks/bench_adaptation.py``.

The measurement the correct-and-retrain loop lives by. Cases the bundled model never trained on (the validation and
test cases of ``training/split.json``) are changed as another site's scanner would change them (`site`: pixel size,
field of view, a receive coil's shading, contrast, noise). k of the site's validation cases are "corrected" (their
truth stands in for an expert's correction: chosen least-certain first, as the Correct panel orders them, or at
random) and the model is fine-tuned on them with the CLI contract and nothing else:

    lvseg train --task segmentation --init lvseg-seg --data DIR --out RUN

then the site's 12 test cases are segmented before and after (no options, as `lvseg segment`), and so are the same
cases unchanged (nothing forgotten). Each row says the CPU time of the fine-tuning process (all its threads).

    python benchmarks/bench_adaptation.py --runs default            # k = 1, 3, 5 (least certain first)
    python benchmarks/bench_adaptation.py --runs random,budget       # k = 3 at random; k = 3 at 3, 8 and 16 epochs
    python benchmarks/bench_adaptation.py --runs k3 --options "--lr 1e-4" --label "lr 1e-4"   # another recipe
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_robustness import heartless, in_surroundings, read_cases, rescale_pair, score, shading  # noqa: E402


def site(i, image, labels, fills):
    """Another site: pixels 1.33x larger, the crop off-centre in other cases' surroundings (192 x 192), a coil's
    shading, gamma 0.8 and noise 3 % of the range."""
    offset = [(10, 118), (118, 10), (100, 120), (20, 30)][i % 4]
    img, lab = rescale_pair(*in_surroundings(image, labels, fills, offset), 0.75, 0.75)
    img = shading(img)
    low, high = float(img.min()), float(img.max())
    img = low + (high - low) * ((img - low) / (high - low)) ** 0.8
    img = img + np.random.default_rng(i).normal(0, 0.03 * (high - low), img.shape)
    return img.astype(np.float32), lab


def site_cases(cases, donors):
    """Each case changed by `site`, its surroundings from four of ``donors`` (other cases, never itself)."""
    fills = [heartless(image, labels) for _, image, labels in donors]
    out = []
    for i, (name, image, labels) in enumerate(cases):
        others = [fills[(i + k) % len(fills)] for k in range(4)]
        out.append((name, *site(i, image, labels, others)))
    return out


def evaluate(model, cases):
    from napari_lvseg.inference import segment

    pairs = [(segment(image, model).labels, labels) for _, image, labels in cases]
    pooled, per_case = score(pairs)
    return {"pooled": round(float(pooled), 4), "per_case": round(float(per_case), 4)}


def choose(pool, k: int, how: str, model, seed: int = 0) -> list:
    """k case names of ``pool``: the least certain first (`inference.uncertainty_scores`, the Correct panel's
    order), or at random."""
    if how == "random":
        return [pool[j][0] for j in np.random.default_rng(seed).permutation(len(pool))[:k]]
    from napari_lvseg.inference import uncertainty_scores

    scores = {key: u for key, _, u in uncertainty_scores([(name, image) for name, image, _ in pool], model)}
    return sorted(scores, key=lambda name: -scores[name])[:k]


def fine_tune(chosen, pool, out: Path, threads: int, extra=()) -> float:
    """The CLI contract on the chosen cases (a pair folder of corrections); CPU seconds of the training process."""
    from napari_lvseg.io.pairs import PairFolder

    folder = PairFolder(out / "corrections")
    for name, image, labels in pool:
        if name in chosen:
            folder.add(image, labels, origin="corrected", name=name)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "napari_lvseg.cli", "train", "--task", "segmentation", "--init", "lvseg-seg",
               "--data", str(folder.root), "--out", str(out / "run"), "--threads", str(threads), "--quiet", *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emidec-lge-128"))
    parser.add_argument("--split", default=str(ROOT / "training" / "split.json"))
    parser.add_argument("--runs", default="default",
                        help="default (k = 1, 3, 5), k3, random (k = 3), budget (k = 3 at 3, 8, 16 epochs); "
                             "comma-separated")
    parser.add_argument("--options", default="", help="lvseg train options added to every run, e.g. '--lr 1e-4'")
    parser.add_argument("--label", default="", help="appended to each run's label (a recipe's name)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "adaptation.json"))
    args = parser.parse_args(argv)

    import torch

    from napari_lvseg.models.registry import load_model

    torch.set_num_threads(args.threads)
    split = json.loads(Path(args.split).read_text())
    pool_cases = read_cases(args.data, set(split["val"]))      # corrections come from here
    test_cases = read_cases(args.data, set(split["test"]))     # the site's other cases, scored
    donors = read_cases(args.data, set(split["train"][:8]))    # surroundings only
    pool, site_test = site_cases(pool_cases, donors), site_cases(test_cases, donors)
    model = load_model(None, task="segmentation")
    results = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
    if results.get("before", {}).get("model") != model[1].name:   # measured once per model
        results["before"] = {"site": evaluate(model, site_test), "unchanged": evaluate(model, test_cases),
                             "model": model[1].name}
    print(f"before: site {results['before']['site']}, unchanged {results['before']['unchanged']}", flush=True)
    order = choose(pool, len(pool), "uncertain", model)
    common = tuple(args.options.split())
    tag = f", {args.label}" if args.label else ""
    plans = []
    for run in args.runs.split(","):
        if run == "default":
            plans += [(f"k{k} least certain{tag}", order[:k], common) for k in (1, 3, 5)]
        elif run == "k3":
            plans.append((f"k3 least certain{tag}", order[:3], common))
        elif run == "random":
            plans.append((f"k3 random{tag}", choose(pool, 3, "random", model), common))
        elif run == "budget":
            plans += [(f"k3 least certain, {e} epochs{tag}", order[:3], common + ("--epochs", str(e)))
                      for e in (3, 8, 16)]
    for label, chosen, extra in plans:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.time()
            cpu = fine_tune(chosen, pool, Path(tmp), args.threads, extra)
            tuned = load_model(str(Path(tmp) / "run"), task="segmentation")
            row = {"cases": chosen, "options": list(extra), "cpu_minutes": round(cpu / 60, 2),
                   "wall_minutes": round((time.time() - start) / 60, 2),
                   "site": evaluate(tuned, site_test), "unchanged": evaluate(tuned, test_cases)}
        results[label] = row
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"{label}: {row}", flush=True)
    base = results["before"]
    print("| run | corrected cases | CPU-min | site pooled | site per case | unchanged pooled | unchanged per case |")
    print("|---|---|---|---|---|---|---|")
    print(f"| bundled default, before | | | {base['site']['pooled']:.3f} | {base['site']['per_case']:.3f} | "
          f"{base['unchanged']['pooled']:.3f} | {base['unchanged']['per_case']:.3f} |")
    for label, row in results.items():
        if label != "before":
            print(f"| {label} | {', '.join(row['cases'])} | {row['cpu_minutes']:.1f} | {row['site']['pooled']:.3f} | "
                  f"{row['site']['per_case']:.3f} | {row['unchanged']['pooled']:.3f} | "
                  f"{row['unchanged']['per_case']:.3f} |")


if __name__ == "__main__":
    main()
