"""CPU speed of the networks: run ``OMP_NUM_THREADS=2 python benchmarks/bench_models.py``.

Prints, for 128x128 slices: training throughput (forward+backward+SGD step, batch 16, samples/s),
inference time (batch 10, no_grad, ms per slice), the whole `segment()` call on a 10-slice stack and
peak memory, for AttentionResUNet at several widths and for MONAI's AttentionUnet (the baseline, same
widths 16..256 as the study's yardstick), then Pix2Pix generator inference and GAN train-step time.
Timings are medians of a few repeats after a warm-up; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

SIZE = 128


def _median_seconds(step, repeats: int) -> float:
    step()  # warm-up (allocations, oneDNN kernel choice)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def segmentation_speed(model: nn.Module, repeats: int, train: bool = True) -> tuple[float | None, float]:
    """(training samples/s at batch 16, or None when not ``train``; inference ms per slice at batch 10)."""
    x = torch.randn(16, 1, SIZE, SIZE)
    y = torch.randint(0, 5, (16, SIZE, SIZE))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        F.cross_entropy(out, y).backward()
        optimizer.step()

    from napari_lvseg.data.normalize import model_context

    x_eval = torch.randn(10, 1 + 2 * model_context(model), SIZE, SIZE)  # a 2.5-D model reads neighbours too

    def infer():
        model.eval()
        with torch.no_grad():
            model(x_eval)

    train_rate = 16 / _median_seconds(train_step, repeats) if train else None
    return train_rate, 1000 * _median_seconds(infer, repeats) / 10


def pix2pix_speed(base_width: int, repeats: int) -> tuple[float, float]:
    """(generator ms per image at batch 1 with dropout noise, G+D train-step seconds at batch 1)."""
    from napari_lvseg.models.pix2pix import PatchDiscriminator, Pix2PixGenerator, one_hot

    generator = Pix2PixGenerator(base_width=base_width)
    discriminator = PatchDiscriminator(base_width=base_width)
    labels = torch.randint(0, 5, (1, SIZE, SIZE))
    cond = one_hot(labels)
    real = torch.rand(1, 1, SIZE, SIZE) * 2 - 1
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()

    def gan_step():
        generator.train()
        fake = generator(cond)
        opt_d.zero_grad(set_to_none=True)
        d_real, d_fake = discriminator(cond, real), discriminator(cond, fake.detach())
        ((bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))) / 2).backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        d_fake = discriminator(cond, fake)
        (bce(d_fake, torch.ones_like(d_fake)) + 100 * F.l1_loss(fake, real)).backward()
        opt_g.step()

    generate_ms = 1000 * _median_seconds(lambda: generator.generate(labels, seed=0), repeats)
    return generate_ms, _median_seconds(gan_step, repeats)


def build(name: str) -> nn.Module:
    """The models of the table, by row name."""
    torch.manual_seed(0)
    if name == "monai":
        from monai.networks.nets import AttentionUnet

        return AttentionUnet(spatial_dims=2, in_channels=1, out_channels=5,
                             channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2))
    if name == "bundled":
        from napari_lvseg.models.registry import load_model

        return load_model(None, task="segmentation")[0]
    from napari_lvseg.models.attention_res_unet import AttentionResUNet

    width = int(name.split("w")[-1])
    return AttentionResUNet(base_width=width, deep_supervision=True)


ROWS = {"monai": "MONAI AttentionUnet (16..256) [baseline]", "w8": "AttentionResUNet width 8",
        "w12": "AttentionResUNet width 12", "w16": "AttentionResUNet width 16", "w20": "AttentionResUNet width 20",
        "bundled": "lvseg-seg, bundled default (inference only)"}


def measure_one(name: str, repeats: int) -> dict:
    """One row, in its own process so that its peak memory is its own."""
    import resource

    model = build(name)
    # the bundled default is an ensemble of trained networks: it is run, never trained as one
    train, infer = segmentation_speed(model, repeats, train=name != "bundled")
    stack_ms = None
    if name != "monai":
        # the whole pipeline a user calls: normalisation, crop, network, post-processing, paste back
        import numpy as np

        from napari_lvseg.inference import segment
        from napari_lvseg.models.card import ModelCard

        card = ModelCard(name=name, task="segmentation", architecture=type(model).__name__, input_size=SIZE)
        stack = np.random.default_rng(0).normal(2300, 200, (10, SIZE, SIZE)).astype(np.float32)
        stack_ms = 1000 * _median_seconds(lambda: segment(stack, (model, card)), repeats)
    return {"train": train, "infer": infer, "stack_ms": stack_ms,
            "params": sum(p.numel() for p in model.parameters()),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    import json
    import subprocess
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--no-pix2pix", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.repeats)))
        return

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, threads={threads}, input {SIZE}x{SIZE}, median of {args.repeats}; "
          "each row in its own process (peak memory = that process's max RSS)")
    print(f"\n{'segmentation model':42s} {'params':>9s} {'train smp/s':>12s} {'infer ms/slice':>15s} "
          f"{'segment() ms/10 slices':>23s} {'peak MB':>8s} {'train x base':>13s} {'infer x base':>13s}")
    base = None
    for key, label in ROWS.items():
        out = subprocess.run([sys.executable, __file__, "--one", key, "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or row
        stack = f"{row['stack_ms']:.0f}" if row["stack_ms"] else "-"
        # "x base": ours/baseline speed (>1 = faster than the baseline).
        train = f"{row['train']:12.2f} " if row["train"] else f"{'-':>12s} "
        train_ratio = f"{row['train'] / base['train']:13.2f}" if row["train"] else f"{'-':>13s}"
        print(f"{label:42s} {row['params']:9,d} {train}{row['infer']:15.2f} {stack:>23s} "
              f"{row['peak_mb']:8.0f} {train_ratio} {base['infer'] / row['infer']:13.2f}")
    if args.no_pix2pix:
        return
    print(f"\n{'pix2pix (G d=6 + PatchGAN n=3)':42s} {'generate ms/img':>16s} {'G+D step s (batch 1)':>21s}")
    for width in (16, 32):
        generate_ms, step_s = pix2pix_speed(width, args.repeats)
        print(f"{'base_width=' + str(width):42s} {generate_ms:16.1f} {step_s:21.3f}")


if __name__ == "__main__":
    main()
