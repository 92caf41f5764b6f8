"""ArtNet frames per second at 512x512, batch 1: dense, zero-channel pruned, further pruned with
l1 / cpmc (30% and 50% of the channels), and the VGG-19 AdaIN baseline — same run, same backend
(eager PyTorch), variants timed in alternating blocks.

    .venv/bin/python benchmarks/artnet_fps.py --json benchmarks/results/artnet/fps_cpu.json
    .venv/bin/python benchmarks/artnet_fps.py --device cuda --json fps_cuda.json     # on a GPU machine

One frame = ``net(content, style)`` for a 512x512 content and style image: both encoder passes,
the transform (S² by default) and the decoder. Zero-channel pruning is calibrated on
``--calib`` content/style pairs of scikit-image's sample images at ``--calib-size``, and its
exactness is reported on those pairs and on held-out pairs at the benchmark size. The ArtNet
weights are the bundled checkpoint when there is one (random seeded encoder + decoder trained by
benchmarks/artnet_train_decoder.py), else random; the VGG-19 baseline has random weights (no
download) — timing does not depend on the values, zero-channel counts do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import fxprune  # noqa: E402
from fxprune.methods import zero_channel_prune  # noqa: E402
from fxprune.apps import artnet as A  # noqa: E402

PAIRS = [("astronaut", "hubble_deep_field"), ("chelsea", "immunohistochemistry"), ("rocket", "retina"),
         ("motorcycle_left", "astronaut"), ("immunohistochemistry", "chelsea"), ("retina", "rocket")]
HELDOUT = [("coffee", "hubble_deep_field"), ("coffee", "immunohistochemistry")]


def pair(names: tuple[str, str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return A.load_image(f"skimage:{names[0]}", size), A.load_image(f"skimage:{names[1]}", size)


def gflops(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(*inputs)
    return fc.get_total_flops() / 1e9


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def time_variants(models: dict[str, torch.nn.Module], inputs: tuple[torch.Tensor, ...], device: str, *, blocks: int,
                  iters: int, warmup: int, progress: Progress) -> dict[str, list[float]]:
    """Per-frame milliseconds of every variant, measured in ``blocks`` rounds that alternate the
    variants (so drifting machine load hits all alike)."""
    times: dict[str, list[float]] = {k: [] for k in models}
    task = progress.add_task("timing", total=blocks * len(models))
    for _ in range(blocks):
        for name, m in models.items():
            for _ in range(warmup):
                m(*inputs)
            sync(device)
            for _ in range(iters):
                t = time.perf_counter()
                m(*inputs)
                sync(device)
                times[name].append((time.perf_counter() - t) * 1e3)
            progress.update(task, advance=1, description=f"timing {name}")
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--transform", default="s2", choices=sorted(A.TRANSFORMS))
    p.add_argument("--max-patches", type=int, default=1024)
    p.add_argument("--calib", type=int, default=6, help="calibration pairs for zero-channel pruning")
    p.add_argument("--calib-size", type=int, default=256)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--decoder-weights", help="ArtNet checkpoint (default: the bundled one, else random)")
    p.add_argument("--encoder-weights", help="local torchvision GoogLeNet checkpoint (then the bundled decoder, "
                                             "trained for the seeded encoder, is not used)")
    p.add_argument("--vgg-weights", help="local torchvision VGG-19 checkpoint for the baseline")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (GPU)")
    p.add_argument("--json", help="write the results here (and a .md table beside it)")
    args = p.parse_args()
    console = Console()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.device == "cuda" and not torch.cuda.is_available():
        console.print("[red]error:[/red] --device cuda but torch sees no CUDA device")
        return 2
    weights = args.decoder_weights or (A.default_decoder_weights() if args.encoder_weights is None else None)
    dense = A.ArtNet(args.transform, decoder_weights=weights, encoder_weights=args.encoder_weights,
                     max_patches=args.max_patches).eval()
    calib = [(pair(PAIRS[i % len(PAIRS)], args.calib_size), None) for i in range(args.calib)]
    example = pair(PAIRS[0], 64)
    t0 = time.perf_counter()
    zero = zero_channel_prune(dense, calib, example)
    zero_seconds = time.perf_counter() - t0
    models: dict[str, torch.nn.Module] = {"ArtNet dense": dense, "ArtNet zero-channel": zero.model}
    for crit in ("l1", "cpmc"):
        for sp in (0.3, 0.5):
            models[f"ArtNet zero + {crit} {int(sp * 100)}%"] = fxprune.compile(
                zero.model, fxprune.Plan(sparsity=sp, criterion=crit), example)
    models["VGG-19 AdaIN (baseline)"] = A.VGGAdaIN(weights=args.vgg_weights).eval()
    bench_inputs = pair(PAIRS[0], args.size)
    # exactness of zero-channel pruning away from its calibration data, at the benchmark size
    held_err = held_ref = 0.0
    with torch.no_grad():
        for names in HELDOUT:
            x = pair(names, args.size)
            d, z = dense(*x), zero.model(*x)
            held_err, held_ref = max(held_err, float((d - z).abs().max())), max(held_ref, float(d.abs().max()))
    info = {name: {"params": sum(t.numel() for t in m.state_dict().values() if t.is_floating_point()),
                   "gflops": gflops(m, bench_inputs)} for name, m in models.items()}
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = {k: m.to(device=device, memory_format=fmt) for k, m in models.items()}
    inputs = tuple(x.to(device=device, memory_format=fmt) for x in bench_inputs)
    with Progress(console=console, transient=True) as bar:
        times = time_variants(models, inputs, args.device, blocks=args.blocks, iters=args.iters, warmup=args.warmup,
                              progress=bar)
    med = {k: statistics.median(v) for k, v in times.items()}
    base, vgg = med["ArtNet dense"], med["VGG-19 AdaIN (baseline)"]
    variants = {}
    for k, v in times.items():
        q = statistics.quantiles(v, n=10, method="inclusive") if len(v) >= 2 else [v[0]] * 9
        variants[k] = {"fps": 1e3 / med[k], "median_ms": med[k], "p10_ms": q[0], "p90_ms": q[-1], "frames": len(v),
                       "speedup_vs_dense": base / med[k], "speedup_vs_vgg_adain": vgg / med[k], **info[k]}
    dev_name = torch.cuda.get_device_name(0) if args.device == "cuda" else (platform.processor() or platform.machine())
    result = {
        "format": "fxprune.artnet_fps/1", "command": " ".join(["benchmarks/artnet_fps.py", *sys.argv[1:]]),
        "device": args.device, "device_name": dev_name, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "size": args.size, "batch": 1, "transform": args.transform, "max_patches": args.max_patches,
        "weights": str(weights) if weights else "random (seeded)", "encoder_weights": args.encoder_weights,
        "variants": variants,
        "zero_channel": {**zero.to_dict(), "calibration_pairs": args.calib, "calibration_size": args.calib_size,
                         "seconds": zero_seconds, "heldout_max_abs_error": held_err,
                         "heldout_max_abs_output": held_ref, "heldout_size": args.size},
    }
    t = Table(title=f"ArtNet {args.size}x{args.size}, batch 1, {args.device} ({dev_name}), eager PyTorch")
    for col in ("variant", "FPS", "ms (p10-p90)", "vs dense", "vs VGG AdaIN", "GFLOPs", "params"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for k, v in variants.items():
        t.add_row(k, f"{v['fps']:.2f}", f"{v['median_ms']:.0f} ({v['p10_ms']:.0f}-{v['p90_ms']:.0f})",
                  f"{v['speedup_vs_dense']:.2f}x", f"{v['speedup_vs_vgg_adain']:.2f}x", f"{v['gflops']:.1f}",
                  f"{v['params'] / 1e6:.2f}M")
    console.print(t)
    console.print(f"zero-channel: {zero.removed} of {zero.prunable} channels removed; max |dense - pruned| "
                  f"{zero.max_abs_error:.2g} on the calibration pairs, {held_err:.2g} on held-out pairs "
                  f"(output scale {held_ref:.2g})")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        rows = ["| variant | FPS | ms (p10-p90) | vs dense | vs VGG-19 AdaIN | GFLOPs | params |", "|---|---|---|---|---|---|---|"]
        for k, v in variants.items():
            rows.append(f"| {k} | {v['fps']:.2f} | {v['median_ms']:.0f} ({v['p10_ms']:.0f}-{v['p90_ms']:.0f}) | "
                        f"{v['speedup_vs_dense']:.2f}x | {v['speedup_vs_vgg_adain']:.2f}x | {v['gflops']:.1f} | "
                        f"{v['params'] / 1e6:.2f}M |")
        out.with_suffix(".md").write_text("\n".join(rows) + "\n")
        console.print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
