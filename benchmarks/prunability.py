"""Every torchvision classifier pruned, verified and timed; optionally Torch-Pruning side by side.

    .venv/bin/python benchmarks/prunability.py                       # fxprune, 80 default models
    .venv/bin/python benchmarks/prunability.py --peer torch-pruning  # + Torch-Pruning in the same run
    .venv/bin/python benchmarks/prunability.py --models resnet50 swin_t --peer torch-pruning
    .venv/bin/python benchmarks/prunability.py --all                 # + vit_h_14, regnet_y_128gf
    .venv/bin/python benchmarks/prunability.py --capture export --scopes local  # torch.export path forced,
                                                                     # MACs side by side with prunability.csv

Each (model, tool) runs in its own subprocess (clean peak-memory reading, and a hang or crash of
one tool cannot take the sweep down); Torch-Pruning gets ``--peer-timeout`` seconds. Writes
``benchmarks/results/prunability.csv`` (one row per model, tool and scope) and
``prunability.md`` (the side-by-side table the README shows). Torch-Pruning is a benchmark
dependency only: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

RESULTS = Path(__file__).parent / "results"
GIANTS = ("vit_h_14", "regnet_y_128gf")


# ---- measurement helpers ------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Peak resident memory above the level at entry, sampled every 2 ms (Linux /proc)."""
    out = {"peak_extra_mb": 0.0}
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()
        out["peak_extra_mb"] = (max(peak[0], _rss()) - base) / 2**20


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    from fxprune.models import get_model, randomize_for_verification

    torch.manual_seed(0)
    model, shape = get_model(f"torchvision:{name}")
    return randomize_for_verification(model), torch.randn(*shape)


def _forward_ok(model: torch.nn.Module, x: torch.Tensor, train: bool) -> tuple[bool, str]:
    try:
        model.train(train)
        with torch.no_grad():
            out = model(torch.cat([x, x]) if train and len(x) == 1 else x)  # batch 2 so BN can train
        leaves = [o for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        return True, "x".join(map(str, leaves[0].shape)) if leaves else ""
    except Exception as exc:  # record, do not stop the sweep
        return False, f"{type(exc).__name__}: {exc}"[:200]
    finally:
        model.eval()


# ---- one model, one tool -----------------------------------------------------------------------
def run_fxprune(name: str, sparsity: float = 0.5, scopes: tuple[str, ...] = ("local", "global"),
                capture: str = "auto", timed: bool = True) -> list[dict]:
    import fxprune

    model, x = build(name)
    if capture == "export":
        # a graph captured by torch.export is specialised to the example's batch size too: capture
        # at batch 2, the batch the train-mode forward check needs
        x = torch.cat([x, x])
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    rows = []
    for scope in scopes:
        row: dict[str, Any] = {"model": name, "tool": "fxprune", "scope": scope, "ok": False,
                               "weights_mb": round(weights_mb, 1)}
        plan = fxprune.Plan(sparsity=sparsity, criterion="l1", scope=scope)
        kw = {"example_inputs": (x,), "capture": capture}
        try:
            if timed:  # ``timed=False``: one verified compile only (the test suite's check)
                t0 = time.perf_counter()  # the first call in a fresh process: what a one-shot user sees
                fxprune.compile(model, plan, verify=False, **kw)
                row["cold_s"] = time.perf_counter() - t0
                gc.collect()  # free the previous result (FX GraphModules are reference cycles) outside the timing
                t0 = time.perf_counter()
                fxprune.compile(model, plan, verify=False, **kw)
                row["compile_noverify_s"] = time.perf_counter() - t0
                gc.collect()
            with peak_rss() as mem:
                t0 = time.perf_counter()
                small = fxprune.compile(model, plan, **kw)
                row["total_s"] = time.perf_counter() - t0
            rep = fxprune.report(small)
            row.update(ok=True, max_abs_error=rep.max_abs_error, relative_error=rep.relative_error,
                       params_ratio=rep.params_ratio, capture=rep.capture,
                       macs_ratio=rep.macs_ratio, train_graph=rep.train_graph, barriers=len(rep.barriers),
                       auto_leaves=len(rep.auto_leaves), peak_extra_mb=round(mem["peak_extra_mb"], 1),
                       **{f"{k}_s": v for k, v in rep.seconds.items()})
            row["eval_ok"], row["output_shape"] = _forward_ok(small, x, train=False)
            row["train_ok"], train_out = _forward_ok(small, x, train=True)
            if not row["train_ok"]:
                row["error"] = train_out
            row["ok"] = row["eval_ok"] and row["train_ok"]
        except Exception as exc:
            row.update(error_type=type(exc).__name__, error=str(exc).splitlines()[0][:300] if str(exc) else "")
        rows.append(row)
    return rows


def run_torch_pruning(name: str, sparsity: float = 0.5) -> list[dict]:
    """Torch-Pruning as a new user would run it: DependencyGraph + magnitude (L1) pruner at the same
    ratio, final 1000-way classifiers ignored."""
    import importlib.metadata

    import torch_pruning as tp

    model, x = build(name)
    row: dict[str, Any] = {"model": name, "tool": f"torch-pruning {importlib.metadata.version('torch-pruning')}",
                           "scope": "local", "ok": False}
    params = sum(p.numel() for p in model.parameters())

    def prune(m: torch.nn.Module) -> None:
        ignored = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear) and mod.out_features == 1000]
        pruner = tp.pruner.MagnitudePruner(m, x, importance=tp.importance.MagnitudeImportance(p=1),
                                           pruning_ratio=sparsity, ignored_layers=ignored)
        pruner.step()

    try:
        warm = copy.deepcopy(model)
        try:  # first call on a copy (Torch-Pruning prunes in place): cold; the timed call below is warm
            t0 = time.perf_counter()
            prune(warm)
            row["cold_s"] = time.perf_counter() - t0
        except Exception:
            pass
        del warm
        gc.collect()
        t0 = time.perf_counter()
        prune(model)
        row["total_s"] = time.perf_counter() - t0
        row["params_ratio"] = sum(p.numel() for p in model.parameters()) / params
        row["eval_ok"], row["output_shape"] = _forward_ok(model, x, train=False)
        row["train_ok"], train_out = _forward_ok(model, x, train=True)
        row["ok"] = row["eval_ok"] and row["train_ok"]
        if not row["ok"]:
            row["error"] = train_out if not row["train_ok"] else row["output_shape"]
    except Exception as exc:
        row.update(error_type=type(exc).__name__, error=str(exc).splitlines()[0][:300] if str(exc) else "")
    return [row]


