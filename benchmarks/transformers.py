"""Transformers pruned by fxprune and, side by side in the same run, by Torch-Pruning.

    .venv/bin/python benchmarks/transformers.py                      # every model, both tools
    .venv/bin/python benchmarks/transformers.py --models timm:vit_small_patch16_224 hf:bert --no-peer

Models (random weights, ``fxprune.models.randomize_for_verification``): torchvision vit_b_16,
swin_t, convnext_tiny; timm vit_small_patch16_224, deit_small_patch16_224, convnext_tiny,
swin_tiny_patch4_window7_224; HuggingFace BertModel (bert-base config, 128 tokens), ViTModel
(base config), GPT2LMHeadModel (the 124M config, 128 tokens, no cache), LlamaForCausalLM (4 layers,
width 256, 8 query / 4 key-value heads, 128 tokens, no cache). Images are 1x3x224x224.

fxprune runs ``compile`` at ``sparsity=0.5`` (local), at ``sparsity=0.5, attention="both"`` and at
``flops=0.5, scope="global"``, with
verification (for the two HuggingFace backbones, whose output is the residual stream, also at
``sparsity=0.5, prune_outputs=True``), and reports its MACs and params ratios, the verification error, the seconds and
what shrank (embedding = the residual stream, heads, head dims, MLP). Torch-Pruning 1.6.1 runs
as its transformer examples do: ``MetaPruner`` with ``GroupMagnitudeImportance(p=2)``, pruning
ratio 0.5, ``num_heads`` of every attention projection, ``prune_num_heads=True``, the classifier /
pooler / LM head ignored, then the model's head-count attributes patched; its result counts if the
pruned model still runs. MACs ratios of both tools are also measured the same way, with
``torch.utils.flop_counter.FlopCounterMode`` (which does not count CPU scaled-dot-product
attention, so those ratios cover the projections and MLPs). Each run is a subprocess with a
timeout. Writes ``transformers.{csv,md}`` to ``--out-dir`` (default ``benchmarks/results``). Run
alone on the machine: the seconds are CPU wall-clock.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

# this file is named like the HuggingFace package: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
from torch import nn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ["torchvision:vit_b_16", "torchvision:swin_t", "torchvision:convnext_tiny", "timm:vit_small_patch16_224",
          "timm:deit_small_patch16_224", "timm:convnext_tiny", "timm:swin_tiny_patch4_window7_224", "hf:bert",
          "hf:vit", "hf:gpt2", "hf:llama"]
SEQ = 128
BACKBONES = ("hf:bert", "hf:vit")  # their output (last_hidden_state) is the residual stream


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    from fxprune.models import randomize_for_verification

    torch.manual_seed(0)
    kind, _, arch = name.partition(":")
    img = torch.randn(1, 3, 224, 224)
    ids = torch.randint(0, 1000, (1, SEQ))
    if kind == "torchvision":
        import torchvision

        model, x = torchvision.models.get_model(arch), img
    elif kind == "timm":
        import timm

        model, x = timm.create_model(arch), img
    else:
        import transformers as T

        if arch == "bert":
            model, x = T.BertModel(T.BertConfig()), ids
        elif arch == "vit":
            model, x = T.ViTModel(T.ViTConfig()), img
        elif arch == "gpt2":
            model, x = T.GPT2LMHeadModel(T.GPT2Config(use_cache=False)), ids
        elif arch == "llama":
            model, x = T.LlamaForCausalLM(T.LlamaConfig(
                vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=4, max_position_embeddings=SEQ, use_cache=False)), ids
        else:
            raise ValueError(f"unknown model {name}")
    return randomize_for_verification(model.eval()), x


def flop_macs(model: nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 2


def _outputs(y: Any) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(y) if isinstance(t, torch.Tensor)]


def what_shrank(dense: nn.Module, small: nn.Module) -> str:
    """Which kinds of widths lost channels, read off the parameter shapes."""
    d = dict(dense.named_parameters())
    kinds: set[str] = set()
    for name, p in small.named_parameters():
        if name not in d or tuple(p.shape) == tuple(d[name].shape):
            continue
        low = name.lower()
        if any(k in low for k in ("qkv", "query", "key", "value", "q_proj", "k_proj", "v_proj", "in_proj", "c_attn")):
            kinds.add("attention")
        elif any(k in low for k in ("mlp", "fc1", "intermediate", "gate_proj", "up_proj", "c_fc", "pwconv1",
                                    "linear_1")) and p.shape[0] < d[name].shape[0]:
            kinds.add("MLP")
        elif any(k in low for k in ("embed", "patch", "conv_proj", "wte", "wpe", "cls_token", "pos", "stem",
                                    "features.0", "downsample")):
            kinds.add("embedding")
    return ", ".join(sorted(kinds)) or "nothing"


def run_fxprune(name: str) -> list[dict]:
    import fxprune

    rows = []
    plans = [("sparsity=0.5", fxprune.Plan(sparsity=0.5)), ("flops=0.5 global", fxprune.Plan(flops=0.5, scope="global"))]
    if name in BACKBONES:  # the output is the residual stream: pinned unless the outputs may shrink
        plans.append(("sparsity=0.5 prune_outputs", fxprune.Plan(sparsity=0.5, prune_outputs=True)))
    plans.append(("sparsity=0.5 both", fxprune.Plan(sparsity=0.5, attention="both", prune_outputs=name in BACKBONES)))
    for label, plan in plans:
        model, x = build(name)
        row: dict[str, Any] = {"model": name, "tool": "fxprune", "plan": label, "ok": False}
        try:
            t0 = time.perf_counter()
            small = fxprune.compile(model, plan, example_inputs=(x,))
            row["seconds"] = time.perf_counter() - t0
            rep = fxprune.report(small)
            row.update(ok=True, macs_ratio=rep.macs_ratio, params_ratio=rep.params_ratio,
                       max_abs_error=rep.max_abs_error, capture=rep.capture if hasattr(rep, "capture") else "",
                       shrank=what_shrank(model, small))
            if plan.attention != "head_dims":
                row["shrank"] = row["shrank"].replace("attention", "heads" if plan.attention == "heads" else
                                                      "heads, head dims")
            row["flop_counter_ratio"] = flop_macs(small, x) / flop_macs(model, x)
            with torch.no_grad():  # a fresh input of the example's shape runs
                fresh = torch.randn_like(x) if x.is_floating_point() else torch.randint_like(x, 0, 1000)
                small(fresh)
        except Exception as exc:
            row.update(error_type=type(exc).__name__, error=(str(exc).splitlines() or [""])[0][:300])
        rows.append(row)
    return rows


def _tp_spec(name: str, model: nn.Module) -> tuple[dict, list, Callable[[Any, nn.Module], None]]:
    """Torch-Pruning's settings for one model, after its examples: the heads of every attention
    projection, the layers it must not touch, and the attributes to patch after pruning."""
    kind, _, arch = name.partition(":")
    heads: dict = {}
    ignored: list = []

    def nothing(pruner: Any, m: nn.Module) -> None:
        return None

    if kind == "timm" and ("vit" in arch or "deit" in arch):
        from timm.models.vision_transformer import Attention

        heads = {m.qkv: m.num_heads for m in model.modules() if isinstance(m, Attention)}
        ignored = [model.head]

        def post(pruner: Any, m: nn.Module) -> None:
            for a in m.modules():
                if isinstance(a, Attention):
                    a.num_heads = pruner.num_heads[a.qkv]
                    a.head_dim = a.qkv.out_features // (3 * a.num_heads)
                    if hasattr(a, "attn_dim"):
                        a.attn_dim = a.num_heads * a.head_dim
        return heads, ignored, post
    if name == "torchvision:vit_b_16":
        heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
        ignored = [model.heads]

        def post(pruner: Any, m: nn.Module) -> None:
            m.hidden_dim = m.conv_proj.out_channels
            for a in m.modules():
                if isinstance(a, nn.MultiheadAttention):
                    a.num_heads = pruner.num_heads[a]
                    a.embed_dim = a.out_proj.in_features
                    a.head_dim = a.embed_dim // a.num_heads
        return heads, ignored, post
    if kind == "hf" and arch in ("bert", "vit"):
        for m in model.modules():
            if hasattr(m, "query") and hasattr(m, "key") and hasattr(m, "value"):
                n = model.config.num_attention_heads
                heads.update({m.query: n, m.key: n, m.value: n})
        ignored = [model.pooler] if getattr(model, "pooler", None) is not None else []

        def post(pruner: Any, m: nn.Module) -> None:
            for a in m.modules():
                if hasattr(a, "query") and hasattr(a, "key") and hasattr(a, "value"):
                    h = pruner.num_heads[a.query]
                    for attr, value in (("num_attention_heads", h), ("attention_head_size", a.query.out_features // h),
                                        ("all_head_size", a.query.out_features)):
                        if hasattr(a, attr):
                            setattr(a, attr, value)
        return heads, ignored, post
    if name == "hf:llama":
        for layer in model.model.layers:
            a = layer.self_attn
            heads.update({a.q_proj: model.config.num_attention_heads, a.k_proj: model.config.num_key_value_heads,
                          a.v_proj: model.config.num_key_value_heads})
        ignored = [model.lm_head]

        def post(pruner: Any, m: nn.Module) -> None:
            for layer in m.model.layers:
                a = layer.self_attn
                a.head_dim = a.q_proj.out_features // pruner.num_heads[a.q_proj]
                a.num_key_value_groups = pruner.num_heads[a.q_proj] // pruner.num_heads[a.k_proj]
        return heads, ignored, post
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    ignored = [getattr(model, "lm_head", None) or last[-1]]
    return heads, ignored, nothing


def run_torch_pruning(name: str) -> list[dict]:
    import importlib.metadata

    import torch_pruning as tp

    model, x = build(name)
    row: dict[str, Any] = {"model": name, "tool": f"torch-pruning {importlib.metadata.version('torch-pruning')}",
                           "plan": "ratio=0.5", "ok": False}
    try:
        dense_params = sum(p.numel() for p in model.parameters())
        dense_macs = flop_macs(model, x)
        with torch.no_grad():
            dense_shapes = [t.shape for t in _outputs(model(x))]
        heads, ignored, post = _tp_spec(name, model)
        t0 = time.perf_counter()
        pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=0.5, ignored_layers=ignored, num_heads=heads,
                                      prune_num_heads=bool(heads), prune_head_dims=not heads, head_pruning_ratio=0.5)
        pruner.step()
        post(pruner, model)
        row["seconds"] = time.perf_counter() - t0
        row["params_ratio"] = sum(p.numel() for p in model.parameters()) / dense_params
        with torch.no_grad():
            shapes = [t.shape for t in _outputs(model(x))]
        row["flop_counter_ratio"] = flop_macs(model, x) / dense_macs
        row["output_kept"] = shapes == dense_shapes
        row["ok"] = True
    except Exception as exc:
        row.update(error_type=type(exc).__name__, error=(str(exc).splitlines() or [""])[0][:300])
    return [row]


TOOLS = {"fxprune": run_fxprune, "torch-pruning": run_torch_pruning}


def worker(tool: str, name: str) -> None:
    warnings.filterwarnings("ignore")
    try:
        rows = TOOLS[tool](name)
    except Exception as exc:
        rows = [{"model": name, "tool": tool, "ok": False, "error_type": type(exc).__name__,
                 "error": traceback.format_exc(limit=1)[-300:]}]
    print("@@ROWS " + json.dumps(rows, default=float))


def in_subprocess(tool: str, name: str, timeout: float) -> list[dict]:
    cmd = [sys.executable, __file__, "--worker", tool, "--models", name]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"model": name, "tool": tool, "ok": False, "error_type": "Timeout",
                 "error": f"no result after {timeout:.0f} s"}]
    for line in res.stdout.splitlines():
        if line.startswith("@@ROWS "):
            return json.loads(line[7:])
    return [{"model": name, "tool": tool, "ok": False, "error_type": f"exit {res.returncode}",
             "error": (res.stderr.strip().splitlines() or [""])[-1][:300]}]


COLUMNS = ["model", "tool", "plan", "ok", "macs_ratio", "flop_counter_ratio", "params_ratio", "max_abs_error",
           "seconds", "shrank", "output_kept", "error_type", "error"]


def _f(row: dict | None, key: str, fmt: str = "{:.3f}") -> str:
    if row is None:
        return "—"
    v = row.get(key)
    return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


def markdown(rows: list[dict]) -> str:
    lines = ["| model | fxprune sparsity=0.5: MACs / params / error / s / shrank | fxprune flops=0.5 global: MACs / params |"
             " Torch-Pruning ratio 0.5: FlopCounter MACs / params | fxprune FlopCounter MACs |"
             " fxprune attention=both sparsity=0.5: MACs / params / error |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["model"] for r in rows):
        by = {(r["tool"].split()[0], r.get("plan")): r for r in rows if r["model"] == name}
        a, b = by.get(("fxprune", "sparsity=0.5")), by.get(("fxprune", "flops=0.5 global"))
        backbone = by.get(("fxprune", "sparsity=0.5 prune_outputs"))
        both = by.get(("fxprune", "sparsity=0.5 both"))
        tp = next((r for (t, _), r in by.items() if t == "torch-pruning"), None)

        def fx(r: dict | None) -> str:
            if r is None:
                return "—"
            if not r["ok"]:
                return f"FAIL {r.get('error_type', '')}"
            return (f"{_f(r, 'macs_ratio')} / {_f(r, 'params_ratio')} / {_f(r, 'max_abs_error', '{:.1e}')} / "
                    f"{_f(r, 'seconds', '{:.1f}')} / {r.get('shrank', '')}")

        flops = "—" if b is None else (f"{_f(b, 'macs_ratio')} / {_f(b, 'params_ratio')}" if b["ok"]
                                       else f"FAIL {b.get('error_type', '')}")
        if tp is None:
            peer = "not run"
        elif tp["ok"]:
            peer = f"{_f(tp, 'flop_counter_ratio')} / {_f(tp, 'params_ratio')}" + (
                "" if tp.get("output_kept") else " (output shape changed)")
        else:
            peer = f"FAIL {tp.get('error_type', '')}: {tp.get('error', '')[:60]}"
        first = fx(a) if backbone is None else f"{fx(a)}; prune_outputs=True: {fx(backbone)}"
        counted = _f(a, 'flop_counter_ratio') + ("" if backbone is None else
                                                 f"; prune_outputs=True: {_f(backbone, 'flop_counter_ratio')}")
        staged = "—" if both is None else (
            f"{_f(both, 'macs_ratio')} / {_f(both, 'params_ratio')} / {_f(both, 'max_abs_error', '{:.1e}')}"
            if both["ok"] else f"FAIL {both.get('error_type', '')}: {both.get('error', '')[:60]}")
        lines.append(f"| {name} | {first} | {flops} | {peer} | {counted} | {staged} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--no-peer", action="store_true", help="fxprune only")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--peer-timeout", type=float, default=300.0)
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--worker", choices=list(TOOLS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.models[0])
        return
    from rich.console import Console
    from rich.progress import Progress

    tools = ["fxprune"] + ([] if args.no_peer else ["torch-pruning"])
    console = Console()
    rows: list[dict] = []
    with Progress(console=console) as progress:
        task = progress.add_task("transformers", total=len(args.models) * len(tools))
        for name in args.models:
            for tool in tools:
                progress.update(task, description=f"{tool}: {name}")
                new = in_subprocess(tool, name, args.timeout if tool == "fxprune" else args.peer_timeout)
                rows.extend(new)
                for r in new:
                    status = "ok" if r["ok"] else f"FAIL {r.get('error_type', '')} {r.get('error', '')[:80]}"
                    progress.console.print(f"{name:36s} {r['tool']:20s} {r.get('plan', ''):16s} "
                                           f"{_f(r, 'macs_ratio')} {_f(r, 'flop_counter_ratio')} {status}")
                progress.advance(task)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "transformers.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (out / "transformers.md").write_text(markdown(rows))
    console.print(markdown(rows))


if __name__ == "__main__":
    main()
