"""What a compile did: sizes before and after, groups, barriers, timings, verification error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import FxPruneError
from .jsonio import JsonRecord

__all__ = ["BarrierReport", "GroupReport", "LAYERS_KEY", "META_ATTR", "REPORT_KEY", "RESOLUTION_KEY", "Report", "report", "resolution_of"]

REPORT_KEY = "fxprune.report"
"""``model.meta`` key of the compile report."""
RESOLUTION_KEY = "fxprune.resolution"
LAYERS_KEY = "fxprune.layers"  # run capture: the module paths and tensor targets surgery replaced
META_ATTR = "fxprune_meta"  # where a pruned model that is not a GraphModule keeps the two
"""``model.meta`` key of the resolution a model was compiled with."""


@dataclass
class GroupReport:
    key: str
    modules: list[str]
    before: int
    after: int
    pinned: int


@dataclass
class BarrierReport:
    node: str
    op: str
    reason: str
    channels: int  # prunable channels (of some group) this barrier pinned


@dataclass
class Report(JsonRecord):
    JSON_WHAT = "report"

    model: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    groups: list[GroupReport]
    barriers: list[BarrierReport]
    auto_leaves: dict[str, str]
    seconds: dict[str, float]
    max_abs_error: float | None
    train_graph: bool
    max_abs_reference: float | None = None  # max |masked dense output|: the scale of max_abs_error
    notes: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None
    fixed_arguments: dict[str, str] = field(default_factory=dict)  # forward argument -> repr of the default it was fixed to
    capture: str = "fx"  # how the model was captured: "fx" (symbolic tracing) or "export" (torch.export)
    specialised: list[str] = field(default_factory=list)  # input shapes a torch.export capture is valid for
    latency: dict[str, Any] | None = None  # measured on the plan's backend: dense / pruned ms, iterations
    inputs: list[dict[str, Any]] = field(default_factory=list)  # the example inputs' tensors: shape, dtype

    @property
    def params_ratio(self) -> float:
        return self.params_after / self.params_before if self.params_before else 1.0

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    @property
    def relative_error(self) -> float | None:
        if self.max_abs_error is None:
            return None
        return self.max_abs_error / self.max_abs_reference if self.max_abs_reference else self.max_abs_error

    @property
    def prunable_groups(self) -> int:
        return sum(1 for g in self.groups if g.before > g.pinned)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        d = dict(d)
        d["groups"] = [GroupReport(**g) for g in d["groups"]]
        d["barriers"] = [BarrierReport(**b) for b in d["barriers"]]
        return cls(**d)


def report(model: Any) -> Report:
    """The report of a model returned by ``fxprune.compile`` (or loaded with ``fxprune.load``)."""
    meta = getattr(model, "meta", None)
    if not isinstance(meta, dict) or REPORT_KEY not in meta:
        meta = getattr(model, META_ATTR, None)  # the user's own module, pruned by surgery
    rep = meta.get(REPORT_KEY) if isinstance(meta, dict) else None
    if rep is None:
        raise FxPruneError(f"{type(model).__name__} was not produced by fxprune.compile (it carries no report)")
    return rep


def resolution_of(model: Any) -> Any:
    """The ``Resolution`` (kept channels) a model returned by ``fxprune.compile`` was built from."""
    for meta in (getattr(model, "meta", None), getattr(model, META_ATTR, None)):
        if isinstance(meta, dict) and RESOLUTION_KEY in meta:
            return meta[RESOLUTION_KEY]
    raise FxPruneError(f"{type(model).__name__} was not produced by fxprune.compile (it carries no resolution)")
