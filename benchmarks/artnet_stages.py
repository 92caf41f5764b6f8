"""Where a dense ArtNet frame goes: the two encoder passes, the transform and the decoder, timed
separately at 512x512, batch 1 (eager PyTorch, median of --iters frames after --warmup).

    .venv/bin/python benchmarks/artnet_stages.py --json benchmarks/results/artnet/stages_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from artnet_fps import PAIRS, pair  # noqa: E402

from fxprune.apps import artnet as A  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--transform", default="s2", choices=sorted(A.TRANSFORMS))
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    net = A.ArtNet(args.transform, decoder_weights="bundled" if A.default_decoder_weights() else None).eval()
    c, s = pair(PAIRS[0], args.size)
    times: dict[str, list[float]] = {"encoder x2": [], "transform": [], "decoder": [], "total": []}
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            fc, fs = net.encoder(c), net.encoder(s)
            t1 = time.perf_counter()
            t = net.transform(fc, fs)
            t2 = time.perf_counter()
            net.decoder(t)
            t3 = time.perf_counter()
            if i >= args.warmup:
                for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    times[k].append(v * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(", ".join(f"{k} {v:.0f} ms" for k, v in med.items()) + f"; transform share {med['transform'] / med['total']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": " ".join(["benchmarks/artnet_stages.py", *sys.argv[1:]]),
                                               "size": args.size, "transform": args.transform,
                                               "threads": torch.get_num_threads(), "median_ms": med,
                                               "transform_share": med["transform"] / med["total"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