TOOLS = {"fxprune": run_fxprune, "torch-pruning": run_torch_pruning}


def worker(tool: str, name: str, sparsity: float, scopes: tuple[str, ...], capture: str) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(int(os.environ.get("FXPRUNE_BENCH_THREADS", torch.get_num_threads())))
    try:
        rows = TOOLS[tool](name, sparsity, scopes=scopes, capture=capture) if tool == "fxprune" else \
            TOOLS[tool](name, sparsity)
    except Exception as exc:  # model could not even be built
        rows = [{"model": name, "tool": tool, "ok": False, "error_type": type(exc).__name__,
                 "error": traceback.format_exc(limit=1)[-300:]}]
    print("@@ROWS " + json.dumps(rows, default=float))


def in_subprocess(tool: str, name: str, sparsity: float, timeout: float, scopes: tuple[str, ...] = ("local", "global"),
                  capture: str = "auto") -> list[dict]:
    cmd = [sys.executable, __file__, "--worker", tool, "--models", name, "--sparsity", str(sparsity),
           "--scopes", *scopes, "--capture", capture]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"model": name, "tool": tool, "ok": False, "error_type": "Timeout",
                 "error": f"no result after {timeout:.0f} s", "total_s": timeout}]
    for line in res.stdout.splitlines():
        if line.startswith("@@ROWS "):
            return json.loads(line[7:])
    kind = "killed (SIGKILL)" if res.returncode == -9 else f"exit {res.returncode}"
    return [{"model": name, "tool": tool, "ok": False, "error_type": kind,
             "error": (res.stderr.strip().splitlines() or [""])[-1][:300]}]


# ---- report ---------------------------------------------------------------------------------------
COLUMNS = ["model", "tool", "scope", "capture", "ok", "error_type", "error", "max_abs_error", "relative_error", "params_ratio",
           "macs_ratio",
           "trace_s", "analyse_s", "score_s", "rewrite_s", "verify_s", "total_s", "compile_noverify_s", "cold_s",
           "eval_ok", "train_ok", "output_shape", "train_graph", "barriers", "auto_leaves", "peak_extra_mb",
           "weights_mb"]


