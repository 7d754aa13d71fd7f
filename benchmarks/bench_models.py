"""CPU speed of the networks: run ``OMP_NUM_THREADS=2 python benchmarks/bench_models.py``.

Prints, for 128x128 slices: training throughput (forward+backward+SGD step, batch 16, samples/s) and
inference time (batch 10, no_grad, ms per slice) of AttentionResUNet at several widths and norms and of
MONAI's AttentionUnet (the baseline), then Pix2Pix generator inference and GAN train-step time.
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


def segmentation_speed(model: nn.Module, repeats: int) -> tuple[float, float]:
    """(training samples/s at batch 16, inference ms per slice at batch 10)."""
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

    x_eval = torch.randn(10, 1, SIZE, SIZE)

    def infer():
        model.eval()
        with torch.no_grad():
            model(x_eval)

    return 16 / _median_seconds(train_step, repeats), 1000 * _median_seconds(infer, repeats) / 10


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from monai.networks.nets import AttentionUnet

    from napari_lvseg.models.attention_res_unet import AttentionResUNet

    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, threads={threads}, input {SIZE}x{SIZE}, median of {args.repeats}")
    torch.manual_seed(0)
    baseline = AttentionUnet(spatial_dims=2, in_channels=1, out_channels=5,
                             channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2))
    rows = [("MONAI AttentionUnet (16..256) [baseline]", baseline)]
    for width in (8, 16, 32):
        rows.append((f"AttentionResUNet w={width} d=4 instance", AttentionResUNet(base_width=width)))
    rows.append(("AttentionResUNet w=16 d=4 batch", AttentionResUNet(base_width=16, norm="batch")))

    print(f"\n{'segmentation model':42s} {'params':>9s} {'train smp/s':>12s} {'infer ms/slice':>15s} "
          f"{'train x base':>13s} {'infer x base':>13s}")
    base_train = base_infer = None
    for name, model in rows:
        train, infer = segmentation_speed(model, args.repeats)
        if base_train is None:
            base_train, base_infer = train, infer
        n_params = sum(p.numel() for p in model.parameters())
        # "x base": ours/baseline speed (>1 = faster than the baseline).
        print(f"{name:42s} {n_params:9,d} {train:12.2f} {infer:15.2f} {train / base_train:13.2f} "
              f"{base_infer / infer:13.2f}")

    print(f"\n{'pix2pix (G d=6 + PatchGAN n=3)':42s} {'generate ms/img':>16s} {'G+D step s (batch 1)':>21s}")
    for width in (16, 32):
        generate_ms, step_s = pix2pix_speed(width, args.repeats)
        print(f"{'base_width=' + str(width):42s} {generate_ms:16.1f} {step_s:21.3f}")


if __name__ == "__main__":
    main()
