"""ArtNet: S² identities, style swap, channel-aligned transforms through the compiler, exact
zero-channel pruning, decoder training, stylize CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import fxprune
from fxprune.errors import ModelError, PlanError
from fxprune.methods import zero_channel_prune
from fxprune.apps import artnet as A
from fxprune.apps.artnet import ArtNet
from tests.conftest import assert_unchanged, snapshot


def _pair(size=64, batch=1):
    c = torch.cat([A.load_image("skimage:astronaut", size)] * batch)
    return c, A.load_image("skimage:hubble_deep_field", size)


@pytest.fixture(scope="module")
def net():
    return ArtNet().eval()


def test_artnet_interface(net):
    c, s = _pair(64, batch=2)
    with torch.no_grad():
        out = net(c, s)
        assert out.shape == (2, 3, 64, 64)
        odd = A.load_image("skimage:chelsea", (60, 76))
        assert net(odd, s).shape == (1, 3, 60, 76)  # not multiples of the stride
    assert net.encoder.out_channels == 480 and net.encoder.cut == "inception3b"
    # seeded: two builds are the same network
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ArtNet().state_dict().values()))


def test_bad_inputs_are_named(tmp_path, net):
    with pytest.raises(PlanError, match="transform 'gram'"):
        ArtNet("gram")
    with pytest.raises(ModelError, match="never downloaded"):
        ArtNet(encoder_weights=tmp_path / "missing.pth")
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "w.pth")
    with pytest.raises(ModelError, match="not a torchvision GoogLeNet state dict"):
        ArtNet(encoder_weights=tmp_path / "w.pth")
    c, s = _pair(64, batch=3)
    with pytest.raises(PlanError, match="3 content images but 2 style"):
        net.transform(net.encoder(c), net.encoder(torch.cat([s, s])))
    with pytest.raises(PlanError, match="GoogLeNet cut"):
        A.GoogLeNetEncoder("fc")


def test_encoder_weights_load_from_a_local_torchvision_file(tmp_path):
    import torchvision

    g = torchvision.models.googlenet(weights=None, init_weights=True, aux_logits=False)
    torch.save(g.state_dict(), tmp_path / "googlenet.pth")
    net = ArtNet(encoder_weights=tmp_path / "googlenet.pth", cut="inception3a")
    assert torch.equal(net.encoder.layers.inception3a.branch1.conv.weight, g.inception3a.branch1.conv.weight)
    assert net.encoder.out_channels == 256


def test_whitening_and_colouring_identities():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=g)
    fs = (mix @ torch.randn(6, 500, generator=g) + torch.arange(6.0)[:, None]).double()
    fc = (torch.randn(6, 6, generator=g) @ torch.randn(6, 400, generator=g)).double()
    w = A.whiten(fc)
    assert torch.allclose(w.mean(1), torch.zeros(6, dtype=w.dtype), atol=1e-9)
    assert torch.allclose(w @ w.T / (w.shape[1] - 1), torch.eye(6, dtype=w.dtype), atol=1e-8)
    # colouring(whitening(f_s)) reproduces f_s's mean and covariance (here: f_s itself)
    back = A.colour(A.whiten(fs), fs)
    mu_s, cov_s = A.mean_cov(fs)
    mu_b, cov_b = A.mean_cov(back)
    assert torch.allclose(mu_b, mu_s, atol=1e-9) and torch.allclose(cov_b, cov_s, atol=1e-8)
    assert torch.allclose(back, fs, atol=1e-8)
    # and any whitened content gets the style's statistics
    mu_c, cov_c = A.mean_cov(A.colour(w, fs))
    assert torch.allclose(mu_c, mu_s, atol=1e-9) and torch.allclose(cov_c, cov_s, atol=1e-8)


def test_style_swap_picks_the_nearest_patch():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(4, 7, 9, generator=g)
    c = torch.randn(4, 6, 5, generator=g)
    patches = A.style_patches(s, 3, max_patches=10_000)
    assert patches.shape == (5 * 7, 4, 3, 3)
    best = A.match_patches(c, patches)
    # brute force: cosine similarity of each zero-padded content patch with every style patch
    cp = torch.nn.functional.unfold(c[None], 3, padding=1)[0].T  # H*W x C*9
    pn = patches.flatten(1) / patches.flatten(1).norm(dim=1, keepdim=True)
    assert torch.equal(best.flatten(), (cp @ pn.T).argmax(1))
    # content made of style patches (scaled: the match is scale-invariant) finds them again
    c2 = 3.0 * s[:, 2:7, 1:8]
    best2 = A.match_patches(c2, patches)
    for y in range(1, 4):
        for x in range(1, 6):
            assert int(best2[y, x]) == (y + 1) * 7 + x  # style patch centred at (y + 2, x + 1)
    swapped = A.style_swap(c2, s, max_patches=10_000)
    assert torch.allclose(swapped[:, 2:3, 2:5], s[:, 4:5, 3:6], atol=1e-6)  # interior: all votes agree
    # the stride grows until the patch count fits
    assert A.style_patches(s, 3, max_patches=12).shape[0] <= 12


@pytest.mark.parametrize("kind", ["s2", "adain", "wct"])
def test_transforms_keep_zero_channels_zero(kind):
    t = A.TRANSFORMS[kind](alpha=0.7)
    g = torch.Generator().manual_seed(2)
    fc, fs = torch.rand(2, 8, 6, 6, generator=g), torch.rand(1, 8, 7, 7, generator=g)
    fc[:, [1, 5]] = 0
    fs[:, [1, 5]] = 0
    out = t(fc, fs)
    assert out.shape == fc.shape and (out[:, [1, 5]] == 0).all() and out.abs().sum() > 0
    # the other channels do not see the zero ones: same result as on the live channels alone
    live = [0, 2, 3, 4, 6, 7]
    assert torch.allclose(t(fc[:, live], fs[:, live]), out[:, live], atol=1e-5)


@pytest.mark.parametrize("kind", ["s2", "adain", "wct"])
def test_compile_prunes_through_the_transform(kind):
    net = ArtNet(kind).eval()
    before = snapshot(net)
    small = fxprune.compile(net, fxprune.Plan(sparsity=0.5), _pair(64))
    assert_unchanged(net, before)
    r = fxprune.report(small)
    assert r.max_abs_error is not None and r.macs_after < 0.5 * r.macs_before
    # the encoder's output channels and the decoder's input channels are one class through the
    # transform: both halve
    assert small.decoder.conv0.in_channels == 240
    with torch.no_grad():
        assert small(*_pair(48)).shape == (1, 3, 48, 48)


def test_zero_channel_pruning_is_exact_on_the_calibration_images(net):
    names = ["astronaut", "coffee", "chelsea"]
    calib = [((A.load_image(f"skimage:{a}", 64), A.load_image(f"skimage:{b}", 64)), None)
             for a, b in zip(names, names[1:] + names[:1])]
    before = snapshot(net)
    z = zero_channel_prune(net, calib)
    assert_unchanged(net, before)
    assert z.removed > 0 and z.removed == sum(l["zero"] for l in z.layers) and z.prunable > z.removed
    assert z.max_abs_error <= 1e-6 * max(1.0, z.max_abs_output)
    assert z.macs_ratio < 1.0 and z.batches == 3
    # every removed channel really is zero at its consumers: zeroing it in the dense model is a no-op,
    # and a channel that was kept had a non-zero activation somewhere
    assert all(l["max_activation_kept_min"] > 0 for l in z.layers)


def test_zero_channel_pruning_finds_planted_dead_channels():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        m[0].bias[[2, 7, 11]] = -1e4  # never fires
        m[2].bias[[0, 5]] = -1e4
    data = [torch.randn(4, 3, 12, 12) for _ in range(3)]
    z = zero_channel_prune(m, data)
    # exact up to float summation order (a smaller convolution sums in another order): fp32 tolerance
    assert z.removed == 5 and z.max_abs_error <= 1e-6 * max(1.0, z.max_abs_output)
    assert z.model.get_submodule("0").out_channels == 13 and z.model.get_submodule("2").in_channels == 13
    assert z.model.get_submodule("2").out_channels == 6 and z.model.get_submodule("4").in_channels == 6
    assert {l["group"]: l["zero"] for l in z.layers} == {"0.weight@0": 3, "2.weight@0": 2}


def test_zero_channel_prune_rejects_bad_arguments(net):
    with pytest.raises(PlanError, match="at least one calibration batch"):
        zero_channel_prune(net, [])
    with pytest.raises(PlanError, match="tolerance"):
        zero_channel_prune(net, [torch.zeros(1, 3, 8, 8)], tolerance=-1)


def test_decoder_training_lowers_the_loss():
    net = ArtNet(cut="conv3")
    enc = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    hist = A.train_decoder(net, [A.sample_image("astronaut")], steps=40, batch=4, crop=48, lr=3e-3)
    first = sum(h["loss"] for h in hist[:5]) / 5
    last = sum(h["loss"] for h in hist[-5:]) / 5
    assert last < 0.7 * first
    assert all(torch.equal(v, net.encoder.state_dict()[k]) for k, v in enc.items())  # encoder frozen


def test_vgg_adain_baseline_runs():
    net = A.VGGAdaIN().eval()
    assert net.encoder.out_channels == 512
    with torch.no_grad():
        assert net(*_pair(64)).shape == (1, 3, 64, 64)
    assert isinstance(net.decoder[-1], nn.Conv2d) and net.decoder[-1].out_channels == 3


def test_stylize_cli(tmp_path):
    from fxprune.cli import main

    out = tmp_path / "out.png"
    assert main(["stylize", "--size", "64", "-o", str(out), "--zero-prune"]) == 0
    from PIL import Image

    assert Image.open(out).size == (64, 64)
    assert main(["stylize", "missing.png", "--size", "64", "-o", str(out)]) == 1


def test_encoder_stays_in_eval_mode():
    """Bug: a freshly built ArtNet was in train mode, so its encoder's batch norms used batch
    statistics (and updated the running ones): the bundled decoder then produced a white image."""
    net = ArtNet()
    stats = net.encoder.layers.conv1.bn.running_mean.clone()
    c, s = _pair(64)
    with torch.no_grad():
        a = net(c, s)
        net.train()
        b = net(c, s)
    assert not net.encoder.training and net.decoder.training
    assert torch.equal(stats, net.encoder.layers.conv1.bn.running_mean) and torch.allclose(a, b)


@pytest.mark.parametrize("kind", ["s2", "wct", "adain"])
def test_transform_macs_match_flop_counter(kind):
    from torch.utils.flop_counter import FlopCounterMode

    t = A.TRANSFORMS[kind](max_patches=20) if kind == "s2" else A.TRANSFORMS[kind]()
    g = torch.Generator().manual_seed(0)
    fc, fs = torch.rand(2, 16, 12, 10, generator=g) + 0.1, torch.rand(1, 16, 9, 11, generator=g) + 0.1
    with FlopCounterMode(display=False) as counter:
        t(fc, fs)
    assert sum(b for b, _ in t.macs_terms([tuple(fc.shape), tuple(fs.shape)])) == counter.get_total_flops() // 2


def test_flops_budget_counts_the_transform():
    """The S² transform is most of ArtNet's cost: a MACs budget must see it (it did not, before
    channel-aligned modules declared their MACs: the report counted only the convolutions)."""
    net = ArtNet().eval()
    c, s = A.load_image("skimage:astronaut", 96), A.load_image("skimage:coffee", 96)
    dense = fxprune.compile(net, fxprune.Plan(sparsity=0.0), (c, s))
    r0 = fxprune.report(dense)
    transform = sum(b for b, _ in net.transform.macs_terms([tuple(net.encoder(c).shape), tuple(net.encoder(s).shape)]))
    assert transform > 0.2 * r0.macs_before
    small = fxprune.compile(net, fxprune.Plan(flops=0.5, scope="global"), (c, s))
    r = fxprune.report(small)
    assert 0.47 <= r.macs_after / r.macs_before <= 0.5


def test_pruned_artnet_saves_and_loads_without_trust(tmp_path, net):
    c, s = _pair(64)
    z = zero_channel_prune(net, [((c, s), None)])
    fxprune.save(z.model, tmp_path / "z.fxp")
    again = fxprune.load(tmp_path / "z.fxp")  # the S2 module is stored as data (fxprune's own class)
    with torch.no_grad():
        assert torch.equal(again(c, s), z.model(c, s))
    assert isinstance(again.transform, A.S2) and again.transform.max_patches == net.transform.max_patches


class _UserTransform(A.AdaIN):  # a channel-aligned module from outside fxprune
    pass


def test_user_channel_aligned_modules_still_need_trust(tmp_path):
    from fxprune.errors import SerializationError

    net = A.StyleTransferNet(A.GoogLeNetEncoder("conv3"), _UserTransform(), A.mirror_decoder(A.GoogLeNetEncoder("conv3").stages)).eval()
    small = fxprune.compile(net, fxprune.Plan(sparsity=0.5), _pair(32))
    fxprune.save(small, tmp_path / "u.fxp")
    with pytest.raises(SerializationError, match="loading it runs code"):
        fxprune.load(tmp_path / "u.fxp")
    assert isinstance(fxprune.load(tmp_path / "u.fxp", trusted=True).transform, _UserTransform)
