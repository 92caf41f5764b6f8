"""Model specs resolved in one place: ``torchvision:resnet50``, ``cifar:resnet56``,
``skeleton:cp_attention`` (N x 3 x 64 x 18 pose sequences), ``timm:NAME`` (the ``timm`` extra),
``hf:DIR`` (a local HuggingFace config or checkpoint directory; the ``hf`` extra) and the user's
own code, ``path/to/file.py:factory`` or ``package.module:factory`` (a callable returning a module,
or a module and an example input), and saved models: ``model.fxp`` (``fxprune.save``; read as data,
no code runs) and ``model.pt2`` (``torch.export.save``; ``torch.export.load`` unpickles parts of the
file and can run code, so it is read only when the caller trusts the file).

Weights are never downloaded: torchvision and timm models are built without pretrained weights,
HuggingFace ones from the directory alone (``local_files_only``, never ``trust_remote_code``);
pass a local state-dict file to load trained weights.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..apps.cp.model import CPAttentionNet
from ..errors import FxPruneError, ModelError, PlanError, SerializationError
from ..module import load as load_fxp
from ..report import report
from .cifar import MODELS

__all__ = ["TokenIds", "ZOOS", "example_input", "get_model", "input_shape", "load_weights",
           "randomize_for_verification", "register_zoo"]


@dataclass(frozen=True)
class TokenIds:
    """A model input of integer token ids in [0, vocab)."""

    shape: tuple[int, ...]
    vocab: int


InputSpec = Union[tuple[int, ...], TokenIds, torch.Tensor]
ModelFactory = Callable[[str], tuple[nn.Module, InputSpec]]
ZOOS: dict[str, ModelFactory] = {}


def register_zoo(prefix: str) -> Callable[[ModelFactory], ModelFactory]:
    def deco(fn: ModelFactory) -> ModelFactory:
        ZOOS[prefix] = fn
        return fn

    return deco


@register_zoo("torchvision")
def _torchvision(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    import torchvision

    if name not in torchvision.models.list_models():
        raise ModelError(f"torchvision has no model {name!r}")
    kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    size = 299 if name == "inception_v3" else 224
    return model, (1, 3, size, size)


@register_zoo("cifar")
def _cifar(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name not in MODELS:
        raise ModelError(f"no CIFAR model {name!r}; available: {sorted(MODELS)}")
    return MODELS[name](), (1, 3, 32, 32)


@register_zoo("skeleton")
def _skeleton(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name != "cp_attention":
        raise ModelError(f"no skeleton model {name!r}; available: ['cp_attention']")
    return CPAttentionNet(), (1, 3, 64, 18)


def _missing(extra: str, package: str) -> ModelError:
    return ModelError(f"this model spec needs {package}: pip install 'fxprune[{extra}]'")


@register_zoo("timm")
def _timm(name: str) -> tuple[nn.Module, InputSpec]:
    try:
        import timm
    except ImportError:
        raise _missing("timm", "timm") from None
    if name not in timm.list_models():
        close = timm.list_models(f"*{name}*")[:5]
        raise ModelError(f"timm has no model {name!r}" + (f"; did you mean {close}?" if close else ""))
    model = timm.create_model(name, pretrained=False)
    size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224)))
    return model, (1, *size)


HF_SEQUENCE = 128  # tokens of the example input of a HuggingFace text model


def _hf_class(directory: str):
    """(config, model class) of a local HuggingFace directory: the class its config names
    (``architectures``, looked up among transformers' own classes only), else ``AutoModel``."""
    try:
        import transformers
    except ImportError:
        raise _missing("hf", "transformers") from None
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise ModelError(f"hf:{directory}: expected a directory with a config.json (a HuggingFace config or "
                         "checkpoint saved with save_pretrained); nothing is downloaded")
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - a malformed or unknown config
        raise ModelError(f"hf:{directory}: cannot read its config.json ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:200]})") from None
    names = [a for a in (getattr(config, "architectures", None) or []) if isinstance(a, str)]
    cls = next((getattr(transformers, a) for a in names if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", a)
                and isinstance(getattr(transformers, a, None), type)
                and issubclass(getattr(transformers, a), transformers.PreTrainedModel)), transformers.AutoModel)
    return config, cls


def _hf_input(directory: str, config: Any) -> InputSpec:
    if getattr(config, "vocab_size", None):
        return TokenIds((1, HF_SEQUENCE), int(config.vocab_size))
    size = getattr(config, "image_size", None)
    if isinstance(size, int):
        return (1, int(getattr(config, "num_channels", 3)), size, size)
    raise ModelError(f"hf:{directory}: cannot tell the input of a {type(config).__name__} (no vocab_size or "
                     "image_size in its config)")


@register_zoo("hf")
def _huggingface(directory: str) -> tuple[nn.Module, InputSpec]:
    """A local directory with a ``config.json`` (and optionally weights, loaded)."""
    config, cls = _hf_class(directory)
    path = Path(directory)
    has_weights = any((path / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json",
                                                     "pytorch_model.bin"))
    if has_weights:
        model = cls.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    else:
        model = cls.from_config(config) if cls.__name__ == "AutoModel" else cls(config)
    return model, _hf_input(directory, config)


@register_zoo("hf-config")
def _huggingface_meta(directory: str) -> tuple[nn.Module, InputSpec]:
    """The model a local ``config.json`` describes, built on the meta device: shapes without
    weights, for planning a model larger than memory (weights come from its shards)."""
    config, cls = _hf_class(directory)
    with torch.device("meta"):
        model = cls.from_config(config) if cls.__name__ == "AutoModel" else cls(config)
    return model, _hf_input(directory, config)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _user_factory(spec: str) -> tuple[nn.Module, InputSpec]:
    """``file.py:factory`` or ``package.module:factory``: the user's own code, which they name on
    their command line to be run (as ``python file.py`` would). The factory returns a module, or
    ``(module, example_input)`` with a tensor or an input shape."""
    where, _, name = spec.rpartition(":")
    if not _IDENT.fullmatch(name):
        raise ModelError(f"model spec {spec!r}: the part after the last ':' must name a factory function")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ModelError(f"model spec {spec!r}: {path} is not a file")
        mod_name = f"fxprune_user_model_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ModelError(f"model spec {spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
    elif all(_IDENT.fullmatch(part) for part in where.split(".")):
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelError(f"model spec {spec!r}: cannot import {where} ({exc})") from None
    else:
        raise ModelError(f"model spec {spec!r}: expected one of {sorted(p + ':NAME' for p in ZOOS)}, "
                         "path/to/file.py:factory or package.module:factory")
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ModelError(f"model spec {spec!r}: {where} has no function {name!r}")
    got = factory()
    model, example = (got if isinstance(got, tuple) and len(got) == 2 else (got, None))
    if not isinstance(model, nn.Module):
        raise ModelError(f"model spec {spec!r}: {name}() returned {type(model).__name__}, not an nn.Module "
                         "(or a module and an example input)")
    if isinstance(example, (tuple, list)) and all(isinstance(d, int) for d in example):
        example = tuple(example)
    elif example is not None and not isinstance(example, torch.Tensor):
        raise ModelError(f"model spec {spec!r}: {name}() returned an example of type {type(example).__name__}; "
                         "return a tensor or an input shape")
    return model, example


MODEL_FILES = (".fxp", ".pt2")


def _saved_model(path: Path, trusted: bool) -> tuple[nn.Module, InputSpec | None]:
    """A model file: a ``.fxp`` (``fxprune.save``; custom modules need ``trusted``) with the example
    input it was compiled with, or a ``torch.export`` ``.pt2`` (only when ``trusted``) with its
    sample input."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    if path.suffix == ".fxp":
        try:
            model = load_fxp(path, trusted=trusted)
        except SerializationError as exc:
            hint = " (on the command line: --trust)" if "trusted=True" in str(exc) else ""
            raise ModelError(f"{path}: {exc}{hint}") from None
        return model, _recorded_input(model)
    if not trusted:
        raise ModelError(f"{path}: torch.export.load unpickles and evaluates parts of a .pt2 file, so reading it can "
                         "run code from the file. Pass --trust only for a file you made yourself, or ask for a "
                         ".fxp file (fxprune.save), which loads as data")
    try:
        program = torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - torch.export.load raises many kinds for a file it cannot read
        raise ModelError(f"{path} is not a readable torch.export program ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:200]})") from None
    args, kwargs = program.example_inputs or ((), {})
    sample = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) else None
    module = program.module()
    # a plain GraphModule of the same graph and attributes: the program's own module class refuses
    # .train()/.eval() (its graph is fixed to the mode it was exported in; so is this one's) and its
    # input-shape guard (``_guards_fn``, a closure) cannot be pickled to the benchmark's workers.
    # The guard is dropped; fxprune's export capture checks the input shapes of the pruned model.
    gm = torch.fx.GraphModule(module, module.graph, path.stem)
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
    if hasattr(gm, "_guards_fn"):
        gm.delete_submodule("_guards_fn")
    gm.recompile()
    return gm, sample


def _recorded_input(model: nn.Module) -> InputSpec | None:
    """The single example input a compiled model's report recorded: an input shape, or token ids
    over the smallest embedding's vocabulary; None when it took several inputs (or is older)."""
    try:
        inputs = report(model).inputs
    except FxPruneError:  # not a compiled model
        return None
    if len(inputs) != 1:
        return None
    shape, dtype = tuple(int(d) for d in inputs[0]["shape"]), str(inputs[0]["dtype"])
    if dtype.startswith(("float", "bfloat", "complex")):
        return shape
    vocab = [m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)]
    return TokenIds(shape, min(vocab)) if vocab else None


def input_shape(spec: InputSpec | None) -> tuple[int, ...] | None:
    """The example input's shape."""
    if isinstance(spec, TokenIds):
        return spec.shape
    if isinstance(spec, torch.Tensor):
        return tuple(spec.shape)
    return spec


def example_input(spec: InputSpec | None, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """An example input for ``spec`` (at ``shape`` when given): token ids for a text model,
    standard-normal values otherwise; a tensor the factory returned is used as it is."""
    if isinstance(spec, torch.Tensor) and (shape is None or tuple(shape) == tuple(spec.shape)):
        return spec
    shape = shape or input_shape(spec)
    if shape is None:
        raise ModelError("this model gives no example input shape: pass --input-shape")
    if isinstance(spec, TokenIds):
        return torch.randint(0, spec.vocab, tuple(shape))
    if isinstance(spec, torch.Tensor) and not spec.is_floating_point():
        return torch.randint(0, max(int(spec.max()) + 1, 1), tuple(shape), dtype=spec.dtype)
    return torch.randn(*shape)


def randomize_for_verification(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a freshly initialised model random BN statistics and no constant parameters, in place.

    With default statistics (mean 0, var 1) and zero-initialised heads, many channels look alike
    and a classifier's output can be constant, so a wrong pruned model could pass verification.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g).to(p.dtype)
            if p.numel() > 1 and float(p.float().std()) == 0.0:
                p.add_(noise * 0.05)
            elif p.ndim == 1 and p.numel() > 1:
                p.add_(noise * 0.05)
    return model


def get_model(spec: str, weights: str | Path | None = None, *,
              trusted: bool = False) -> tuple[nn.Module, InputSpec | None]:
    """Build the model a spec names and its example input: an input shape (batch 1), ``TokenIds``,
    a tensor its factory or file gave, or None (then the caller needs an input shape).
    ``trusted``: a model file may run code when read (a ``.pt2``, a ``.fxp`` with custom modules)."""
    if Path(spec).suffix in MODEL_FILES:
        model, shape = _saved_model(Path(spec), trusted)
        if weights is not None:
            load_weights(model, weights)
        return model.eval(), shape
    prefix, sep, name = spec.partition(":")
    if not sep:
        raise ModelError(f"model spec {spec!r}: expected one of {sorted(p + ':NAME' for p in ZOOS)}, "
                         "path/to/file.py:factory, package.module:factory or a model file (.fxp, .pt2)")
    if prefix in ZOOS:
        model, shape = ZOOS[prefix](name)
    else:
        model, shape = _user_factory(spec)
    if weights is not None:
        load_weights(model, weights)
    return model.eval(), shape


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state-dict file (``torch.load(weights_only=True)``: no code runs) into
    ``model``; a missing or unreadable file, or keys/shapes that do not fit, raise ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds for a file that is not a checkpoint
        raise ModelError(f"{path} is not a readable state-dict file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict (name -> tensor)")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not fit {type(model).__name__}: {str(exc).splitlines()[0]} "
                         f"{' '.join(str(exc).splitlines()[1:3]).strip()[:300]}") from None
