"""How exact is zero-channel pruning of ArtNet, per transform?

Zero-channel pruning (calibrated on the same content/style pairs as benchmarks/artnet_fps.py) of
ArtNet with S², AdaIN and WCT; on every calibration pair: max |dense - pruned| and the fraction
of output values that differ by more than 1/255.

    .venv/bin/python benchmarks/artnet_zero_exactness.py --json benchmarks/results/artnet/zero_exactness.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from artnet_fps import PAIRS, pair  # noqa: E402

from fxprune.methods import zero_channel_prune  # noqa: E402
from fxprune.apps import artnet as A  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calib", type=int, default=6)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json")
    args = p.parse_args()
    calib = [(pair(PAIRS[i % len(PAIRS)], args.size), None) for i in range(args.calib)]
    out = {"command": " ".join(["benchmarks/artnet_zero_exactness.py", *sys.argv[1:]]), "size": args.size,
           "transforms": {}}
    for kind in ("s2", "adain", "wct"):
        net = A.ArtNet(kind, decoder_weights="bundled" if A.default_decoder_weights() else None).eval()
        z = zero_channel_prune(net, calib, pair(PAIRS[0], 64))
        per_pair = []
        with torch.no_grad():
            for (c, s), _ in calib:
                d = (net(c, s) - z.model(c, s)).abs()
                per_pair.append({"max_abs_error": float(d.max()), "fraction_over_1_255": float((d > 1 / 255).float().mean())})
        out["transforms"][kind] = {"removed": z.removed, "prunable": z.prunable, "max_abs_error": z.max_abs_error,
                                   "max_abs_output": z.max_abs_output, "pairs": per_pair}
        print(f"{kind}: {z.removed}/{z.prunable} channels removed, max |dense - pruned| {z.max_abs_error:.2g} "
              f"(output scale {z.max_abs_output:.2g}); values off by > 1/255 per pair: "
              f"{[round(q['fraction_over_1_255'], 5) for q in per_pair]}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
