"""Without the optional extras (scipy, matplotlib, scikit-learn, scikit-image, onnx, timm,
transformers) fxprune still imports and compiles, and a command that needs one names the pip
command. The extras are hidden from a subprocess by an import hook, as a fresh ``pip install .``
without extras would leave them out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """
import sys, importlib.abc, importlib.util
HIDDEN = {"scipy", "matplotlib", "sklearn", "skimage", "onnx", "onnxruntime", "onnxscript", "timm",
          "transformers", "einops"}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):  # "is it installed?" answers no, as it would
    return None if name.split(".")[0] in HIDDEN else _find_spec(name, package)
importlib.util.find_spec = find_spec
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_compile_needs_no_extra():
    res = _run("""
import torch, torchvision, fxprune
model = torchvision.models.resnet18().eval()
small = fxprune.compile(model, fxprune.Plan(sparsity=0.5), example_inputs=(torch.randn(1, 3, 64, 64),))
rep = fxprune.report(small)
assert rep.macs_ratio < 0.5 and rep.max_abs_error is not None
print("ok")
""")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_a_command_that_needs_an_extra_names_it(tmp_path):
    res = _run(f"""
from fxprune.cli import main
raise SystemExit(main(["analyze", "--model", "cifar:resnet20", "--out", {str(tmp_path)!r}]))
""")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "pip install 'fxprune[analysis]'" in res.stderr and "Traceback" not in res.stderr
