"""Apply a resolution to a checkpoint on disk, shard by shard: ``fxprune.prune_checkpoint``.

The model is only analysed (it may be on the meta device: no weight is materialised); every
tensor of the dense checkpoint is read alone, sliced to the kept channels and written to the
pruned checkpoint, whose shards are flushed as they fill. The written directory is a HuggingFace
checkpoint: ``config.json`` with the pruned widths (hidden_size, intermediate_size,
num_attention_heads, num_key_value_heads, head_dim), ``model.safetensors.index.json`` and the
shards, loadable with ``from_pretrained`` and equal to ``fxprune.compile`` of the same resolution.

Exactness: fxprune's pruned RMSNorm keeps the dense count D (``rms_D = sqrt(K/D) * rms_K`` with
``eps * D/K``), and transformers' RMSNorm over K computes the same function when its weight is
scaled by ``sqrt(D/K)`` and ``rms_norm_eps`` by ``D/K``: both are written. A LayerNorm over pruned
channels has no such form, so it is written only under ``Plan(layer_norm="native")``, the
non-exact form that compile then builds too. Pruned head dims are refused: transformers derives
the rotary frequencies and the softmax scale from ``head_dim``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .compiler import Analysis, analyse, kept_ids, unwrap
from .errors import CheckpointError
from .passes.rewrite import tensor_cuts
from .plan import Resolution
from .shards import INDEX, ShardedCheckpoint

__all__ = ["CheckpointWrite", "prune_checkpoint", "pruned_config"]

log = logging.getLogger(__name__)

# files of the dense checkpoint that hold weights (rewritten, or not carried over)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_REWRITTEN = {"config.json", INDEX, "pytorch_model.bin.index.json"}


@dataclass
class CheckpointWrite:
    """What ``prune_checkpoint`` wrote: the shards, tensor and byte counts, the config fields it
    changed (old, new) and the dense and pruned parameter counts."""

    out: Path
    shards: list[str]
    tensors: int
    bytes_in: int
    bytes_out: int
    config: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    params_dense: int = 0
    params_pruned: int = 0

    @property
    def params_ratio(self) -> float:
        return self.params_pruned / max(self.params_dense, 1)


def _whole_heads(idx: np.ndarray | None, kept: int, head_dim: int) -> bool:
    """The kept rows ``idx`` (None: all) are whole heads: blocks ``[h*d, (h+1)*d)``."""
    if kept % head_dim:
        return False
    if idx is None:
        return True
    blocks = np.asarray(idx).reshape(-1, head_dim)
    return bool((blocks[:, 0] % head_dim == 0).all() and (np.diff(blocks, axis=1) == 1).all())


def _llama_widths(model: nn.Module, shapes: dict[str, tuple[int, ...]],
                  kept_rows: dict[str, np.ndarray]) -> dict[str, int]:
    """The new widths of a Llama-family decoder (``model.layers.N.self_attn.q_proj`` etc.) from
    the pruned tensor shapes, each uniform over the layers (the config has one value);
    ``kept_rows``: the kept output rows of each tensor whose rows are cut."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_layer: dict[str, dict[str, int]] = {"intermediate_size": {}, "num_attention_heads": {},
                                             "num_key_value_heads": {}}
    found = False
    for name, shape in shapes.items():
        layer, _, rest = name.rpartition(".layers.")[2].partition(".")
        if not layer.isdigit():
            continue
        found = True
        where = f"layers.{layer}"
        if rest == "mlp.gate_proj.weight":
            per_layer["intermediate_size"][where] = shape[0]
        elif rest in ("self_attn.q_proj.weight", "self_attn.k_proj.weight"):
            if not _whole_heads(kept_rows.get(name), shape[0], head_dim):
                raise CheckpointError(f"{name}: {shape[0]} rows kept is not a whole number of heads of {head_dim}; "
                                      "plan with attention='heads' (transformers derives the rotary frequencies "
                                      "and the softmax scale from head_dim)")
            key = "num_attention_heads" if "q_proj" in rest else "num_key_value_heads"
            per_layer[key][where] = shape[0] // head_dim
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embed_name = next((n for n, m in model.named_modules() if m is embed), None)
    if not found or embed_name is None or f"{embed_name}.weight" not in shapes:
        raise CheckpointError(f"{type(model).__name__}: the config rewrite knows the Llama family's layout "
                              "(model.layers.N.self_attn.q_proj / k_proj, mlp.gate_proj, an input embedding); "
                              "this model has another, so its config cannot be rewritten")
    out = {"hidden_size": shapes[f"{embed_name}.weight"][1], "head_dim": head_dim}
    for key, values in per_layer.items():
        sizes = sorted(set(values.values()))
        if len(sizes) > 1:
            by = ", ".join(f"{s}: {[w for w, v in values.items() if v == s][:3]}" for s in sizes)
            raise CheckpointError(f"{key} differs between layers ({by}); a {type(config).__name__} has one value "
                                  "for every layer: plan with uniform=True (one width per layer kind; local scope)")
        if sizes:
            out[key] = sizes[0]
    return out


