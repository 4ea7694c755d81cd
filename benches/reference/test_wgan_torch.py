"""Tiny CPU tests of the PyTorch reference: `python3 -m pytest benches/reference -q` (skips without torch)."""

import os
import sys

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.dirname(__file__))
import wgan_torch as w  # noqa: E402


def test_state_dict_names_dcgan64():
    G = w.DCGANGenerator(64, 3, 8)
    assert list(G.state_dict())[:7] == [
        "main.0.weight", "main.1.weight", "main.1.bias", "main.1.running_mean", "main.1.running_var",
        "main.1.num_batches_tracked", "main.3.weight"]
    assert tuple(G.state_dict()["main.0.weight"].shape) == (100, 64, 4, 4)  # ConvT: [cin, cout, k, k]
    D = w.DCGANCritic(64, 3, 8, "layer")
    # conv0 lrelu1 | conv2 gn3 lrelu4 | conv5 gn6 lrelu7 | conv8 gn9 lrelu10 | conv11
    assert list(D.state_dict()) == [
        "main.0.weight", "main.2.weight", "main.3.weight", "main.3.bias", "main.5.weight", "main.6.weight",
        "main.6.bias", "main.8.weight", "main.9.weight", "main.9.bias", "main.11.weight"]
    assert list(w.DCGANCritic(64, 3, 8, "none").state_dict()) == [f"main.{i}.weight" for i in (0, 2, 4, 6, 8)]
    assert list(w.ToyCritic().state_dict()) == [f"main.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")]


@pytest.mark.parametrize("size,nc", [(28, 1), (32, 3), (64, 3)])
def test_shapes(size, nc):
    G, D = w.DCGANGenerator(size, nc, 4), w.DCGANCritic(size, nc, 4, "layer")
    x = G(torch.randn(2, 100))
    assert tuple(x.shape) == (2, nc, size, size)
    assert tuple(D(x).shape) == (2,)


@pytest.mark.parametrize("loss", ["wgan-gp", "wgan"])
def test_one_step_toy(loss):
    torch.manual_seed(0)
    G, D, optG, optD, data, cfg = w.build("toy", loss, torch.device("cpu"))
    w.prime_grads(G, D)
    ld, lg = w.generator_step(G, D, optG, optD, data.next(), cfg)
    assert torch.isfinite(ld) and torch.isfinite(lg)
    if loss == "wgan":
        assert max(p.abs().max().item() for p in D.parameters()) <= 0.01 + 1e-7


def test_flops_toy():
    G, D, *_, cfg = w.build("toy", "wgan-gp", torch.device("cpu"))
    macs = 2 * 512 + 512 * 512 * 2 + 512 * 1
    assert w.forward_macs(D, (2,)) == macs
    fd, fg = 2 * 256 * macs, 2 * 256 * (macs + 512)
    assert w.step_flops(G, D, cfg) == 5 * (fg + 12 * fd) + 3 * fg + 2 * fd


def test_check():
    assert w.run_check()