def _cell(row: dict | None, key: str, fmt: str = "{:.2f}") -> str:
    if row is None or row.get(key) is None:
        return ""
    v = row[key]
    return fmt.format(v) if isinstance(v, float) else str(v)


def markdown(rows: list[dict], peer: str | None) -> str:
    by = {}
    for r in rows:
        by[(r["model"], r["tool"].split()[0], r.get("scope", "local"))] = r
    models = sorted({r["model"] for r in rows})
    head = "| model | fxprune local: ok / rel. err / MACs ratio / s | fxprune global: ok / MACs ratio / s |"
    sep = "|---|---|---|"
    if peer:
        head += " Torch-Pruning: ok / s / note |"
        sep += "---|"
    lines = [head, sep]
    for m in models:
        loc, glo = by.get((m, "fxprune", "local")), by.get((m, "fxprune", "global"))

        def fx(r: dict | None, err: bool) -> str:
            if r is None:
                return ""
            if not r["ok"]:
                return f"FAIL {r.get('error_type', '')}: {r.get('error', '')[:60]}"
            parts = ["ok"] + ([f"{float(r['relative_error']):.1e}"] if err else []) + \
                [f"{float(r['macs_ratio']):.2f}", f"{float(r['total_s']):.2f}"]
            return " / ".join(parts)

        line = f"| {m} | {fx(loc, True)} | {fx(glo, False)} |"
        if peer:
            p = by.get((m, "torch-pruning", "local"))
            if p is None:
                line += " |"
            elif p["ok"]:
                line += f" ok / {p['total_s']:.2f} | "
            else:
                what = p.get("error_type") or ("eval" if not p.get("eval_ok") else "train") + " forward fails"
                line += f" FAIL / {_cell(p, 'total_s')} / {what}: {p.get('error', '')[:50]} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _median(xs: Any) -> float | None:
    """The median of the values present (rows of an untimed run have no timings), or None."""
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def summary(rows: list[dict], peer: str | None) -> dict[str, Any]:
    fx = [r for r in rows if r["tool"] == "fxprune" and r.get("scope") == "local"]
    s: dict[str, Any] = {
        "models": len(fx),
        "fxprune_ok_local": sum(r["ok"] for r in fx),
        "fxprune_ok_global": sum(r["ok"] for r in rows if r["tool"] == "fxprune" and r.get("scope") == "global"),
        "fxprune_median_s": statistics.median(r["total_s"] for r in fx if r["ok"]) if fx else None,
        "fxprune_median_noverify_s": _median(r.get("compile_noverify_s") for r in fx if r["ok"]),
        "fxprune_median_cold_s": _median(r.get("cold_s") for r in fx if r["ok"]),
        "fxprune_max_s": max((r["total_s"] for r in fx if r["ok"]), default=None),
    }
    if peer:
        tp = {r["model"]: r for r in rows if r["tool"].startswith("torch-pruning")}
        s["peer_ok"] = sum(r["ok"] for r in tp.values())
        # strict: models both tools pruned and ran (forward in train and eval mode)
        both = [(r, tp[r["model"]]) for r in fx if r["ok"] and r["model"] in tp and tp[r["model"]]["ok"]]
        if both:
            s["peer_median_s"] = statistics.median(p["total_s"] for _, p in both)
            s["speedup_median_noverify"] = statistics.median(p["total_s"] / f["compile_noverify_s"] for f, p in both)
            s["speedup_median_with_verify"] = statistics.median(p["total_s"] / f["total_s"] for f, p in both)
            cold = [(f, p) for f, p in both if p.get("cold_s") and f.get("cold_s")]
            if cold:
                s["speedup_median_cold"] = statistics.median(p["cold_s"] / f["cold_s"] for f, p in cold)
            # models where Torch-Pruning failed or timed out count with the time it spent
            s["speedup_median_noverify_all_models"] = statistics.median(
                tp[f["model"]].get("total_s", float("nan")) / f["compile_noverify_s"] for f in fx
                if f["ok"] and f["model"] in tp and tp[f["model"]].get("total_s"))
    return s


