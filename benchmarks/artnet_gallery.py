"""The README's stylised pictures: content, style, and ArtNet's output with S², AdaIN and WCT
(bundled checkpoint: seeded random GoogLeNet encoder + decoder trained here), plus the
zero-channel-pruned S² model's output.

    .venv/bin/python benchmarks/artnet_gallery.py --out benchmarks/results/artnet/gallery.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fxprune.methods import zero_channel_prune  # noqa: E402
from fxprune.apps import artnet as A  # noqa: E402

PAIRS = [("astronaut", "hubble_deep_field"), ("chelsea", "immunohistochemistry"), ("rocket", "retina")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--out", default="benchmarks/results/artnet/gallery.png")
    args = p.parse_args()
    nets = {t: A.ArtNet(t, decoder_weights="bundled").eval() for t in ("s2", "adain", "wct")}
    pairs = [(A.load_image(f"skimage:{c}", args.size), A.load_image(f"skimage:{s}", args.size)) for c, s in PAIRS]
    zero = zero_channel_prune(nets["s2"], [((c, s), None) for c, s in pairs]).model
    cols = ["content", "style", "S²", "AdaIN", "WCT", "S², zero-channel pruned"]
    fig, axes = plt.subplots(len(pairs), len(cols), figsize=(2.2 * len(cols), 2.3 * len(pairs)))
    with torch.no_grad():
        for i, (c, s) in enumerate(pairs):
            outs = [c, s, nets["s2"](c, s), nets["adain"](c, s), nets["wct"](c, s), zero(c, s)]
            for j, img in enumerate(outs):
                ax = axes[i, j]
                ax.imshow(img[0].clamp(0, 1).permute(1, 2, 0).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(cols[j], fontsize=9)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
