"""Every model source of the command line: torchvision, timm, a local HuggingFace directory and
the user's own file or module; clear errors for the rest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import fxprune
from fxprune.cli import main
from fxprune.errors import ModelError
from fxprune.models import TokenIds, example_input, get_model

DATA = Path(__file__).parent / "data"


def _prune(tmp_path, spec: str, *extra: str) -> dict:
    assert main(["prune", "--model", spec, "--sparsity", "0.5", "--out", str(tmp_path), *extra]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["params_after"] < report["params_before"] and report["max_abs_error"] is not None
    return report


def test_timm_model(tmp_path):
    pytest.importorskip("timm")
    _prune(tmp_path, "timm:resnet18", "--input-shape", "1,3,64,64")
    with pytest.raises(ModelError, match="timm has no model 'resnet_nope'"):
        get_model("timm:resnet_nope")


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'fxprune\[timm\]'"):
        get_model("timm:resnet18")


def test_huggingface_directory_from_a_config_and_from_a_checkpoint(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, architectures=["LlamaForCausalLM"])
    cfg_dir = tmp_path / "config_only"
    config.save_pretrained(cfg_dir)
    model, spec = get_model(f"hf:{cfg_dir}")
    assert type(model).__name__ == "LlamaForCausalLM" and spec == TokenIds((1, 128), 128)
    assert example_input(spec, (1, 16)).dtype == torch.int64
    report = _prune(tmp_path / "out", f"hf:{cfg_dir}", "--input-shape", "1,16", "--attention", "both")
    assert report["capture"] == "export" and report["macs_after"] < 0.5 * report["macs_before"]
    ckpt = tmp_path / "checkpoint"
    torch.manual_seed(1)
    saved = transformers.LlamaForCausalLM(config)
    saved.save_pretrained(ckpt)
    loaded, _ = get_model(f"hf:{ckpt}")
    for (k, a), b in zip(saved.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_huggingface_architectures_only_name_transformers_classes(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, architectures=["os.system", "NotAModel"])
    config.save_pretrained(tmp_path)
    model, _ = get_model(f"hf:{tmp_path}")
    assert type(model).__name__ == "BertModel"  # AutoModel: the names are no transformers model class
    with pytest.raises(ModelError, match="config.json"):
        get_model(f"hf:{tmp_path / 'nowhere'}")


def test_user_file_and_module_factories(tmp_path, monkeypatch):
    _prune(tmp_path, f"{DATA / 'my_model.py'}:build")
    model, x = get_model(f"{DATA / 'my_model.py'}:tensor_example")
    assert isinstance(x, torch.Tensor) and example_input(x) is x
    monkeypatch.syspath_prepend(str(DATA))
    model, shape = get_model("my_model:build")
    assert shape == (1, 3, 16, 16)
    for spec, msg in ((f"{DATA / 'my_model.py'}:missing", "no function 'missing'"),
                      (f"{DATA / 'my_model.py'}:NOT_CALLABLE", "no function"),
                      (f"{DATA / 'nope.py'}:build", "is not a file"),
                      (f"{DATA / 'my_model.py'}:build()", "must name a factory"),
                      ("not a/module:build", "expected one of"),
                      ("resnet18", "expected one of")):
        with pytest.raises(ModelError, match=msg):
            get_model(spec)


def _my_model():
    torch.manual_seed(0)
    model, shape = get_model(f"{DATA / 'my_model.py'}:build")
    return model, torch.randn(*shape)


def test_saved_fxp_model_is_pruned_again_from_its_recorded_input(tmp_path):
    model, x = _my_model()
    small = fxprune.compile(model, fxprune.Plan(sparsity=0.25), example_inputs=(x,))
    fxprune.save(small, tmp_path / "m.fxp")
    loaded, spec = get_model(str(tmp_path / "m.fxp"))
    assert spec == (1, 3, 16, 16)  # the example input compile recorded
    assert torch.allclose(loaded(x), small(x), atol=1e-6)
    again = _prune(tmp_path / "out", str(tmp_path / "m.fxp"))
    assert again["params_before"] == fxprune.report(small).params_after
    assert again["max_abs_error"] <= 1e-4 * max(again["max_abs_reference"], 1.0)


def test_pt2_program_needs_trust_and_then_prunes_through_export_capture(tmp_path, capsys):
    model, x = _my_model()
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    with pytest.raises(ModelError, match="--trust"):
        get_model(str(tmp_path / "m.pt2"))
    assert main(["prune", "--model", str(tmp_path / "m.pt2"), "--out", str(tmp_path / "refused")]) != 0
    assert "--trust" in capsys.readouterr().err and not (tmp_path / "refused" / "report.json").exists()
    loaded, sample = get_model(str(tmp_path / "m.pt2"), trusted=True)
    assert torch.equal(sample, x) and torch.allclose(loaded(x), model(x), atol=1e-6)
    report = _prune(tmp_path / "out", str(tmp_path / "m.pt2"), "--trust")
    # an ATen-level program: fx tracing alone would see no prunable layer
    assert report["capture"] == "export" and report["macs_after"] < 0.6 * report["macs_before"]


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_hostile_model_file_runs_no_code_without_trust(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"payload": _Marker(str(marker))}, tmp_path / "evil.pt2")
    torch.save({"format": "x", "spec": "{}", "tensors": {"t": _Marker(str(marker))}}, tmp_path / "evil.fxp")
    for name in ("evil.pt2", "evil.fxp"):
        with pytest.raises(ModelError):
            get_model(str(tmp_path / name))
    assert not marker.exists()
    with pytest.raises(ModelError, match="does not exist"):
        get_model(str(tmp_path / "missing.fxp"))


def test_pt2_program_module_pickles_and_switches_mode():
    """The benchmark sends models to worker processes by pickling, and every tool calls .eval():
    the program's own module refuses .eval() and holds an unpicklable shape-guard closure."""
    import pickle
    import tempfile

    model, x = _my_model()
    with tempfile.TemporaryDirectory() as d:
        torch.export.save(torch.export.export(model, (x,)), Path(d) / "m.pt2")
        loaded, _ = get_model(str(Path(d) / "m.pt2"), trusted=True)
    again = pickle.loads(pickle.dumps(loaded.eval()))
    assert torch.allclose(again(x), model(x), atol=1e-6)
