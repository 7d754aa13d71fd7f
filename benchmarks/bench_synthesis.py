"""CPU time of one synthesized 128x128 image: ``OMP_NUM_THREADS=2 python benchmarks/bench_synthesis.py``.

Times `napari_lvseg.synthesis.ms_per_image` (the whole `synthesize` call: checks, grid, generator with
dropout noise, intensity mapping) for the default synthesis model if one is installed, and for freshly
built Pix2Pix generators (depth 6) at base widths 16 and 32. Baseline, in the same run: one forward pass
of the segmentation network (AttentionResUNet width 16, depth 4, eval, batch 1) per slice. Ratio =
synthesis ms / baseline ms. Medians of a few repeats after a warm-up; a shared machine makes them noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SIZE = 128


def baseline_ms(repeats: int) -> float:
    from napari_lvseg.models.attention_res_unet import AttentionResUNet

    model = AttentionResUNet(base_width=16, depth=4).eval()
    x = torch.randn(1, 1, SIZE, SIZE)
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_lvseg.errors import LvsegError
    from napari_lvseg.models.pix2pix import Pix2PixGenerator
    from napari_lvseg.synthesis import load_synthesis_model, ms_per_image

    torch.manual_seed(0)
    base = baseline_ms(args.repeats)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, {SIZE}x{SIZE}, median of {args.repeats}")
    print(f"\n{'model':52s} {'params':>9s} {'ms/image':>9s} {'x baseline':>11s}")
    print(f"{'[baseline] AttentionResUNet w=16 d=4 forward/slice':52s} {'':>9s} {base:9.1f} {1.0:11.2f}")
    rows = []
    try:
        net, card = load_synthesis_model(None)
        rows.append((f"default synthesis model '{card.name}' w={card.params.get('base_width')}", (net, card), net))
    except LvsegError as exc:
        print(f"(no default synthesis model: {exc})")
    for width in (16, 32):
        net = Pix2PixGenerator(base_width=width, depth=6).eval()
        rows.append((f"fresh Pix2PixGenerator w={width} d=6", net, net))
    for name, model, net in rows:
        ms = ms_per_image(model, size=SIZE, repeats=args.repeats)
        n_params = sum(p.numel() for p in net.parameters())
        print(f"{name:52s} {n_params:9,d} {ms:9.1f} {ms / base:11.2f}")


if __name__ == "__main__":
    main()
