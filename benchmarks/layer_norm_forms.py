"""The two forms of a pruned LayerNorm, timed against each other in one run: ``layer_norm="exact"``
(``DenseLayerNorm``: dense-count statistics, decomposed ops) and ``"native"`` (``nn.LayerNorm(K)``,
one fused op, a different function). Dense vs exact and exact vs native, eager torch and ONNX
Runtime CPU, in worker processes (``fxprune.bench.compare``).

    python benchmarks/layer_norm_forms.py                        # timm ViT-S, timm ConvNeXt-T, HF BERT
    python benchmarks/layer_norm_forms.py --models timm:vit_small_patch16_224 --batch 8

Writes ``benchmarks/results/layer_norm_forms.{json,md}``. Run it alone on the machine, from a
clone of the commit being measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/transformers.py is named like the HuggingFace package: keep this folder off the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

import fxprune  # noqa: E402
from fxprune.bench import BenchConfig, compare  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ["timm:vit_small_patch16_224", "timm:convnext_tiny", "hf:bert"]


def build(spec: str, batch: int) -> tuple[torch.nn.Module, tuple, dict]:
    kind, name = spec.split(":", 1)
    torch.manual_seed(0)
    if kind == "timm":
        import timm

        return timm.create_model(name, pretrained=False).eval(), (torch.randn(batch, 3, 224, 224),), {}
    if kind == "hf" and name == "bert":
        import transformers as T

        model = T.BertModel(T.BertConfig()).eval()
        return model, (torch.randint(0, 30522, (batch, 128)),), {"prune_outputs": True}
    raise SystemExit(f"unknown model spec {spec!r} (timm:NAME or hf:bert)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--backends", nargs="+", default=["eager", "ort"])
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    cfg = BenchConfig(backends=args.backends, processes=args.processes, iters=30, warmup=5)
    rows = []
    for spec in args.models:
        model, x, extra = build(spec, args.batch)
        smalls = {}
        for form in ("exact", "native"):
            t0 = time.perf_counter()
            smalls[form] = fxprune.compile(model, fxprune.Plan(sparsity=args.sparsity, layer_norm=form, **extra),
                                           example_inputs=x)
            rep = fxprune.report(smalls[form])
            print(f"{spec} {form}: MACs x{rep.macs_ratio:.3f}, error {rep.max_abs_error:.1e}, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        with torch.no_grad():
            differ = float((smalls["exact"](*x)[0] - smalls["native"](*x)[0]).abs().max()) if extra else \
                float((smalls["exact"](*x) - smalls["native"](*x)).abs().max())
        dense_exact = compare(model, smalls["exact"], x, cfg)
        exact_native = compare(smalls["exact"], smalls["native"], x, cfg, macs=(1.0, 1.0))
        row = {"model": spec, "sparsity": args.sparsity, "batch": args.batch,
               "macs_ratio": fxprune.report(smalls["exact"]).macs_ratio, "max_output_change_native": differ,
               "backends": {}}
        for b in args.backends:
            if b not in dense_exact["backends"]:
                continue
            d, e = dense_exact["backends"][b]["dense"]["median_ms"], dense_exact["backends"][b]["pruned"]["median_ms"]
            e2, n = exact_native["backends"][b]["dense"]["median_ms"], exact_native["backends"][b]["pruned"]["median_ms"]
            row["backends"][b] = {"dense_ms": d, "exact_ms": e, "exact_ms_second_run": e2, "native_ms": n,
                                  "speedup_exact": d / e, "native_over_exact": e2 / n}
            print(f"  {b}: dense {d:.2f} ms, exact {e:.2f} ms (x{d / e:.2f}); native {n:.2f} ms vs exact {e2:.2f} ms "
                  f"in the same workers (x{e2 / n:.2f})", flush=True)
        rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layer_norm_forms.json").write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))
    lines = ["| model | backend | dense ms | exact ms (speed-up) | native ms | native vs exact |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        for b, v in r["backends"].items():
            lines.append(f"| {r['model']} | {b} | {v['dense_ms']:.2f} | {v['exact_ms']:.2f} (x{v['speedup_exact']:.2f}) "
                         f"| {v['native_ms']:.2f} | x{v['native_over_exact']:.2f} |")
    (out / "layer_norm_forms.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
