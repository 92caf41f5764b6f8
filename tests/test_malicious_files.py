"""Hostile ``.fxp`` files: each route by which a file could run code, and corrupt files.

Every test writes a file that would do something visible (create a sentinel file) if any part of
it were executed, loads it with the default ``trusted=False`` and asserts that ``load`` raises
``SerializationError`` and the sentinel does not exist. ``test_payloads_are_live`` shows the
payloads are real: with the name checks switched off, loading them does create the sentinel.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from torch import nn

import fxprune
from fxprune.serialize import safelist
from fxprune.serialize import to_state


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        n = y.size(0)
        return self.fc(y.mean((2, 3)).reshape(n, -1))


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    small = fxprune.compile(Small().eval(), fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(2, 3, 8, 8),))
    return to_state(small)


def _write(tmp_path, state, spec=None, **overrides):
    st = dict(state)
    if spec is not None:
        st["spec"] = json.dumps(spec)
    st.update(overrides)
    path = tmp_path / "evil.fxp"
    torch.save(st, path)
    return path


def _spec(state):
    return json.loads(state["spec"])


def _nodes(spec, op=None):
    return [n for n in spec["graphs"]["eval"] if op is None or n["op"] == op]


def _open_sentinel(sentinel) -> str:
    return f"open({str(sentinel)!r}, 'w').close()"


def _assert_refused(path, sentinel, match=None):
    with pytest.raises(fxprune.SerializationError, match=match):
        fxprune.load(path)
    assert not os.path.exists(sentinel), "code from the file ran"


# ---- routes into generated code -----------------------------------------------------------------
def _placeholder_payload(state, sentinel):
    spec = _spec(state)
    _nodes(spec, "placeholder")[0]["target"] = f"x={_open_sentinel(sentinel)}"
    return spec


def _quoting_payload(state, sentinel):
    spec = _spec(state)
    m = _nodes(spec, "call_method")[0]
    m["target"] = f'size") or {_open_sentinel(sentinel)} or getattr(x, "size'
    return spec


def test_placeholder_target_injection(tmp_path, state):
    sentinel = tmp_path / "pwned"
    _assert_refused(_write(tmp_path, state, _placeholder_payload(state, sentinel)), sentinel, "placeholder")


def test_quote_in_method_name(tmp_path, state):
    sentinel = tmp_path / "pwned"
    _assert_refused(_write(tmp_path, state, _quoting_payload(state, sentinel)), sentinel, "method")


def test_payloads_are_live(tmp_path, state, monkeypatch):
    """Without the grammar checks the two payloads above do run: the tests above can fail."""
    monkeypatch.setattr(safelist, "is_placeholder_target", lambda name: True)
    sentinel = tmp_path / "pwned"
    try:
        fxprune.load(_write(tmp_path, state, _placeholder_payload(state, sentinel)))
    except Exception:
        pass
    assert sentinel.exists()


@pytest.mark.parametrize("name", ["x; import os", "a b", "__import__", "class", "x)", ""])
def test_node_names_must_be_identifiers(tmp_path, state, name):
    spec = _spec(state)
    _nodes(spec, "call_method")[0]["name"] = name
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "identifier")


@pytest.mark.parametrize("key", ["a=1", "x):\n    pass\nimport os #"])
def test_kwarg_names_must_be_identifiers(tmp_path, state, key):
    spec = _spec(state)
    node = _nodes(spec, "call_function")[0]
    node["kwargs"] = {"dict": [[key, 1]]}
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned")


def test_class_name_injection(tmp_path, state):
    spec = _spec(state)
    spec["class_name"] = "X(object): pass\nimport os\nclass Y"
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "class name")


# ---- functions: exact names from a table, never traversal or prefixes ----------------------------
@pytest.mark.parametrize("ref", [
    "torch.nn.functional:importlib.import_module", "torch:os.system", "torch.nn.functional:torch.load",
    "builtins:open", "builtins:eval", "builtins:exec", "builtins:__import__", "operator:call",
    "operator:methodcaller", "operator:attrgetter", "torch:load", "torch:save", "torch:from_file",
    "torch:hub.load", "os:system", "subprocess:Popen", "torch.nn.functional:F.__globals__",
])
def test_calls_outside_the_op_table(tmp_path, state, ref):
    spec = _spec(state)
    _nodes(spec, "call_function")[0]["target"] = {"fn": ref}
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "function|untrusted|malformed")


@pytest.mark.parametrize("method", ["system", "apply_", "map_", "register_hook", "type", "__class__",
                                    "__reduce_ex__", "_fix_weakref", "numpy"])
def test_methods_outside_the_tensor_allow_list(tmp_path, state, method):
    spec = _spec(state)
    _nodes(spec, "call_method")[0]["target"] = method
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "method")


def test_getattr_names_are_limited(tmp_path, state):
    spec = _spec(state)
    node = _nodes(spec, "call_method")[0]
    node.update(op="call_function", target={"fn": "builtins:getattr"},
                args={"tuple": [node["args"]["tuple"][0], "__class__"]}, kwargs={"dict": []})
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "attribute")


@pytest.mark.parametrize("target", ["conv.__class__", "conv.__init__.__globals__", "conv)", "conv;x", "nope"])
def test_module_and_attr_paths(tmp_path, state, target):
    spec = _spec(state)
    _nodes(spec, "call_module")[0]["target"] = target
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "call_module|path")


def test_get_attr_must_name_a_stored_attribute(tmp_path, state):
    spec = _spec(state)
    node = _nodes(spec, "call_module")[0]
    node.update(op="get_attr", target="conv.weight.__class__", args={"tuple": []}, kwargs={"dict": []})
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "get_attr")


# ---- modules ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["os:system", "subprocess:Popen", "builtins:eval",
                                 "torch.nn.modules.conv:Conv2d.__init__", "tests.test_malicious_files:Small"])
def test_module_classes_outside_the_allow_list(tmp_path, state, cls):
    spec = _spec(state)
    next(iter(spec["modules"].values()))["type"] = cls
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "class")


@pytest.mark.parametrize("attr", ["forward", "__dict__", "__class__", "_forward_hooks", "_parameters",
                                  "extra_repr", "register_forward_hook", "a-b"])
def test_module_attributes_are_data_only(tmp_path, state, attr):
    spec = _spec(state)
    next(iter(spec["modules"].values()))["attrs"][attr] = 1
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "attribute")


def test_pickled_module_needs_trust(tmp_path, state):
    spec = _spec(state)
    target = next(iter(spec["modules"]))
    spec["modules"][target] = {"type": "os:system", "pickled": "blob"}
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned", "trusted=True")


@pytest.mark.parametrize("value", [{"namedtuple": "__import__", "fields": ["name"], "items": ["os"]},
                                   {"namedtuple": "eval", "fields": ["_source"], "items": ["1"]},
                                   {"dtype": "load"}, {"float": "__import__('os')"},
                                   {"device": "evil:0"}, {"unknown": 1}, {}])
def test_value_encodings(tmp_path, state, value):
    spec = _spec(state)
    node = _nodes(spec, "call_function")[0]
    node["args"] = {"tuple": [value]}
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned")


# ---- corrupt files ------------------------------------------------------------------------------
def test_random_bytes_and_truncation(tmp_path, state):
    path = tmp_path / "noise.fxp"
    path.write_bytes(os.urandom(4096))
    _assert_refused(path, tmp_path / "pwned")
    good = _write(tmp_path, state)
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 8):
        path.write_bytes(data[:cut])
        _assert_refused(path, tmp_path / "pwned")
    assert isinstance(fxprune.load(good), nn.Module)  # the untouched file is fine


@pytest.mark.parametrize("mutate", [
    lambda st: st.update(spec="{not json"),
    lambda st: st.update(spec=json.dumps([1, 2])),
    lambda st: st.update(spec=json.dumps({})),
    lambda st: st.update(spec="[" * 100000),
    lambda st: st.update(tensors=[1]),
    lambda st: st.update(tensors={}),
    lambda st: st.update(format="other"),
    lambda st: st.pop("spec"),
])
def test_corrupt_state(tmp_path, state, mutate):
    st = copy.copy(state)
    mutate(st)
    path = tmp_path / "bad.fxp"
    torch.save(st, path)
    _assert_refused(path, tmp_path / "pwned")


@pytest.mark.parametrize("edit", ["drop_key", "undefined_ref", "bad_op", "no_output", "graph_not_list", "dup_name"])
def test_corrupt_graphs(tmp_path, state, edit):
    spec = _spec(state)
    g = spec["graphs"]["eval"]
    if edit == "drop_key":
        del g[1]["args"]
    elif edit == "undefined_ref":
        g[1]["args"] = {"tuple": [{"node": "nowhere"}]}
    elif edit == "bad_op":
        g[1]["op"] = "call_python"
    elif edit == "no_output":
        spec["graphs"]["eval"] = g[:-1]
    elif edit == "graph_not_list":
        spec["graphs"]["eval"] = {"a": 1}
    else:
        g[2]["name"] = g[1]["name"]
    _assert_refused(_write(tmp_path, state, spec), tmp_path / "pwned")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(fxprune.SerializationError, match="no such file"):
        fxprune.load(tmp_path / "absent.fxp")
    with pytest.raises(fxprune.SerializationError):
        fxprune.load(tmp_path)
