"""Plan (what to prune and how much) and Resolution (which channels are kept; JSON).

A plan is resolved against a model's channel graph into a resolution: for every group, the
indices of the classes (channels) it keeps, in the group's canonical order. A resolution saved
as JSON and applied to a fresh copy of the same model gives the identical pruned model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .choices import ATTENTION, LAYER_NORM, SCOPES
from .criteria import CRITERIA
from .errors import PlanError, ResolutionError
from .graph.latency import LATENCY_BACKENDS
from .jsonio import JsonRecord

__all__ = ["ATTENTION", "GroupChoice", "LAYER_NORM", "Plan", "Resolution", "SCOPES"]



@dataclass(frozen=True)
class Plan(JsonRecord):
    """What to prune and how much.

    sparsity: fraction of each group's channels to remove (``local``) or of all prunable
        channels, ranked together (``global``); in [0, 1). The default (0.5) applies when no
        budget is given.
    flops: keep at most this fraction of the dense model's MACs (in (0, 1]); instead of sparsity.
    params: keep at most this fraction of the dense model's parameters; instead of sparsity.
    latency: keep at most this fraction of the dense model's latency on ``backend`` ("ort":
        ONNX Runtime CPU, "eager": torch CPU), predicted from per-layer latency tables measured
        on that backend at the example input's shape over a grid of widths (cached; see
        ``fxprune.graph.latency``), then checked on the whole compiled model: a miss beyond
        ``latency_tolerance`` corrects the target and resolves again (at most
        ``latency_iterations`` rounds; the report lists every one).
    backend: where the pruned model will run. With any plan it sets ``round_to="auto"`` and has
        ``compile`` time the dense and the pruned model there: a pruned model measured slower than
        the dense one is resolved again with the backend's step, and a warning says so if even
        that is slower.
    criterion: name of a registered importance criterion ("l1", "l2", "fpgm", "bn_scale",
        "taylor", "random", "cpmc", "zero_channel", "attention", ...).
    scope: "local" (the same fraction per group) or "global" (one ranking across groups);
        default: the criterion's own (global for cpmc, which is defined by global ranking;
        local for the others).
    criterion_options: options of the criterion, e.g. ``{"reduction": "mean"}`` (how the
        member weights of a group are combined: sum / mean / max) or CPMC's
        ``{"weights": [1.0, 0.5, 0.5]}``; unknown options are an error.
    round_to: kept widths become multiples of this (rounded up, never above the dense width);
        ``"auto"`` (the default when a backend is named, else 1): the step the backend runs well,
        measured once and cached (``fxprune.graph.latency.backend_step``; 16 on ONNX Runtime CPU
        and torch CPU on an AVX2 machine, whose blocked convolution kernels want such widths).
    min_channels: no group keeps fewer channels than this.
    max_sparsity: under global ranking and budgets, no group loses more than this fraction of
        its channels (default 0.9): they would otherwise empty whole layers whose channels all
        rank low (cost-aware criteria do that to expensive layers), leaving 1-channel
        bottlenecks. Local ``sparsity`` and ``overrides`` apply as given.
    ignore: qualified module names whose input and output channels are left alone (a container
        name covers every layer inside it).
    overrides: qualified module name -> sparsity for the groups that module produces.
    seed: seed of randomised criteria.
    attention: how multi-head attention loses width: ``"heads"`` (the default) removes whole
        heads (their q/k/v rows and out-projection columns; under grouped-query attention a
        key/value head with its group of query heads), ``"head_dims"`` the same positions of
        the head dim in every head (q/k dims keep the dense 1/sqrt(d) scale; v's dims apart).
        ``"both"`` does the two in turn: whole heads, then the same dims in every kept head, each
        taking 1 - sqrt(1 - s) of an attention group's sparsity s (so the attention width keeps
        the fraction 1 - s, as in the other modes); a sparsity plan only. Rotary embeddings keep
        their frequency pairs together.
    prune_outputs: the model's outputs may lose channels too (default False: every output keeps
        its width). For a backbone whose consumer is rebuilt or fine-tuned — a BertModel whose
        ``last_hidden_state`` *is* the residual stream; keep one output whole with ``ignore`` on
        the layer that produces it. The pruned model returns the kept channels only (the report
        notes each output that lost width) and is verified against the masked dense model on them.
    layer_norm: the form of a LayerNorm whose channels are pruned. ``"exact"`` (the default)
        keeps the dense channel count in its statistics (``DenseLayerNorm``), so the pruned model
        equals the masked dense one. ``"native"`` uses a plain ``nn.LayerNorm(K)`` over the kept
        channels: the standard op every backend fuses, but a different function (the report says
        so; fine-tune afterwards). It is verified against the masked dense model whose LayerNorms
        compute their statistics over the kept channels. RMSNorm is exact in its native form.
    uniform: every group of the same size keeps the same number of channels, so all layers of a
        kind get one width (what a HuggingFace config expresses: one intermediate_size, one head
        count; ``prune_checkpoint`` needs it). A local budget then takes the uniform fraction
        that meets it, without the per-group fill-back that lands closer. Local scope only.
    """

    sparsity: float | None = None
    criterion: str = "l1"
    scope: str | None = None
    round_to: int | str | None = None
    min_channels: int = 1
    max_sparsity: float = 0.9
    ignore: Sequence[str] = ()
    overrides: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    flops: float | None = None
    params: float | None = None
    criterion_options: Mapping[str, Any] = field(default_factory=dict)
    latency: float | None = None
    backend: str | None = None
    attention: str = "heads"
    prune_outputs: bool = False
    layer_norm: str = "exact"
    latency_tolerance: float = 0.05
    latency_iterations: int = 4
    uniform: bool = False

    JSON_WHAT, JSON_ERROR, JSON_INDENT = "plan", PlanError, 2

    def __post_init__(self) -> None:
        given = [k for k in ("sparsity", "flops", "params", "latency") if getattr(self, k) is not None]
        if len(given) > 1:
            raise PlanError(f"give one of sparsity / flops / params / latency, not {' and '.join(given)}")
        if self.latency is not None and self.backend is None:
            object.__setattr__(self, "backend", "ort")
        if self.backend is not None and self.backend not in LATENCY_BACKENDS:
            raise PlanError(f"latency tables can be measured on {sorted(LATENCY_BACKENDS)}, not {self.backend!r}")
        if self.round_to is None:
            object.__setattr__(self, "round_to", "auto" if self.backend is not None else 1)
        if self.round_to == "auto" and self.backend is None:
            raise PlanError("round_to='auto' picks the step of a backend: name one (backend='ort' or 'eager'), "
                            "or give an integer")
        if not isinstance(self.latency_tolerance, (int, float)) or isinstance(self.latency_tolerance, bool) \
                or not 0.0 < self.latency_tolerance < 1.0:
            raise PlanError(f"latency_tolerance is a relative miss in (0, 1), got {self.latency_tolerance!r}")
        if not isinstance(self.latency_iterations, int) or isinstance(self.latency_iterations, bool) \
                or not 1 <= self.latency_iterations <= 20:
            raise PlanError(f"latency_iterations must be an integer in 1..20, got {self.latency_iterations!r}")
        if not given:
            object.__setattr__(self, "sparsity", 0.5)
        if self.sparsity is not None:
            _check_fraction("sparsity", self.sparsity)
        for budget in ("flops", "params", "latency"):
            value = getattr(self, budget)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not 0.0 < value <= 1.0 or math.isnan(value)):
                raise PlanError(f"{budget} is the fraction of the dense model's {budget} to keep, in (0, 1]; "
                                f"got {value!r}")
        if not isinstance(self.prune_outputs, bool):
            raise PlanError(f"prune_outputs is True or False, got {self.prune_outputs!r}")
        if self.attention not in ATTENTION:
            raise PlanError(f"attention must be one of {ATTENTION} (whole heads, the same head dims in every "
                            f"head, or both in turn), got {self.attention!r}")
        if self.attention == "both" and given and given[0] != "sparsity":
            raise PlanError(f"attention='both' splits a sparsity between heads and head dims; a {given[0]} budget "
                            "is searched over one structure: use attention='heads' or 'head_dims' with it")
        if self.layer_norm not in LAYER_NORM:
            raise PlanError(f"layer_norm must be one of {LAYER_NORM} (dense-count statistics, exact; or nn.LayerNorm "
                            f"over the kept channels, a different function), got {self.layer_norm!r}")
        if self.scope is not None and self.scope not in SCOPES:
            raise PlanError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.round_to != "auto" and (not isinstance(self.round_to, int) or isinstance(self.round_to, bool)
                                        or self.round_to < 1):
            raise PlanError(f"round_to must be a positive integer or 'auto', got {self.round_to!r}")
        if not isinstance(self.min_channels, int) or self.min_channels < 1:
            raise PlanError(f"min_channels must be a positive integer, got {self.min_channels!r}")
        if not isinstance(self.max_sparsity, (int, float)) or isinstance(self.max_sparsity, bool) \
                or not 0.0 < self.max_sparsity <= 1.0:
            raise PlanError(f"max_sparsity must be in (0, 1], got {self.max_sparsity!r}")
        if isinstance(self.ignore, str):
            raise PlanError("ignore takes a list of module names, not a single string")
        try:
            ignore = tuple(self.ignore)
        except TypeError:
            raise PlanError(f"ignore takes a list of module names, got {type(self.ignore).__name__}") from None
        bad = [x for x in ignore if not isinstance(x, str) or not x]
        if bad:
            raise PlanError(f"ignore takes module names (non-empty strings such as 'layer4.1.conv2'), got {bad[0]!r}")
        object.__setattr__(self, "ignore", ignore)
        object.__setattr__(self, "overrides", dict(self.overrides))
        for name, value in self.overrides.items():
            _check_fraction(f"overrides[{name!r}]", value)
        if self.criterion not in CRITERIA:
            raise PlanError(f"unknown criterion {self.criterion!r}; registered: {sorted(CRITERIA)}")
        object.__setattr__(self, "criterion_options", dict(self.criterion_options))
        CRITERIA[self.criterion].check_options(self.criterion_options)
        if self.scope is None:
            object.__setattr__(self, "scope", CRITERIA[self.criterion].default_scope)
        if not isinstance(self.uniform, bool):
            raise PlanError(f"uniform is True or False, got {self.uniform!r}")
        if self.uniform and self.scope != "local":
            raise PlanError("uniform=True gives every layer of a kind one width, which a global ranking does not: "
                            "use scope='local'")
        if self.scope == "global" and self.sparsity is not None and self.sparsity > self.max_sparsity:
            raise PlanError(f"global sparsity {self.sparsity:g} exceeds max_sparsity={self.max_sparsity:g} (no group may "
                            "lose more than that); raise max_sparsity")

    @property
    def budget(self) -> tuple[str, float] | None:
        """("flops" | "params" | "latency", fraction to keep), or None for a plain sparsity plan."""
        for name in ("flops", "params", "latency"):
            if getattr(self, name) is not None:
                return name, float(getattr(self, name))
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ignore"] = list(self.ignore)
        d["criterion_options"] = dict(self.criterion_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        if not isinstance(d, Mapping):
            raise PlanError(f"a plan is a JSON object of plan fields, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise PlanError(f"unknown plan fields {sorted(unknown)}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise PlanError(f"bad plan: {exc}") from None



def _check_fraction(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (0.0 <= value < 1.0) \
            or math.isnan(value):
        raise PlanError(f"{name} must be a number in [0, 1), got {value!r}")


@dataclass
class GroupChoice:
    """The kept classes of one group (indices in the group's canonical order)."""

    size: int
    keep: list[int]
    modules: list[str] = field(default_factory=list)
    signature: str = ""


@dataclass
class Resolution(JsonRecord):
    """Kept channel indices per group, keyed by the group's first producer (``param@axis``).
    ``then``: the resolution of a second stage, applied to the model this one prunes
    (``Plan(attention="both")``: whole heads, then head dims); at most one level."""

    groups: dict[str, GroupChoice]
    plan: Plan | None = None
    then: Resolution | None = None

    FORMAT = "fxprune.resolution/1"
    JSON_WHAT, JSON_ERROR = "resolution", ResolutionError

    def pruned_roots(self, cg) -> np.ndarray:
        """Union-find roots of every class this resolution removes from ``cg``."""
        by_key = {g.key: g for g in cg.groups()}
        unknown = [k for k in self.groups if k not in by_key]
        missing = [g.key for g in by_key.values() if not g.pinned.all() and g.key not in self.groups]
        differ = [k for k, c in self.groups.items() if k in by_key and c.signature and c.signature != by_key[k].signature]
        if unknown or missing or differ:
            raise ResolutionError(
                "the resolution does not match this model's channel groups "
                f"(unknown: {unknown[:3]}, not covered: {missing[:3]}, different members: {differ[:3]}); "
                "was it made for another model (or with other leaf_modules)?")
        dead: list[np.ndarray] = []
        for key, choice in self.groups.items():
            g = by_key[key]
            if choice.size != g.size:
                raise ResolutionError(f"group {key} has {g.size} channels in this model, the resolution says {choice.size}")
            keep = np.asarray(choice.keep, dtype=np.int64)
            if keep.size and (keep.min() < 0 or keep.max() >= g.size):
                raise ResolutionError(f"group {key}: kept index out of range 0..{g.size - 1}")
            if keep.size == 0:
                raise ResolutionError(f"group {key}: a group must keep at least one channel")
            mask = np.ones(g.size, dtype=bool)
            mask[keep] = False
            if (mask & g.pinned).any():
                raise ResolutionError(f"group {key}: the resolution removes channels that cannot be pruned "
                                      f"(indices {np.nonzero(mask & g.pinned)[0][:8].tolist()})")
            dead.append(g.classes[mask])
        return np.concatenate(dead) if dead else np.zeros(0, dtype=np.int64)

    @property
    def pruned_count(self) -> int:
        return sum(c.size - len(c.keep) for c in self.groups.values())

    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": self.FORMAT,
            "plan": self.plan.to_dict() if self.plan is not None else None,
            "groups": {k: {"size": c.size, "keep": list(map(int, c.keep)), "modules": c.modules,
                           "signature": c.signature} for k, c in self.groups.items()},
        }
        if self.then is not None:
            d["then"] = self.then.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, nested: bool = False) -> Resolution:
        if not isinstance(d, Mapping) or d.get("format") != cls.FORMAT:
            raise ResolutionError(f"not an fxprune resolution (format {d.get('format') if isinstance(d, Mapping) else d!r})")
        groups = {k: GroupChoice(int(v["size"]), [int(i) for i in v["keep"]], list(v.get("modules", [])),
                                 str(v.get("signature", ""))) for k, v in d["groups"].items()}
        then = d.get("then")
        if then is not None and nested:
            raise ResolutionError("a resolution has at most two stages (its 'then' has no 'then')")
        return cls(groups, Plan.from_dict(d["plan"]) if d.get("plan") else None,
                   cls.from_dict(then, nested=True) if then is not None else None)
