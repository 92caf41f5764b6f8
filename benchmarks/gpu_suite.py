"""Everything GPU-relevant in one run, one JSON + Markdown table: ArtNet 512x512 FPS (dense,
zero-channel, zero-channel + cpmc 50%) next to the VGG-19 AdaIN baseline, and ResNet-50,
MobileNet-V2 and ViT-B/16 dense vs pruned (sparsity 0.5, widths rounded to 8 for fp16 tensor
cores) at batch 1 and 32 — on torch eager fp16 channels_last, CUDA graphs and torch.compile, plus
TensorRT / onnxruntime-gpu where they import. Uses only the torch already installed.

    python benchmarks/gpu_suite.py --json benchmarks/results/gpu/suite.json      # a GPU machine
    python benchmarks/gpu_suite.py --dry-run --json /tmp/suite.json              # CPU, tiny shapes

The run keeps to ``--budget-s`` (default 420 s of timing and compiling): what is left when it is
spent is listed as skipped, never guessed. ``--dry-run`` runs the same pipeline on the CPU (eager
backend, 64x64 images, a 2-layer ViT, batches 1 and 2, few iterations) to check it end to end; it
is part of the test suite. Random weights everywhere (no downloads): timing does not depend on
the values, zero-channel counts do (the ArtNet decoder is the bundled checkpoint when present).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

import fxprune  # noqa: E402
from fxprune.bench.backends import BACKENDS  # noqa: E402
from fxprune.timing import sample  # noqa: E402

GPU_BACKENDS = ["cuda-fp16", "cuda-graphs", "cuda-compile", "trt", "ort-cuda", "ort-trt"]
RESULTS = ROOT / "benchmarks" / "results" / "gpu"


@dataclass
class Settings:
    device: str
    backends: list[str]
    image: int  # ArtNet frame size
    batches: tuple[int, ...]
    classifier_size: int
    iters: int
    warmup: int
    max_seconds: float  # per timing
    budget_s: float
    compile_mode: str
    skipped: dict[str, str] = field(default_factory=dict)


def environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                           "python": platform.python_version(), "device": device}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        if shutil.which("nvidia-smi"):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=20)
                env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() \
                    else None
            except (OSError, subprocess.SubprocessError):
                env["driver"] = None
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def artnet_models(s: Settings, dry: bool) -> tuple[dict[str, torch.nn.Module], tuple[torch.Tensor, ...]]:
    """ArtNet dense, zero-channel, zero + cpmc 50%, and the VGG-19 AdaIN baseline; the frame."""
    from fxprune.apps import artnet as A
    from fxprune.methods import zero_channel_prune

    torch.manual_seed(0)
    dense = A.ArtNet("s2", decoder_weights=A.default_decoder_weights()).eval()
    names = [("astronaut", "hubble_deep_field"), ("chelsea", "immunohistochemistry"), ("rocket", "retina")]
    calib_size = 64 if dry else 256
    calib = [((A.load_image(f"skimage:{c}", calib_size), A.load_image(f"skimage:{t}", calib_size)), None)
             for c, t in names[: 1 if dry else 3]]
    example = (A.load_image("skimage:astronaut", 64), A.load_image("skimage:hubble_deep_field", 64))
    zero = zero_channel_prune(dense, calib, example).model
    models = {"ArtNet dense": dense, "ArtNet zero-channel": zero,
              "ArtNet zero + cpmc 50%": fxprune.compile(zero, fxprune.Plan(sparsity=0.5, criterion="cpmc"), example),
              "VGG-19 AdaIN (baseline)": A.VGGAdaIN().eval()}
    frame = (A.load_image("skimage:astronaut", s.image), A.load_image("skimage:hubble_deep_field", s.image))
    return models, frame


def classifiers(s: Settings, dry: bool) -> list[tuple[str, torch.nn.Module, int]]:
    """(name, dense model, input size)."""
    torch.manual_seed(0)
    out = [("resnet50", torchvision.models.resnet50().eval(), s.classifier_size),
           ("mobilenet_v2", torchvision.models.mobilenet_v2().eval(), s.classifier_size)]
    if dry:  # torchvision's ViT class at a toy size: the same code path, seconds instead of minutes
        vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                   hidden_dim=64, mlp_dim=128)
        out.append(("vit (2 layers, 32x32)", vit.eval(), 32))
    else:
        out.append(("vit_b_16", torchvision.models.vit_b_16().eval(), 224))
    return out


class Clock:
    def __init__(self, budget_s: float) -> None:
        self.t0, self.budget_s = time.perf_counter(), budget_s

    @property
    def spent(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> bool:
        return self.spent < self.budget_s


def time_on(backend: str, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], s: Settings, tag: str,
            workdir: Path) -> dict[str, Any]:
    """Median ms of one model on one backend (prepared once: compile / graph capture / engine
    build are not in the timing but their seconds are recorded)."""
    t0 = time.perf_counter()
    prepared = BACKENDS[backend].prepare(model, inputs, compile_mode=s.compile_mode, workdir=workdir, tag=tag)
    prepare_s = time.perf_counter() - t0
    ms = sample(prepared.run, warmup=s.warmup, iters=s.iters, sync=prepared.sync, max_seconds=s.max_seconds)
    return {"median_ms": statistics.median(ms), "p10_ms": sorted(ms)[len(ms) // 10], "samples": len(ms),
            "prepare_s": prepare_s, **{k: v for k, v in prepared.info.items() if isinstance(v, (str, int, float))}}


def run_jobs(jobs: list[tuple[str, str, str, Callable[[], tuple[torch.nn.Module, tuple]]]], s: Settings,
             clock: Clock, workdir: Path, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for i, (group, variant, batch_label, build) in enumerate(jobs):
        model, inputs = build()
        for backend in s.backends:
            row = {"group": group, "variant": variant, "batch": batch_label, "backend": backend}
            if not clock.left():
                row["skipped"] = f"time budget of {s.budget_s:.0f} s spent"
                rows.append(row)
                continue
            progress(f"[{clock.spent:5.0f} s] {group} / {variant} / {batch_label} / {backend}")
            try:
                row.update(time_on(backend, model, inputs, s, f"m{i}", workdir))
            except Exception as exc:  # noqa: BLE001 - one backend failing on one model is a result, not the end
                row["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            rows.append(row)
            if s.device == "cuda":
                torch.cuda.empty_cache()
    return rows


def build_jobs(s: Settings, dry: bool) -> list:
    jobs: list = []
    art, frame = artnet_models(s, dry)
    for name, m in art.items():
        jobs.append(("ArtNet", name, f"1 x {s.image}^2", lambda m=m: (m, frame)))
    for name, dense, size in classifiers(s, dry):
        x1 = torch.randn(1, 3, size, size)
        small = fxprune.compile(dense, fxprune.Plan(sparsity=0.5, round_to=8), example_inputs=(x1,))
        rep = fxprune.report(small)
        for b in s.batches:
            xb = torch.randn(b, 3, size, size)
            jobs.append((name, "dense", str(b), lambda d=dense, xb=xb: (d, (xb,))))
            jobs.append((name, f"pruned 50% (MACs x{rep.macs_ratio:.2f})", str(b), lambda m=small, xb=xb: (m, (xb,))))
    return jobs


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-ups: each pruned classifier against its dense row, each ArtNet variant against
    ArtNet dense and the VGG baseline (same backend, same batch)."""
    by = {(r["group"], r["variant"], r["batch"], r["backend"]): r for r in rows if "median_ms" in r}
    for r in rows:
        if "median_ms" not in r:
            continue
        if r["group"] == "ArtNet":
            r["fps"] = 1e3 / r["median_ms"]
            for ref, key in (("ArtNet dense", "speedup_vs_dense"), ("VGG-19 AdaIN (baseline)", "speedup_vs_vgg")):
                base = by.get(("ArtNet", ref, r["batch"], r["backend"]))
                if base:
                    r[key] = base["median_ms"] / r["median_ms"]
        elif r["variant"] != "dense":
            base = by.get((r["group"], "dense", r["batch"], r["backend"]))
            if base:
                r["speedup_vs_dense"] = base["median_ms"] / r["median_ms"]
    return rows


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    head = f"{env.get('gpu', env.get('cpu', ''))}, driver {env.get('driver', '-')}, torch {env['torch']}"
    lines = [f"GPU suite: {head}" + (" (dry run: CPU, tiny shapes)" if result["dry_run"] else ""), "",
             "| model | variant | batch | backend | median ms | FPS / speed-up |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "median_ms" in r:
            extra = (f"{r['fps']:.1f} FPS" + (f", x{r['speedup_vs_dense']:.2f} vs dense" if "speedup_vs_dense" in r
                                              else "") + (f", x{r['speedup_vs_vgg']:.2f} vs VGG" if "speedup_vs_vgg" in r
                                                          else "")) if r["group"] == "ArtNet" else \
                (f"x{r['speedup_vs_dense']:.2f} vs dense" if "speedup_vs_dense" in r else "")
            lines.append(f"| {r['group']} | {r['variant']} | {r['batch']} | {r['backend']} | {r['median_ms']:.3f} | "
                         f"{extra} |")
        else:
            lines.append(f"| {r['group']} | {r['variant']} | {r['batch']} | {r['backend']} | — | "
                         f"{r.get('skipped') or r.get('error', '')} |")
    for name, why in result["skipped_backends"].items():
        lines.append(f"\nskipped backend {name}: {why}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes: check the pipeline end to end")
    p.add_argument("--json", default=str(RESULTS / "suite.json"), help="result file (a .md table is written beside it)")
    p.add_argument("--budget-s", type=float, default=420.0)
    p.add_argument("--backends", nargs="+", help=f"default: those of {GPU_BACKENDS} available here")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode of the cuda-compile backend (max-autotune-no-cudagraphs is slower to build)")
    args = p.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch; run with --dry-run to check the pipeline on the CPU",
              file=sys.stderr)
        return 2
    wanted = args.backends or (["eager"] if dry else GPU_BACKENDS)
    s = Settings(device="cpu" if dry else "cuda", backends=[], image=64 if dry else 512,
                 batches=(1, 2) if dry else (1, 32), classifier_size=64 if dry else 224,
                 iters=3 if dry else 50, warmup=1 if dry else 10, max_seconds=2.0 if dry else 5.0,
                 budget_s=args.budget_s, compile_mode=args.compile_mode)
    for name in wanted:
        if name not in BACKENDS:
            print(f"error: unknown backend {name!r}; known: {sorted(BACKENDS)}", file=sys.stderr)
            return 2
        why = BACKENDS[name].available()
        if why:
            s.skipped[name] = why
        else:
            s.backends.append(name)
    clock = Clock(args.budget_s)
    out = Path(args.json)
    workdir = out.parent / (out.stem + "_work")
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = build_jobs(s, dry)
    rows = summarise(run_jobs(jobs, s, clock, workdir, lambda text: print(text, flush=True)))
    shutil.rmtree(workdir, ignore_errors=True)
    result = {"schema": "fxprune.gpu_suite/1", "dry_run": dry, "environment": environment(s.device),
              "settings": {k: v for k, v in vars(s).items() if k != "skipped"}, "skipped_backends": s.skipped,
              "seconds": clock.spent, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
