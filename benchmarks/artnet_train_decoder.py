"""Train ArtNet's decoder to invert its (frozen) encoder on scikit-image's bundled sample images.

Loss = pixel MSE + perceptual (feature) MSE, on random crops with flips and colour jitter.
Training images: every colour sample of ``fxprune.apps.artnet.SAMPLE_IMAGES`` except the
held-out one (``--heldout``, default coffee), on which the reconstruction PSNR is reported.

    .venv/bin/python benchmarks/artnet_train_decoder.py --steps 1500 --out benchmarks/results/artnet

writes ``artnet_decoder.pt`` (the whole ArtNet state dict in fp16: the seeded encoder and the
trained decoder), ``train_log.json`` and a reconstruction of the held-out image.
``--install`` also copies the checkpoint to fxprune/models/weights/ (the bundled one).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from rich.progress import Progress  # noqa: E402

from fxprune.apps import artnet as A  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(a.clamp(0, 1), b)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--perceptual", type=float, default=1.0)
    p.add_argument("--cut", default="inception3b")
    p.add_argument("--heldout", default="coffee")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/artnet")
    p.add_argument("--install", action="store_true", help="copy the checkpoint to fxprune/models/weights/")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in A.SAMPLE_IMAGES if n != args.heldout]
    images = [A.sample_image(n) for n in names]
    net = A.ArtNet(cut=args.cut, seed=args.seed)
    held = A.load_image(f"skimage:{args.heldout}", 256)
    with torch.no_grad():
        before = psnr(net.eval().reconstruct(held), held)
    t0 = time.time()
    with Progress() as bar:
        task = bar.add_task("decoder", total=args.steps)
        hist = A.train_decoder(net, images, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                               perceptual=args.perceptual, seed=args.seed,
                               progress=lambda s, r: bar.update(task, advance=1,
                                                                description=f"loss {r['loss']:.4f}"))
    seconds = time.time() - t0
    with torch.no_grad():
        rec = net.eval().reconstruct(held)
    after = psnr(rec, held)
    A.save_image(torch.cat([held, rec.clamp(0, 1)], dim=3), out / f"reconstruction_{args.heldout}.png")
    ckpt = out / "artnet_decoder.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, ckpt)
    log = {"command": " ".join(["benchmarks/artnet_train_decoder.py", *sys.argv[1:]]), "train_images": names, "heldout": args.heldout, "steps": args.steps,
           "batch": args.batch, "crop": args.crop, "lr": args.lr, "perceptual": args.perceptual, "cut": args.cut,
           "seconds": seconds, "heldout_psnr_db_before": before, "heldout_psnr_db_after": after,
           "loss_first_50": sum(h["loss"] for h in hist[:50]) / max(1, len(hist[:50])),
           "loss_last_50": sum(h["loss"] for h in hist[-50:]) / max(1, len(hist[-50:])),
           "history_every_50": hist[::50]}
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
    print(f"held-out {args.heldout} PSNR {before:.2f} -> {after:.2f} dB in {seconds:.0f} s; wrote {ckpt}")
    if args.install:
        A.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(ckpt, A.BUNDLED)
        print(f"installed {A.BUNDLED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