def pruned_config(model: nn.Module, shapes: dict[str, tuple[int, ...]], norm_scale: float | None,
                  kept_rows: dict[str, np.ndarray] | None = None):
    """A copy of ``model.config`` with the widths of the pruned tensor ``shapes`` (and the
    RMSNorm epsilon scaled by D/K when the hidden size is pruned), checked by building the class
    on the meta device and comparing every tensor shape."""
    config = model.config
    new = config.__class__.from_dict(config.to_dict())
    widths = _llama_widths(model, shapes, kept_rows or {})
    for key, value in widths.items():
        setattr(new, key, value)
    if norm_scale is not None:
        if not hasattr(new, "rms_norm_eps"):
            raise CheckpointError(f"{type(config).__name__} has no rms_norm_eps to carry the pruned RMSNorm's epsilon")
        new.rms_norm_eps = float(config.rms_norm_eps) * norm_scale
    heads = getattr(new, "num_attention_heads", None)
    if heads and new.hidden_size % heads:
        raise CheckpointError(f"the pruned hidden_size {new.hidden_size} is not a multiple of the {heads} attention "
                              f"heads kept, which {type(config).__name__} requires: plan with round_to={heads} "
                              "(or a multiple of it), or keep the heads whole (Plan.ignore the attention projections)")
    try:
        with torch.device("meta"):
            rebuilt = type(model)(new)
    except Exception as exc:  # noqa: BLE001 - the config class's own validation
        raise CheckpointError(f"{type(config).__name__} refuses the pruned widths {widths}: "
                              f"{(str(exc).splitlines() or [''])[-1][:300]}") from None
    want = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    for name, shape in shapes.items():
        if name in want and want[name] != shape:
            raise CheckpointError(f"the rewritten {type(config).__name__} gives {name} the shape {list(want[name])}, "
                                  f"but the pruned tensor is {list(shape)}: this pruning is not expressible by the "
                                  "config's fields")
    return new


def _norms(a: Analysis, cuts: dict[str, list[tuple[int, np.ndarray]]], native: bool) -> dict[str, float]:
    """Weight name -> D/K of every RMSNorm whose channels are pruned (folded: weight * sqrt(D/K),
    eps * D/K); a pruned LayerNorm is refused unless the plan chose the native (kept-count) form."""
    out = {}
    for mname, m in a.model.named_modules():
        w = getattr(m, "weight", None)
        pname = a.cg.aliases.get(f"{mname}.weight", f"{mname}.weight")
        if not isinstance(w, torch.Tensor) or w.ndim != 1 or pname not in cuts:
            continue
        kept = len(cuts[pname][0][1])
        if isinstance(m, nn.LayerNorm):
            if not native:
                raise CheckpointError(f"LayerNorm {mname} loses channels: fxprune's exact form keeps the dense count, "
                                      f"which {type(m).__name__} over the kept channels does not compute; plan with "
                                      "layer_norm='native' (a different function: fine-tune) to write this checkpoint")
        elif isinstance(m, nn.RMSNorm) or hasattr(m, "variance_epsilon"):
            out[pname] = w.shape[0] / kept
        elif "norm" in type(m).__name__.lower():
            raise CheckpointError(f"{mname} ({type(m).__name__}) loses channels and is neither an RMSNorm nor a "
                                  "LayerNorm; its pruned form cannot be written to a checkpoint")
    return out


