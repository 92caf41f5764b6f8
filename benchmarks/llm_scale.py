"""Planning an LLM without its weights: Llama-2-7B- and Llama-3-70B-shaped configs built on the
meta device resolve a ``params=0.7`` plan (trace, shapes, channel graph, cost model, the budget
search); seconds and peak RSS of each, each in a fresh process so that the peaks are its own.

    .venv/bin/python benchmarks/llm_scale.py                  # both configs
    .venv/bin/python benchmarks/llm_scale.py --configs 7b --seq 64

Writes ``benchmarks/results/llm_scale.{json,md}``. Nothing is downloaded: the configs are written
here from the published shapes (hidden size, MLP width, heads, key/value heads, layers, vocabulary).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=sorted(CONFIGS), choices=sorted(CONFIGS))
    ap.add_argument("--seq", type=int, default=128, help="tokens of the (meta) example input")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one config, JSON to stdout
    args = ap.parse_args()
    if args.one:
        print(json.dumps(plan_one(args.one, args.seq)))
        return
    rows = []
    for key in args.configs:
        proc = subprocess.run([sys.executable, __file__, "--one", key, "--seq", str(args.seq)], capture_output=True,
                              text=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"{key}: planning failed")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
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