def side_by_side(rows: list[dict], other: list[dict], capture: str) -> tuple[str, str]:
    """The MACs ratio of each model on this sweep's capture path next to another sweep's, and a
    one-line count of the models where they agree."""
    ours = {(r["model"], r.get("scope")): r for r in rows if r["tool"] == "fxprune"}
    theirs = {(r["model"], r.get("scope")): r for r in other if r["tool"] == "fxprune"}
    lines = [f"| model | scope | auto: path / MACs ratio | {capture}: MACs ratio / s | agree |", "|---|---|---|---|---|"]
    n_ok = n_agree = 0
    for key in sorted(ours):
        r, o = ours[key], theirs.get(key)
        mine = f"{float(r['macs_ratio']):.3f} / {float(r['total_s']):.2f}" if r["ok"] else \
            f"FAIL {r.get('error_type', '')}: {r.get('error', '')[:70]}"
        ref = "" if o is None else (f"{o.get('capture') or 'fx'} / {float(o['macs_ratio']):.3f}"
                                    if str(o["ok"]) == "True" else "FAIL")
        same = r["ok"] and o is not None and str(o["ok"]) == "True" and \
            abs(float(r["macs_ratio"]) - float(o["macs_ratio"])) < 1e-3
        n_ok += bool(r["ok"])
        n_agree += bool(same)
        lines.append(f"| {key[0]} | {key[1]} | {ref} | {mine} | {'yes' if same else 'no'} |")
    agree = (f"{capture} path: {n_ok}/{len(ours)} rows pruned, verified and ran; "
             f"MACs ratio equal (within 0.001) to the other sweep on {n_agree}/{len(ours)}.")
    return "\n".join(lines) + "\n", agree


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*")
    p.add_argument("--all", action="store_true", help="include vit_h_14 and regnet_y_128gf")
    p.add_argument("--peer", choices=["torch-pruning"])
    p.add_argument("--peer-timeout", type=float, default=300.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--scopes", nargs="+", choices=["local", "global"], default=["local", "global"])
    p.add_argument("--capture", choices=["auto", "fx", "export"], default="auto",
                   help="fxprune's capture path; with 'export', also writes prunability_capture.md comparing "
                        "the MACs ratios with the rows of --compare (default: the auto sweep's csv)")
    p.add_argument("--compare", help="csv of a sweep with another capture, for the side-by-side table")
    p.add_argument("--worker", choices=list(TOOLS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.models[0], args.sparsity, tuple(args.scopes), args.capture)
        return

    import torchvision
    from rich.console import Console
    from rich.progress import Progress

    names = args.models or [n for n in torchvision.models.list_models(module=torchvision.models)
                            if args.all or n not in GIANTS]
    tools = ["fxprune"] + ([args.peer] if args.peer else [])
    console = Console()
    rows: list[dict] = []
    with Progress(console=console) as progress:
        task = progress.add_task("sweep", total=len(names) * len(tools))
        for name in names:
            for tool in tools:
                progress.update(task, description=f"{tool}: {name}")
                timeout = args.peer_timeout if tool != "fxprune" else args.timeout
                new = in_subprocess(tool, name, args.sparsity, timeout, tuple(args.scopes), args.capture)
                rows.extend(new)
                for r in new:
                    status = "ok" if r["ok"] else f"FAIL {r.get('error_type', '')} {r.get('error', '')[:80]}"
                    progress.console.print(f"{name:28s} {r['tool']:22s} {r.get('scope', ''):6s} "
                                           f"{_cell(r, 'total_s')}s {status}")
                progress.advance(task)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "prunability" if args.capture == "auto" else f"prunability_{args.capture}"
    compare = Path(args.compare) if args.compare else out / "prunability.csv"
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    s = summary(rows, args.peer)
    cmd = "python benchmarks/prunability.py " + " ".join(a for a in sys.argv[1:])
    head = f"Command: `{cmd.strip()}` (torch {torch.__version__}, {torch.get_num_threads()} threads)\n\n"
    (out / f"{stem}.md").write_text(
        head + f"Summary: `{json.dumps(s, default=lambda v: round(v, 3))}`\n\n" + markdown(rows, args.peer))
    (out / f"{stem}_summary.json").write_text(json.dumps(s, indent=1, default=float))
    console.print(s)
    console.print(f"wrote {out}/{stem}.csv, {stem}.md")
    if args.capture != "auto" and compare.exists():
        with open(compare, newline="") as f:
            other = list(csv.DictReader(f))
        table, agree = side_by_side(rows, other, args.capture)
        (out / "prunability_capture.md").write_text(head + f"Compared with `{compare.name}`. {agree}\n\n" + table)
        console.print(agree)
        console.print(f"wrote {out}/prunability_capture.md")


if __name__ == "__main__":
    main()