def _shard_budget(ckpt: ShardedCheckpoint, max_shard_bytes: int | None) -> int:
    if max_shard_bytes is not None:
        return int(max_shard_bytes)
    largest = max(sum(ckpt.nbytes(n) for n in ckpt.in_shard(shard)) for shard in ckpt.shards)
    return max(largest // 4, 1)


def _carry_files(src: Path, out: Path) -> None:
    """Copy the dense checkpoint's other files (tokenizer, generation config) to ``out``;
    weight files of the dense model are not carried over (they would not fit)."""
    skipped = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.is_symlink() or p.name in _REWRITTEN:
            continue
        if p.name.endswith(_WEIGHT_SUFFIXES):
            if not p.name.endswith(".safetensors"):
                skipped.append(p.name)
            continue
        shutil.copyfile(p, out / p.name)
    if skipped:
        warnings.warn(f"{src}: {skipped[:5]} hold dense weights in another format and were not copied to {out}",
                      stacklevel=3)


def prune_checkpoint(model: nn.Module, resolution: Resolution, weights: str | Path, out: str | Path, *,
                     example_inputs: Any = None, analysis: Analysis | None = None,
                     max_shard_bytes: int | None = None, **trace_kwargs: Any) -> CheckpointWrite:
    """Write the checkpoint of ``model`` pruned by ``resolution`` to ``out``, reading the dense
    tensors from the safetensors shards in ``weights`` one at a time.

    ``model``: the HuggingFace model the checkpoint belongs to, usually built on the meta device
    from its config (``with torch.device("meta"): LlamaForCausalLM(config)``); only its graph and
    shapes are used. ``max_shard_bytes``: size of the written shards (default: a quarter of the
    largest dense shard, which bounds the memory this takes). The result loads with
    ``type(model).from_pretrained(out)`` and computes what ``fxprune.compile(model,
    resolution=resolution)`` computes on the dense weights."""
    out = Path(out)
    if not isinstance(resolution, Resolution):
        raise CheckpointError(f"resolution must be a fxprune.Resolution, got {type(resolution).__name__}")
    model = unwrap(model)[0]
    if not hasattr(model, "config"):
        raise CheckpointError(f"{type(model).__name__} has no HuggingFace config; prune_checkpoint writes "
                              "HuggingFace checkpoints (for any other model use fxprune.compile + save)")
    ckpt = ShardedCheckpoint(weights)
    if out.resolve() == ckpt.directory.resolve():
        raise CheckpointError(f"--out {out} is the dense checkpoint's own directory; write the pruned one elsewhere")
    plan = resolution.plan
    a = analysis or analyse(model, example_inputs, attention=plan.attention, prune_outputs=plan.prune_outputs,
                            **trace_kwargs)
    cg = a.cg
    if cg.weight_norms:
        raise CheckpointError("the model has weight-normalised layers; prune_checkpoint cannot rescale their g from "
                              "a shard alone: compile the materialised model instead")
    cuts = tensor_cuts(cg, kept_ids(a, resolution))
    norms = _norms(a, cuts, plan.layer_norm == "native")
    scales = {round(v, 12) for v in norms.values()}
    if len(scales) > 1:
        raise CheckpointError(f"pruned RMSNorms keep different fractions ({sorted(scales)}); the config has one "
                              "rms_norm_eps for all of them")
    names = _checkpoint_names(cg, ckpt, model)
    shapes = {}
    for key, canon in names.items():
        shape = list(ckpt.shapes[key])
        for axis, idx in cuts.get(canon, []):
            shape[axis] = len(idx)
        shapes[key] = tuple(shape)
    rows = {key: idx for key, canon in names.items() for axis, idx in cuts.get(canon, []) if axis == 0}
    config = pruned_config(model, shapes, next(iter(norms.values()), None), rows)

    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    budget = _shard_budget(ckpt, max_shard_bytes)
    written: list[tuple[Path, list[str]]] = []
    batch: dict[str, torch.Tensor] = {}
    size = bytes_in = bytes_out = 0
    metadata = {"format": "pt"}

    def flush() -> None:
        nonlocal batch, size
        if batch:
            path = out / f"fxprune-part-{len(written):05d}.safetensors"
            save_file(batch, str(path), metadata=metadata)
            written.append((path, list(batch)))
            batch, size = {}, 0

    for shard in ckpt.shards:
        for key in ckpt.in_shard(shard):
            canon = names[key]
            t = ckpt.get(key)
            bytes_in += t.numel() * t.element_size()
            for axis, idx in cuts.get(canon, []):
                t = t.index_select(axis, torch.as_tensor(idx))
            if canon in norms:
                t = (t.double() * math.sqrt(norms[canon])).to(t.dtype)
            t = t.contiguous()
            nbytes = t.numel() * t.element_size()
            if batch and size + nbytes > budget:
                flush()
            batch[key] = t
            size += nbytes
            bytes_out += nbytes
        log.info("read %s", shard.name)
    flush()
    shard_names = _rename(written, out)
    weight_map = {key: shard_names[i] for i, (_, keys) in enumerate(written) for key in keys}
    (out / INDEX).write_text(json.dumps({"metadata": {"total_size": bytes_out}, "weight_map": weight_map},
                                        indent=2, sort_keys=True) + "\n")
    config.save_pretrained(out)
    _carry_files(ckpt.directory, out)
    changed = {k: (getattr(model.config, k, None), getattr(config, k)) for k in
               ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "rms_norm_eps") if getattr(model.config, k, None) != getattr(config, k, None)}
    dense = sum(math.prod(s) for s in ckpt.shapes.values())
    pruned = sum(math.prod(s) for s in shapes.values())
    return CheckpointWrite(out, shard_names, len(names), bytes_in, bytes_out, changed, dense, pruned)


