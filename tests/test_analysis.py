"""The criteria analysis: JSON schema, similarity/applicability statistics, CWDA tests."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from fxprune.analysis import analyze_criteria
from fxprune.analysis.applicability import near_threshold
from fxprune.analysis.cwda import cwda
from fxprune.analysis.similarity import global_pruned, similarity
from fxprune.cli import main
from fxprune.models.cifar import resnet20


@pytest.fixture(scope="module")
def analysis():
    torch.manual_seed(0)
    model = resnet20().eval()
    calib = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    return analyze_criteria(model, torch.randn(1, 3, 32, 32), calibration_data=calib)


def test_analysis_json_schema(analysis, tmp_path):
    files = analysis.save(tmp_path)
    d = json.loads((tmp_path / "analysis.json").read_text())
    assert d["format"] == "fxprune.criteria-analysis/1"
    assert d["criteria"] == ["l1", "l2", "fpgm", "bn_scale", "taylor"] and d["skipped"] == {}
    n_layers = len(d["layers"])
    assert n_layers > 3 and all({"key", "module", "channels"} <= set(x) for x in d["layers"])
    pairs = [f"{a}~{b}" for a, b in itertools.combinations(d["criteria"], 2)]
    sim = d["similarity"]
    for stat in ("spearman", "kendall", "jaccard_layerwise"):
        assert list(sim[stat]) == pairs
        for v in sim[stat].values():
            assert len(v) == n_layers
            assert all(x is None or -1 - 1e-9 <= x <= 1 + 1e-9 for x in v)
    assert all(0 <= v <= 1 for v in sim["jaccard_global"].values())
    assert set(sim["global_pruned_counts"]) == set(d["criteria"])
    for c in d["criteria"]:
        counts = sim["global_pruned_counts"][c]
        assert len(counts) == n_layers
        total = sum(x["channels"] for x in d["layers"])
        assert sum(counts) == int(0.5 * total)
        app = d["applicability"]["criteria"][c]
        assert len(app["cv"]) == len(app["near_threshold"]) == n_layers
    assert len(d["cwda"]["layers"]) == sum(isinstance(m, nn.Conv2d) for m in resnet20().modules())
    layer = d["cwda"]["layers"][0]
    assert {"name", "n", "mean", "sigma", "shapiro_p", "dagostino_p", "ks_p", "pass", "qq"} <= set(layer)
    assert len(layer["qq"]["theoretical"]) == len(layer["qq"]["sample"])
    assert {p.name for p in files} >= {"analysis.json", "similarity.png", "applicability.png", "cwda.png", "qq.png",
                                       "global_pruned_per_layer.png"}
    s = analysis.summary()
    assert set(s["pairs"]) == set(pairs)


def test_similarity_of_a_criterion_with_itself_and_its_reverse():
    rng = np.random.default_rng(0)
    layers = [rng.random(10), rng.random(7)]
    sim = similarity({"a": layers, "b": [x * 3 for x in layers], "c": [-x for x in layers]}, 0.5,
                     {"a": False, "b": False, "c": True})
    assert sim["spearman"]["a~b"] == pytest.approx([1.0, 1.0])
    assert sim["kendall"]["a~c"] == pytest.approx([-1.0, -1.0])
    assert sim["jaccard_layerwise"]["a~b"] == [1.0, 1.0]
    assert sim["jaccard_layerwise"]["a~c"][0] == 0.0  # opposite halves of an even-sized layer
    assert sim["jaccard_global"]["a~b"] == 1.0


def test_global_pruning_normalises_layers():
    """Layer 2's scores are 100x larger; relative to its own mean its channels are as weak as
    layer 1's, so global pruning takes from both."""
    layers = [np.array([1.0, 2, 3, 4]), np.array([100.0, 200, 300, 400])]
    assert global_pruned(layers, 0.5, comparable=False) == [{0, 1}, {0, 1}]
    assert global_pruned(layers, 0.5, comparable=True) == [{0, 1, 2}, {0}]


def test_near_threshold_fraction():
    s = np.array([1.0, 1.01, 1.02, 2.0, 3.0, 4.0])
    # threshold at 50%: the 3rd lowest (1.02); within 5%: 1.0, 1.01, 1.02
    assert near_threshold(s, 0.5, 0.05) == pytest.approx(0.5)


class Convs(nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.convs = nn.ModuleList()
        for w in weights:
            c = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], bias=False)
            c.weight.data.copy_(w)
            self.convs.append(c)


def test_cwda_tells_gaussian_from_non_gaussian_weights():
    g = torch.Generator().manual_seed(0)
    gaussian = Convs([torch.randn(32, 16, 3, 3, generator=g) * 0.05 for _ in range(10)])
    uniform = Convs([torch.rand(32, 16, 3, 3, generator=g) - 0.5 for _ in range(10)])
    binary = Convs([torch.sign(torch.randn(32, 16, 3, 3, generator=g)) * 0.1 for _ in range(10)])
    good = cwda(gaussian)
    assert all(rate >= 0.8 for rate in good["pass_rate"].values()), good["pass_rate"]
    assert all(layer["sigma"] == pytest.approx(0.05, rel=0.1) for layer in good["layers"])
    for bad in (cwda(uniform), cwda(binary)):
        assert bad["pass_rate"]["shapiro"] == 0.0 and bad["pass_rate"]["dagostino"] == 0.0
    assert cwda(binary)["pass_rate"]["ks"] == 0.0


def test_cli_analyze_writes_json_and_pngs(tmp_path, capsys):
    rc = main(["analyze", "--model", "cifar:resnet20", "--criteria", "l1", "l2", "fpgm", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "analysis.json").exists() and (tmp_path / "similarity.png").exists()
    assert "l1~l2" in capsys.readouterr().out


def test_cifar10_folder_reader(tmp_path):
    import pickle

    from fxprune.data import cifar10

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    train, test = cifar10(tmp_path)
    assert len(train) == 20 and len(test) == 4 and train[0][0].shape == (3, 32, 32)
    with pytest.raises(FileNotFoundError, match="does not download"):
        cifar10(tmp_path / "nowhere")


def test_digits_split_is_fixed_and_stratified():
    from fxprune.data import digits

    a, b = digits(), digits()
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert (len(a.train), len(a.val), len(a.test)) == (1078, 359, 360)
    counts = torch.bincount(a.test.tensors[1], minlength=10)
    assert counts.min() >= 34  # every class present in proportion
