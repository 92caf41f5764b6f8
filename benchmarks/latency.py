"""Realised latency of pruned models: dense vs pruned in the same run, per backend, in separate
worker processes (``fxprune.bench.compare``).

    python benchmarks/latency.py                                  # README table: resnet50, mobilenet_v2, densenet121
    python benchmarks/latency.py --models resnet50 --batch 8 --backends ort --round-to 1 8 16 32
    python benchmarks/latency.py --plans latency --target 0.5 --backend ort --batch 1 \
        --models resnet50 mobilenet_v2 mnasnet1_0 efficientnet_b0 regnet_y_800mf convnext_tiny
                                                                  # Plan(latency=0.5, backend="ort"): lands within 10%?
    python benchmarks/latency.py --sweep --backends ort --batch 1 # every torchvision classifier (long)
    python benchmarks/latency.py --device cuda                    # GPU backends, on a GPU machine

Writes ``benchmarks/results/latency/<name>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fxprune  # noqa: E402
from fxprune.bench import BenchConfig, compare  # noqa: E402
from fxprune.bench.plots import plot_latency  # noqa: E402
from fxprune.models import get_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latency"
CPU_BACKENDS = ["eager", "ort"]
CUDA_BACKENDS = ["cuda-fp16", "cuda-graphs", "cuda-compile", "ort-cuda", "ort-trt", "trt"]


def sweep_models() -> list[str]:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return [n for n in names if n not in ("vit_h_14", "regnet_y_128gf")]


def plan_for(kind: str, args: argparse.Namespace, round_to: int | str) -> fxprune.Plan:
    backend = args.backend if (kind == "latency" or round_to == "auto") else None
    if kind == "latency":
        return fxprune.Plan(latency=args.target, backend=backend, round_to=round_to)
    if kind == "flops":
        return fxprune.Plan(flops=args.target, round_to=round_to, backend=backend)
    return fxprune.Plan(sparsity=args.sparsity, criterion=args.criterion, round_to=round_to, backend=backend)


def _round_to(text: str) -> int | str:
    return text if text == "auto" else int(text)


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backends = args.backends or (CUDA_BACKENDS if args.device == "cuda" else CPU_BACKENDS)
    models = [m for m in (sweep_models() if args.sweep else args.models) if m not in args.exclude]
    rows: list[dict] = []
    for i, name in enumerate(models):
        spec = name if ":" in name else f"torchvision:{name}"
        try:
            model, shape = get_model(spec)
        except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
            rows.append({"model": spec, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if args.input_size:
            shape = (shape[0], shape[1], args.input_size, args.input_size)
        torch.manual_seed(0)
        x = torch.randn(*shape)
        for kind in args.plans:
            for r in args.round_to:
                t0 = time.perf_counter()
                try:
                    plan = plan_for(kind, args, r)
                    small = fxprune.compile(model, plan, example_inputs=(x,), verify=False)
                    compile_s = time.perf_counter() - t0
                    rep = fxprune.report(small)
                    res = compare(model, small, (x,), BenchConfig(
                        backends=backends, batch=args.batch, threads=args.threads, warmup=args.warmup,
                        iters=args.iters, processes=args.processes,
                        extra={"model": spec, "plan": plan.to_dict(), "plan_kind": kind, "round_to": r}))
                except Exception as exc:  # noqa: BLE001
                    rows.append({"model": spec, "plan_kind": kind, "round_to": r,
                                 "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                    print(f"[{i + 1}/{len(models)}] {spec} {kind} round_to={r}: FAILED {rows[-1]['error']}", flush=True)
                    continue
                res["compile_s"], res["plan_measurement"] = compile_s, rep.latency
                res["table_s"] = rep.seconds.get("backend")
                rows.append(res)
                if rep.latency:
                    its = rep.latency["iterations"]
                    print(f"    measured while planning on {rep.latency['backend']} (round_to {rep.latency['round_to']}): "
                          + ", ".join(f"{it['ratio']:.3f}" for it in its) + f" [{compile_s:.0f}s]", flush=True)
                line = ", ".join(f"{b}: {v['dense']['median_ms']:.2f} -> {v['pruned']['median_ms']:.2f} ms "
                                 f"({v['speedup']:.2f}x, {v['efficiency']:.2f} of MACs)" for b, v in res["backends"].items())
                print(f"[{i + 1}/{len(models)}] {spec} {kind} round_to={r}: MACs {res['theoretical_speedup']:.2f}x fewer; "
                      f"{line} [{time.perf_counter() - t0:.0f}s]", flush=True)
                (out / f"{args.name}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
                write_markdown(rows, args, out)  # after every model: a stopped sweep keeps what it measured
    write_markdown(rows, args, out)
    ok = [r for r in rows if "backends" in r]
    if ok:
        plot_latency(ok, out / f"{args.name}.png", title=f"dense -> pruned, batch {args.batch}, {args.device}")
    return rows


def write_markdown(rows: list[dict], args: argparse.Namespace, out: Path) -> None:
    lines = [f"Command: `{args.command}`", "",
             f"batch {args.batch}; median of {args.processes} worker processes x {args.iters} iterations; "
             f"threads {args.threads or 'all'}; speed-up = dense / pruned median latency; "
             "realised / MACs = speed-up divided by the MACs ratio dense / pruned.", "",
             "planning: the latency ratios measured on the plan's backend while compiling, one per "
             "iteration (the closed loop), and the compile seconds (latency tables included).", "",
             "| model | plan | round_to | MACs dense/pruned | backend | dense ms | pruned ms | speed-up | realised / MACs "
             "| planning |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    effs: dict[str, list[float]] = {}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r.get('plan_kind', '')} | {r.get('round_to', '')} | failed: {r['error'][:160]} |"
                         " | | | | | |")
            continue
        for b, v in r["backends"].items():
            effs.setdefault(b, []).append(v["efficiency"])
            lines.append(f"| {r['model'].split(':')[-1]} | {r['plan_kind']} | {r['round_to']} | "
                         f"{r['theoretical_speedup']:.2f}x | {b} | {v['dense']['median_ms']:.2f} | "
                         f"{v['pruned']['median_ms']:.2f} | {v['speedup']:.2f}x | {v['efficiency']:.2f} | "
                         f"{_planning(r)} |")
        for b, why in r.get("skipped", {}).items():
            lines.append(f"| {r['model'].split(':')[-1]} | {r['plan_kind']} | {r['round_to']} | | {b} | skipped: {why} | | | | |")
    lines.append("")
    for b, e in effs.items():
        lines.append(f"- {b}: median realised / MACs over {len(e)} rows: {statistics.median(e):.2f}")
    speed = {b: [r["backends"][b]["speedup"] for r in rows if b in r.get("backends", {})] for b in effs}
    for b, sp in speed.items():
        slow = [r["model"].split(":")[-1] for r in rows if b in r.get("backends", {}) and r["backends"][b]["speedup"] < 1]
        lines.append(f"- {b}: median speed-up {statistics.median(sp):.2f}x; slower than dense: {len(slow)}"
                     + (f" ({', '.join(slow)})" if slow else ""))
    warn = sorted({w for r in rows for w in r.get("warnings", [])})
    for w in warn[:3]:
        lines.append(f"- warning during the run: {w}")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


def _planning(r: dict) -> str:
    m = r.get("plan_measurement")
    secs = f"{r['compile_s']:.0f} s" if r.get("compile_s") is not None else ""
    if not m:
        return secs
    its = " -> ".join(f"{it['ratio']:.2f}" for it in m["iterations"])
    return f"{its} (step {m['round_to']}); {secs}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2", "densenet121"])
    p.add_argument("--sweep", action="store_true", help="every torchvision classifier (but the two giants)")
    p.add_argument("--exclude", nargs="*", default=[], help="model names left out (e.g. of --sweep)")
    p.add_argument("--backends", nargs="+", help="default: eager ort (cpu) / the CUDA backends (cuda)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--plans", nargs="+", default=["sparsity"], choices=["sparsity", "flops", "latency"])
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--target", type=float, default=0.5, help="fraction kept for flops / latency plans")
    p.add_argument("--criterion", default="l1")
    p.add_argument("--round-to", nargs="+", type=_round_to, default=["auto"],
                   help="integers or auto (the plan backend's measured step; default)")
    p.add_argument("--backend", default="ort", choices=["ort", "eager"],
                   help="where latency plans and round_to=auto are measured (default ort)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-size", type=int, help="override the input resolution")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--processes", type=int, default=3)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--name", default="latency", help="output file stem")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    args.command = "python benchmarks/latency.py " + " ".join(sys.argv[1:])
    run(args)


if __name__ == "__main__":
    main()