def _checkpoint_names(cg, ckpt: ShardedCheckpoint, model: nn.Module) -> dict[str, str]:
    """Checkpoint tensor name -> the graph's canonical tensor name; every checkpoint tensor must
    be one of the model's, and every parameter of the model must be in the checkpoint (under its
    own name or a tied one)."""
    state = model.state_dict(keep_vars=True)
    out = {}
    for key in ckpt.keys():
        canon = cg.aliases.get(key, key)
        if canon not in cg.tensors:
            if key in state:  # a tensor the graphs never read (kept whole)
                canon = key
            else:
                raise CheckpointError(f"{ckpt.where[key].name}: tensor {key!r} is not a parameter or buffer of "
                                      f"{type(model).__name__}: the checkpoint is not this model's")
        have = tuple(state[key].shape) if key in state else tuple(cg.tensors[canon].shape)
        if ckpt.shapes[key] != have:
            raise CheckpointError(f"{ckpt.where[key].name}: tensor {key!r} has shape {list(ckpt.shapes[key])} but the "
                                  f"model's is {list(have)}: the checkpoint is not this model's")
        out[key] = canon
    present = {cg.aliases.get(k, k) for k in ckpt.keys()}
    missing = [n for n, p in model.named_parameters() if cg.aliases.get(n, n) not in present]
    if missing:
        raise CheckpointError(f"{ckpt.directory} lacks parameter(s) {missing[:3]} of {type(model).__name__}; the "
                              "pruned checkpoint would leave them to random initialisation")
    return out


def _rename(written: list[tuple[Path, list[str]]], out: Path) -> list[str]:
    """The written parts get the HuggingFace shard names (model-0000i-of-0000n.safetensors);
    earlier shards of that naming in ``out`` are removed first."""
    for old in out.glob("model-*-of-*.safetensors"):
        old.unlink()
    (out / "model.safetensors").unlink(missing_ok=True)
    n = len(written)
    names = []
    for i, (path, _) in enumerate(written):
        name = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        path.rename(out / name)
        names.append(name)
    return names
