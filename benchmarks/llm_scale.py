"""Planning an LLM without its weights: Llama-2-7B- and Llama-3-70B-shaped configs built on the
meta device resolve a ``params=0.7`` plan (trace, shapes, channel graph, cost model, the budget
search); seconds and peak RSS of each, each in a fresh process so that the peaks are its own.

    .venv/bin/python benchmarks/llm_scale.py                  # both configs
    .venv/bin/python benchmarks/llm_scale.py --configs 7b --seq 64

Writes ``benchmarks/results/llm_scale.{json,md}``. Nothing is downloaded: the configs are written
here from the published shapes (hidden size, MLP width, heads, key/value heads, layers, vocabulary).

    .venv/bin/python benchmarks/llm_scale.py --stream /tmp/llm1b   # the streaming run below

``--stream DIR``: a TinyLlama-1.1B-shaped model with random weights is written to DIR as real
safetensors shards (fp32, 1 GB each), then, each step in its own process: ``resolve`` reads l2
scores from the shards (model on meta), ``prune_checkpoint`` writes the pruned checkpoint, and a
check loads it with ``from_pretrained`` and compares it with ``fxprune.compile`` of the same
resolution on token batches. Peak RSS of each step is reported above its process's baseline (the
imports and the meta model). DIR is deleted afterwards. Writes ``results/llm_stream.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# the published shapes of the two models (their config.json), no weights
CONFIGS = {
    "7b": dict(name="Llama-2-7B", vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5),
    "70b": dict(name="Llama-3-70B", vocab_size=128256, hidden_size=8192, intermediate_size=28672,
                num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=8192,
                rms_norm_eps=1e-5, rope_theta=500000.0),
}


def plan_one(key: str, seq: int) -> dict:
    """Build the config's model on meta, resolve the plan, report seconds and peak RSS."""
    here = Path(__file__).resolve().parent  # benchmarks/transformers.py would shadow the library
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch
    import transformers

    import fxprune
    from fxprune.compiler import analyse
    from fxprune.graph.costmodel import params_model

    spec = dict(CONFIGS[key])
    name = spec.pop("name")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    config = transformers.LlamaConfig(**spec, use_cache=False, bos_token_id=0, eos_token_id=0)
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.zeros(1, seq, dtype=torch.long, device="meta")
    t1 = time.perf_counter()
    a = analyse(model, (ids,))
    t2 = time.perf_counter()
    res = fxprune.resolve(model, fxprune.Plan(params=0.7, criterion="random"), (ids,), analysis=a)
    t3 = time.perf_counter()
    params = params_model(a.cg, model)
    keep = a.cg.id_kept(res.pruned_roots(a.cg)).astype(float)
    return {"config": name, "params_dense": params.dense, "params_ratio": params.evaluate(keep) / params.dense,
            "groups": len(a.cg.groups()), "nodes": len(a.traced.eval_gm.graph.nodes), "capture": a.capture,
            "build_s": t1 - t0, "analyse_s": t2 - t1, "resolve_s": t3 - t2, "total_s": t3 - t0,
            "baseline_rss_mb": base_rss, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


STREAM_CONFIG = dict(name="TinyLlama-1.1B", vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                     num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                     rms_norm_eps=1e-5)
STREAM_PLAN = dict(params=0.7, criterion="l2", round_to=64, uniform=True)


def _libraries():
    here = Path(__file__).resolve().parent  # benchmarks/transformers.py would shadow the library
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch
    import transformers

    import fxprune
    return torch, transformers, fxprune


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stream_config(transformers):
    spec = dict(STREAM_CONFIG)
    spec.pop("name")
    return transformers.LlamaConfig(**spec, use_cache=False, bos_token_id=0, eos_token_id=0)


def stream_step(step: str, directory: str) -> dict:
    """One step of the streaming run in this process: make | resolve | apply | check."""
    torch, transformers, fxprune = _libraries()
    import fxprune.checkpoint  # noqa: F401 - imported before the baseline is read
    import fxprune.compiler  # noqa: F401
    root = Path(directory)
    dense, pruned, res = root / "dense", root / "pruned", root / "resolution.json"
    config = _stream_config(transformers)
    with torch.device("meta"):
        meta = transformers.LlamaForCausalLM(config).eval()
    ids = torch.zeros(1, 32, dtype=torch.long, device="meta")
    base = _rss_mb()
    t0 = time.perf_counter()
    out: dict = {"step": step}
    if step == "make":
        model = meta.to_empty(device="cpu")
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.ndim == 1:
                    p.uniform_(0.5, 1.5, generator=g)
                else:
                    p.normal_(0.0, 0.02, generator=g)
        # (the rotary inv_freq buffer is not persistent: the checkpoint does not hold it)
        model.save_pretrained(dense, max_shard_size="1GB")
        out["params"] = sum(p.numel() for p in model.parameters())
    elif step == "resolve":
        r = fxprune.resolve(meta, fxprune.Plan(**STREAM_PLAN), (ids,), weights=dense)
        r.to_json(res)
    elif step == "apply":
        w = fxprune.prune_checkpoint(meta, fxprune.Resolution.from_json(res), dense, pruned, example_inputs=(ids,))
        out.update(shards=len(w.shards), bytes_in=w.bytes_in, bytes_out=w.bytes_out, params_ratio=w.params_ratio,
                   config={k: list(v) for k, v in w.config.items()})
    elif step == "check":
        model = transformers.LlamaForCausalLM.from_pretrained(dense).eval()
        x = torch.randint(0, config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(1))
        small = fxprune.compile(model, resolution=fxprune.Resolution.from_json(res), example_inputs=(x,))
        del model
        loaded = transformers.LlamaForCausalLM.from_pretrained(pruned).eval()
        worst = 0.0
        with torch.no_grad():
            for seed in range(3):
                x = torch.randint(0, config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(seed))
                a, b = small(x), loaded(x).logits
                a = a["logits"] if isinstance(a, dict) else a.logits
                worst = max(worst, float((a - b).abs().max() / a.abs().max()))
        out["max_rel_diff"] = worst
    from fxprune.shards import ShardedCheckpoint
    ck = ShardedCheckpoint(dense)
    out.update(seconds=time.perf_counter() - t0, baseline_rss_mb=base, peak_rss_mb=_rss_mb(),
               largest_shard_mb=max(sum(ck.nbytes(n) for n in ck.in_shard(s)) for s in ck.shards) / 2**20)
    return out


def _child(argv: list[str], what: str) -> dict:
    """Run this script with ``argv`` in a fresh process (its own peak RSS); its last stdout line
    is the JSON result."""
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{what}: failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stream(directory: str) -> None:
    import shutil

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for step in ("make", "resolve", "apply", "check"):
            rows.append(r := _child(["--stream-step", step, directory], step))
            print(f"{step}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB (baseline "
                  f"{r['baseline_rss_mb']:.0f}, +{r['peak_rss_mb'] - r['baseline_rss_mb']:.0f}; largest shard "
                  f"{r['largest_shard_mb']:.0f} MB) "
                  + json.dumps({k: v for k, v in r.items() if k in ("params", "shards", "params_ratio", "config",
                                                                     "max_rel_diff")}), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    cmd = "python benchmarks/llm_scale.py " + " ".join(sys.argv[1:])
    (RESULTS / "llm_stream.json").write_text(json.dumps({"command": cmd, "config": STREAM_CONFIG,
                                                         "plan": STREAM_PLAN, "rows": rows}, indent=1))
    lines = [f"Command: `{cmd}`", "", f"{STREAM_CONFIG['name']}-shaped LLaMA, random fp32 weights in 1 GB "
             f"safetensors shards; plan {STREAM_PLAN}; each step in its own process.", "",
             "| step | seconds | baseline RSS MB | peak RSS MB | above baseline MB | largest shard MB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['seconds']:.1f} | {r['baseline_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] - r['baseline_rss_mb']:.0f} | {r['largest_shard_mb']:.0f} |")
    extra = {k: v for r in rows for k, v in r.items() if k in ("params", "shards", "params_ratio", "config",
                                                                "max_rel_diff")}
    lines += ["", "```", json.dumps(extra, indent=1), "```"]
    (RESULTS / "llm_stream.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS))
    ap.add_argument("--seq", type=int, default=128, help="tokens of the (meta) example input")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one config, JSON to stdout
    ap.add_argument("--stream", metavar="DIR", help="the 1.1B streaming run in DIR (deleted afterwards)")
    ap.add_argument("--stream-step", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stream_step:
        print(json.dumps(stream_step(*args.stream_step)))
        return
    if args.stream:
        stream(args.stream)
        return
    if args.one:
        print(json.dumps(plan_one(args.one, args.seq)))
        return
    rows = []
    for key in args.configs:
        rows.append(r := _child(["--one", key, "--seq", str(args.seq)], f"{key}: planning"))
        print(f"{r['config']}: {r['params_dense'] / 1e9:.2f}B params -> {r['params_ratio']:.3f}; {r['groups']} groups, "
              f"{r['nodes']} nodes ({r['capture']}); {r['total_s']:.1f} s (analyse {r['analyse_s']:.1f}, resolve "
              f"{r['resolve_s']:.1f}); peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    RESULTS.mkdir(exist_ok=True)
    cmd = "python benchmarks/llm_scale.py " + " ".join(sys.argv[1:])
    (RESULTS / "llm_scale.json").write_text(json.dumps({"command": cmd.strip(), "rows": rows}, indent=1))
    header = "| config | params | kept | groups | graph nodes | capture | analyse s | resolve s | total s | peak RSS MB |"
    lines = [f"Command: `{cmd.strip()}`", "", "Meta device, `Plan(params=0.7, criterion=\"random\")`, one process each.",
             "", header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['params_dense'] / 1e9:.2f}B | {r['params_ratio']:.3f} | {r['groups']} | "
                     f"{r['nodes']} | {r['capture']} | {r['analyse_s']:.1f} | {r['resolve_s']:.1f} | "
                     f"{r['total_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    (RESULTS / "llm_scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
