"""Models symbolic tracing cannot read, pruned on every capture path.

    .venv/bin/python benchmarks/capture_zoo.py                 # all models, all paths
    .venv/bin/python benchmarks/capture_zoo.py --models ssdlite fasterrcnn --captures auto run

For each model and capture (``auto``, ``fx``, ``export``, ``run``): ``fxprune.compile`` at
sparsity 0.5 from random weights, with verification; writes the capture path ``auto`` chose, the
MACs and params ratios, the verification error and the seconds (median of ``--repeat`` runs
after one warm-up), or the first line of the error. Writes ``capture_zoo.{csv,md}`` to
``--out-dir`` (default ``benchmarks/results``). Run alone on the machine: the seconds are CPU
wall-clock.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

import fxprune


class ShapeBranchVGG(nn.Module):
    """A CIFAR-style VGG whose forward branches on the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
                                      nn.MaxPool2d(2),
                                      nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU())
        self.fc = nn.Linear(256 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1]
        y = self.features(x)
        if h == 32:
            y = F.max_pool2d(y, 4)
        return self.fc(y.flatten(1))


class FeatureFlag(nn.Module):
    """A ResNet-ish block with an optional ``return_features=False`` flag."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
                                   nn.Conv2d(128, 64, 3, padding=1), nn.BatchNorm2d(64))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> Any:
        x = self.stem(x)
        f = torch.relu(x + self.block(x))
        out = self.fc(f.mean((2, 3)))
        return (out, f) if return_features else out


def _einops_vit() -> nn.Module:
    from einops import rearrange, repeat

    class Block(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = rearrange(self.qkv(self.n1(x)), "b n (t h d) -> t b h n d", t=3, h=4)
            a = F.scaled_dot_product_attention(q, k, v)
            x = x + self.proj(rearrange(a, "b h n d -> b n (h d)"))
            return x + self.mlp(self.n2(x))

    class EinopsViT(nn.Module):
        def __init__(self, d: int = 128) -> None:
            super().__init__()
            self.patch = nn.Linear(48, d)
            self.cls = nn.Parameter(torch.randn(1, 1, d))
            self.blocks = nn.Sequential(*[Block(d) for _ in range(4)])
            self.head = nn.Linear(d, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.patch(rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4))
            x = torch.cat([repeat(self.cls, "1 1 d -> b 1 d", b=x.shape[0]), x], 1)
            return self.head(self.blocks(x)[:, 0])

    return EinopsViT()


def _hf(name: str) -> tuple[nn.Module, tuple[Any, ...]]:
    import transformers as T

    ids = torch.randint(0, 128, (1, 32))
    if name == "bert":
        cfg = T.BertConfig(vocab_size=128, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=512)
        return T.BertModel(cfg), (ids,)
    if name == "hf_vit":
        cfg = T.ViTConfig(image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=512)
        return T.ViTModel(cfg), (torch.randn(1, 3, 32, 32),)
    if name == "gpt2":
        cfg = T.GPT2Config(vocab_size=128, n_positions=64, n_embd=128, n_layer=2, n_head=4, use_cache=False,
                           bos_token_id=0, eos_token_id=0)
        return T.GPT2LMHeadModel(cfg), (ids,)
    cfg = T.LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, use_cache=False,
                        bos_token_id=0, eos_token_id=0)
    return T.LlamaForCausalLM(cfg), (ids,)


def _detector(name: str) -> tuple[nn.Module, tuple[Any, ...]]:
    import torchvision

    fn = getattr(torchvision.models.detection, name)
    return fn(weights=None, weights_backbone=None), ([torch.rand(3, 320, 320), torch.rand(3, 300, 340)],)


def _raft() -> tuple[nn.Module, tuple[Any, ...]]:
    import torchvision

    return torchvision.models.optical_flow.raft_small(weights=None), \
        (torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[Any, ...]]]] = {
    "ssdlite": lambda: _detector("ssdlite320_mobilenet_v3_large"),
    "fasterrcnn": lambda: _detector("fasterrcnn_mobilenet_v3_large_320_fpn"),
    "raft_small": _raft,
    "vgg_shape_branch": lambda: (ShapeBranchVGG(), (torch.randn(2, 3, 32, 32),)),
    "return_features_flag": lambda: (FeatureFlag(), (torch.randn(2, 3, 32, 32),)),
    "einops_vit": lambda: (_einops_vit(), (torch.randn(2, 3, 32, 32),)),
    "bert": lambda: _hf("bert"),
    "hf_vit": lambda: _hf("hf_vit"),
    "gpt2": lambda: _hf("gpt2"),
    "llama": lambda: _hf("llama"),
}
CAPTURES = ("auto", "fx", "export", "run")


def measure(name: str, capture: str, repeat: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model.eval()
    row: dict[str, Any] = {"model": name, "capture": capture}
    times = []
    try:
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=inputs, capture=capture)
            if i:
                times.append(time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - a path that cannot read the model is a result
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        row.update(ok=False, error=f"{type(exc).__name__}: {text[:140]}")
        return row
    rep = fxprune.report(small)
    row.update(ok=True, used=rep.capture, macs_ratio=round(rep.macs_ratio, 4),
               params_ratio=round(rep.params_after / rep.params_before, 4),
               max_abs_error=rep.max_abs_error, seconds=round(statistics.median(times), 2),
               pruned_type=type(small).__name__)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | capture asked | used | MACs ratio | params ratio | max abs error | s | result |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["ok"]:
            lines.append(f"| {r['model']} | {r['capture']} | {r['used']} | {r['macs_ratio']:.3f} | "
                         f"{r['params_ratio']:.3f} | {r['max_abs_error']:.2g} | {r['seconds']:.2f} | "
                         f"{r['pruned_type']} |")
        else:
            lines.append(f"| {r['model']} | {r['capture']} | - | - | - | - | - | {r['error'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--captures", nargs="*", choices=CAPTURES, default=list(CAPTURES))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    rows = []
    for name in args.models:
        for capture in args.captures:
            row = measure(name, capture, args.repeat)
            rows.append(row)
            print(f"{name:22s} {capture:7s} " + (f"{row['used']:7s} MACs {row['macs_ratio']:.3f}  "
                                                  f"err {row['max_abs_error']:.2g}  {row['seconds']:.2f}s"
                                                  if row["ok"] else row["error"][:100]), flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["model", "capture", "ok", "used", "macs_ratio", "params_ratio", "max_abs_error", "seconds",
            "pruned_type", "error"]
    with open(args.out_dir / "capture_zoo.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    head = ("# Models symbolic tracing cannot read, on every capture path\n\n"
            f"`{' '.join(['benchmarks/capture_zoo.py'] + sys.argv[1:])}`; random weights, sparsity 0.5, CPU, "
            f"torch {torch.__version__}; seconds: median of {args.repeat} compile(s) after a warm-up, "
            "verification included.\n\n")
    (args.out_dir / "capture_zoo.md").write_text(head + markdown(rows))
    print(f"wrote {args.out_dir / 'capture_zoo.csv'}, capture_zoo.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
