#!/usr/bin/env python3
"""PyTorch reference for the `wgan` crate's benchmarks.

Defines exactly the networks of `src/nn/arch.rs` (same layer order, same parameter names
`main.{i}.weight`, `main.{i}.bias`, `main.{i}.running_mean`, `main.{i}.running_var`,
`main.{i}.num_batches_tracked`, same initialisation), the same WGAN-GP / WGAN (weight clipping)
training step, hyperparameters and batch sizes, and times one *generator step*
(= n_critic critic iterations + 1 generator iteration).

    python3 benches/reference/wgan_torch.py --workload all --loss all --device cuda --mode all --json out.json
    python3 benches/reference/wgan_torch.py --workload toy --loss all --device cpu --steps 20
    python3 benches/reference/wgan_torch.py --check
    python3 benches/reference/wgan_torch.py --train-toy 2000

torch.compile is not offered: it does not support double backward (autograd.grad with
create_graph=True), which the gradient penalty needs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import autograd

COMPILE_NOTE = ("note: torch.compile does not support double backward (autograd.grad(create_graph=True)), "
                "which the gradient penalty needs, so there is no compiled mode")

# ----------------------------------------------------------------------------------------------
# Networks (src/nn/arch.rs)
# ----------------------------------------------------------------------------------------------

TOY_DIM = 512      # gan_toy.py's DIM
TOY_NZ = 2         # gan_toy.py feeds 2-D noise to the generator
NZ = 100           # DCGAN latent size
LEAKY_SLOPE = 0.2  # critic LeakyReLU slope


def mlp(inp: int, out: int, dim: int = TOY_DIM) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, dim), nn.ReLU(),
        nn.Linear(dim, dim), nn.ReLU(),
        nn.Linear(dim, dim), nn.ReLU(),
        nn.Linear(dim, out),
    )


class ToyGenerator(nn.Module):
    """Linear(2,512) ReLU ×3 → Linear(512,2), fed 2-D noise (`dim` and `nz` as `wgan --width --nz`)."""

    def __init__(self, dim: int = TOY_DIM, nz: int = TOY_NZ):
        super().__init__()
        self.nz = nz
        self.main = mlp(nz, 2, dim)

    def forward(self, z):
        return self.main(z)


class ToyCritic(nn.Module):
    """Linear(2,512) ReLU ×3 → Linear(512,1); output [N]."""

    def __init__(self, dim: int = TOY_DIM):
        super().__init__()
        self.main = mlp(2, 1, dim)

    def forward(self, x):
        return self.main(x).view(-1)


def generator_plan(size: int, nc: int, w: int, nz: int = NZ):
    """(cin, cout, kernel, stride, pad) of each ConvTranspose2d, first to last."""
    if size == 64:
        return [(nz, 8 * w, 4, 1, 0), (8 * w, 4 * w, 4, 2, 1), (4 * w, 2 * w, 4, 2, 1), (2 * w, w, 4, 2, 1), (w, nc, 4, 2, 1)]
    if size == 32:
        return [(nz, 4 * w, 4, 1, 0), (4 * w, 2 * w, 4, 2, 1), (2 * w, w, 4, 2, 1), (w, nc, 4, 2, 1)]
    if size == 28:
        return [(nz, 4 * w, 7, 1, 0), (4 * w, 2 * w, 4, 2, 1), (2 * w, nc, 4, 2, 1)]
    raise ValueError(f"image size {size}: the DCGAN models make 28, 32 or 64 pixel images")


def critic_plan(size: int, nc: int, w: int):
    """(cin, cout, kernel, stride, pad) of each Conv2d, first to last."""
    if size == 64:
        return [(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 4, 2, 1), (4 * w, 8 * w, 4, 2, 1), (8 * w, 1, 4, 1, 0)]
    if size == 32:
        return [(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 4, 2, 1), (4 * w, 1, 4, 1, 0)]
    if size == 28:
        return [(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 3, 2, 1), (4 * w, 1, 4, 1, 0)]
    raise ValueError(f"image size {size}: the DCGAN models take 28, 32 or 64 pixel images")


class DCGANGenerator(nn.Module):
    """z [N, nz] viewed as [N, nz, 1, 1] → image [N, nc, size, size]; ConvT–BN–ReLU, last ConvT–Tanh."""

    def __init__(self, size: int, nc: int, width: int, nz: int = NZ):
        super().__init__()
        self.nz = nz
        plan = generator_plan(size, nc, width, nz)
        layers = []
        for i, (cin, cout, k, s, p) in enumerate(plan):
            layers.append(nn.ConvTranspose2d(cin, cout, k, s, p, bias=False))
            if i + 1 < len(plan):
                layers += [nn.BatchNorm2d(cout), nn.ReLU()]
            else:
                layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z):
        return self.main(z.view(z.shape[0], self.nz, 1, 1))


class DCGANCritic(nn.Module):
    """image → [N]; Conv–[LayerNorm]–LeakyReLU(0.2), no norm after the first conv, last conv linear.

    Layer norm = nn.GroupNorm(1, C): normalise over (C,H,W) per sample, per-channel affine.
    """

    def __init__(self, size: int, nc: int, width: int, norm: str = "none"):
        super().__init__()
        assert norm in ("none", "layer")
        plan = critic_plan(size, nc, width)
        layers = []
        for i, (cin, cout, k, s, p) in enumerate(plan):
            layers.append(nn.Conv2d(cin, cout, k, s, p, bias=False))
            if i + 1 == len(plan):
                break
            if i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, cout, eps=1e-5))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)


INIT_RULES = ("pytorch", "dcgan")


@torch.no_grad()
def init_weights(net: nn.Module, rule: str = "dcgan") -> nn.Module:
    """As the Rust crate (src/nn/mod.rs, InitRule; the toy MLPs default to "pytorch", the DCGANs to
    "dcgan"):

    * "dcgan" (Radford et al. 2015, the PyTorch DCGAN example's weights_init): Linear / Conv2d /
      ConvTranspose2d weights N(0, 0.02), Linear biases 0; BatchNorm weight N(1, 0.02), bias 0.
    * "pytorch": the modules' own reset_parameters(): weights kaiming_uniform_(a=√5) =
      U(±1/√fan_in), biases U(±1/√fan_in); norm weight 1, bias 0.

    Both: running_mean 0, running_var 1; layer norm (GroupNorm(1, C)) weight 1, bias 0."""
    if rule not in INIT_RULES:
        raise ValueError(f"init rule {rule!r}: expected one of {INIT_RULES}")
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if rule == "pytorch":
                m.reset_parameters()
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            if rule == "pytorch":
                m.reset_parameters()
            else:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
        elif isinstance(m, nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def default_init(kind: str) -> str:
    """The rule per model kind, as `wgan train` resolves it: toy MLPs "pytorch", DCGANs "dcgan"."""
    return "pytorch" if kind == "toy" else "dcgan"


# ----------------------------------------------------------------------------------------------
# Workloads, data and hyperparameters
# ----------------------------------------------------------------------------------------------

WORKLOADS = {
    # name: (kind, batch, image size, channels, width)
    "toy": ("toy", 256, None, None, None),
    "dcgan28w32": ("dcgan", 64, 28, 1, 32),   # the default job (`wgan train`: MNIST, width 32)
    "dcgan28": ("dcgan", 64, 28, 1, 64),
    "dcgan64": ("dcgan", 64, 64, 3, 64),
}

N_CRITIC = 5
GP_LR, GP_BETAS, GP_LAMBDA = 1e-4, (0.0, 0.9), 10.0            # WGAN-GP paper (Algorithm 1)
TOY_GP_LAMBDA, TOY_GP_BETAS = 0.1, (0.5, 0.9)                  # gan_toy.py
CLIP_LR, CLIP_VALUE = 5e-5, 0.01                               # WGAN paper (RMSprop)
GAN_LR, GAN_BETAS = 2e-4, (0.5, 0.999)                         # DCGAN paper (standard GAN on images)

_SQ = 1.0 / math.sqrt(2.0)
EIGHT_CENTERS = [(1, 0), (-1, 0), (0, 1), (0, -1), (_SQ, _SQ), (_SQ, -_SQ), (-_SQ, _SQ), (-_SQ, -_SQ)]


class EightGaussians:
    """gan_toy.py's '8gaussians': centres on the circle of radius 2, σ 0.02, all divided by 1.414."""

    def __init__(self, device):
        self.centers = torch.tensor(EIGHT_CENTERS, dtype=torch.float32, device=device) * 2.0
        self.device = device

    def sample(self, *shape):
        idx = torch.randint(0, 8, shape, device=self.device)
        return (self.centers[idx] + 0.02 * torch.randn(*shape, 2, device=self.device)) / 1.414


class TwentyFiveGaussians:
    """gan_toy.py's '25gaussians': centres (x, y), x, y ∈ {−4, −2, 0, 2, 4}, σ 0.05, all divided by 2.828
    (gan_toy.py shuffles a fixed set of 100,000 such points; this draws fresh ones, as the Rust crate)."""

    def __init__(self, device):
        c = [(2.0 * x, 2.0 * y) for x in range(-2, 3) for y in range(-2, 3)]
        self.centers = torch.tensor(c, dtype=torch.float32, device=device)
        self.device = device

    def sample(self, *shape):
        idx = torch.randint(0, 25, shape, device=self.device)
        return (self.centers[idx] + 0.05 * torch.randn(*shape, 2, device=self.device)) / 2.828


class SwissRoll:
    """gan_toy.py's 'swissroll': sklearn's make_swiss_roll(noise=0.25), columns (x, z), divided by 7.5."""

    def __init__(self, device):
        self.device = device

    def sample(self, *shape):
        t = 1.5 * math.pi * (1 + 2 * torch.rand(*shape, device=self.device))
        x = t * torch.cos(t) + 0.25 * torch.randn(*shape, device=self.device)
        z = t * torch.sin(t) + 0.25 * torch.randn(*shape, device=self.device)
        return torch.stack([x, z], dim=-1) / 7.5


TOY_SETS = {"8gaussians": EightGaussians, "25gaussians": TwentyFiveGaussians, "swissroll": SwissRoll}
# (mode centres after the division, per-coordinate σ after the division), as src/toy.rs `modes()`
TOY_MODES = {
    "8gaussians": ([(2 * x / 1.414, 2 * y / 1.414) for x, y in EIGHT_CENTERS], 0.02 / 1.414),
    "25gaussians": ([(2 * x / 2.828, 2 * y / 2.828) for x in range(-2, 3) for y in range(-2, 3)], 0.05 / 2.828),
}


class RandomImages:
    """Random tensors in [−1, 1] of the right shape, kept on the device (timing does not depend on
    values); `next()` hands out a fresh [n_critic, N, C, H, W] slice of a small pool each step."""

    def __init__(self, n_critic, batch, nc, size, device, memory_format, pool_steps=2):
        self.pool = [torch.rand(n_critic, batch, nc, size, size, device=device) * 2 - 1 for _ in range(pool_steps)]
        if memory_format == torch.channels_last:
            self.pool = [torch.stack([b.contiguous(memory_format=torch.channels_last) for b in p]) for p in self.pool]
        self.i = 0

    def next(self):
        self.i = (self.i + 1) % len(self.pool)
        return self.pool[self.i]


class ToyData:
    def __init__(self, n_critic, batch, device, dataset="8gaussians"):
        self.src, self.shape = TOY_SETS[dataset](device), (n_critic, batch)

    def next(self):
        return self.src.sample(*self.shape)


def build(workload: str, loss: str, device, memory_format=torch.contiguous_format, critic_norm="auto",
          toy_gan_toy_settings=False, capturable=False, n_critic=None, init="auto", dataset="8gaussians",
          clip_start="clamped"):
    """Returns (G, D, optG, optD, data, cfg). `init`: "auto" (the rule per model kind, as `wgan
    train`), "pytorch" or "dcgan"; `dataset`: the toy data set; `clip_start` (WGAN): "clamped" (the
    fresh critic clamped before its first iteration, as the WGAN code and `wgan train`) or
    "unclamped" (gan_toy.py's order: only after each update, so the first gradient sees the
    initialisation)."""
    kind, batch, size, nc, width = WORKLOADS[workload]
    if n_critic is None:
        n_critic = 1 if loss in ("gan", "nsgan") else N_CRITIC
    init = default_init(kind) if init == "auto" else init
    if critic_norm == "auto":
        critic_norm = "layer" if (kind == "dcgan" and loss == "wgan-gp") else "none"
    if kind == "toy":
        G, D = ToyGenerator(), ToyCritic()
        data = ToyData(n_critic, batch, device, dataset)
        sample_shape = (2,)
        critic_norm = "n/a"
    else:
        G, D = DCGANGenerator(size, nc, width), DCGANCritic(size, nc, width, critic_norm)
        data = RandomImages(n_critic, batch, nc, size, device, memory_format)
        sample_shape = (nc, size, size)
    init_weights(G, init), init_weights(D, init)
    if loss == "wgan" and clip_start == "clamped":
        # The WGAN code clamps the critic at the start of every critic iteration, so even the first
        # gradient sees clamped weights; clamping once here and after every update (below) is the same
        # for every critic gradient, and is what `Gan::new` does. Without it the first gradient comes
        # from the unclamped initialisation and fills RMSprop's square average with it (gan_toy.py's
        # order, `clip_start="unclamped"`).
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-CLIP_VALUE, CLIP_VALUE)
    G.to(device, memory_format=memory_format) if memory_format == torch.channels_last else G.to(device)
    D.to(device, memory_format=memory_format) if memory_format == torch.channels_last else D.to(device)
    G.train(), D.train()
    cfg = dict(workload=workload, loss=loss, batch=batch, n_critic=n_critic, nz=G.nz, sample_shape=sample_shape,
               critic_norm=critic_norm, size=size, nc=nc, width=width, init=init)
    if loss == "wgan":
        cfg.update(clip_start=clip_start)
    extra = {"capturable": True} if capturable else {}
    if loss == "wgan-gp":
        lam, betas = GP_LAMBDA, GP_BETAS
        if kind == "toy" and toy_gan_toy_settings:
            lam, betas = TOY_GP_LAMBDA, TOY_GP_BETAS
        optG = torch.optim.Adam(G.parameters(), lr=GP_LR, betas=betas, **extra)
        optD = torch.optim.Adam(D.parameters(), lr=GP_LR, betas=betas, **extra)
        cfg.update(lam=lam, betas=betas, lr=GP_LR, optimizer="Adam")
    elif loss == "wgan":
        optG = torch.optim.RMSprop(G.parameters(), lr=CLIP_LR, **extra)
        optD = torch.optim.RMSprop(D.parameters(), lr=CLIP_LR, **extra)
        cfg.update(clip=CLIP_VALUE, lr=CLIP_LR, optimizer="RMSprop")
    elif loss in ("gan", "nsgan"):
        # as `wgan train --loss gan|nsgan` (src/train/config.rs): toy data gan_toy.py's Adam, images DCGAN's
        lr, betas = (GP_LR, TOY_GP_BETAS) if kind == "toy" else (GAN_LR, GAN_BETAS)
        optG = torch.optim.Adam(G.parameters(), lr=lr, betas=betas, **extra)
        optD = torch.optim.Adam(D.parameters(), lr=lr, betas=betas, **extra)
        cfg.update(lr=lr, betas=betas, optimizer="Adam")
    else:
        raise ValueError(loss)
    return G, D, optG, optD, data, cfg


# ----------------------------------------------------------------------------------------------
# The training step
# ----------------------------------------------------------------------------------------------

def gradient_penalty(D, real, fake):
    """ε ~ U[0,1] per sample, x̂ = ε·real + (1−ε)·fake, penalty = mean((‖∇x̂ D(x̂)‖₂ − 1)²)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    xhat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    g, = autograd.grad(D(xhat).sum(), xhat, create_graph=True)
    return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def set_requires_grad(net, flag):
    for p in net.parameters():
        p.requires_grad_(flag)


def generator_step(G, D, optG, optD, reals, cfg):
    """One generator step: n_critic critic iterations (reals[i] is iteration i's real batch) and one
    generator iteration. Returns (loss_D, loss_G) as tensors (not synchronised)."""
    n, nz = cfg["batch"], cfg["nz"]
    dev = reals.device
    set_requires_grad(D, True)
    for i in range(cfg["n_critic"]):
        real = reals[i]
        z = torch.randn(n, nz, device=dev)
        with torch.no_grad():
            fake = G(z)
        optD.zero_grad(set_to_none=False)
        if cfg["loss"] in ("gan", "nsgan"):
            # BCE with logits: real labelled 1, fake 0; softplus(−x) = −log σ(x), softplus(x) = −log(1 − σ(x))
            loss_d = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
        else:
            loss_d = D(fake).mean() - D(real).mean()
        if cfg["loss"] == "wgan-gp":
            loss_d = loss_d + cfg["lam"] * gradient_penalty(D, real, fake)
        loss_d.backward()
        optD.step()
        if cfg["loss"] == "wgan":
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-cfg["clip"], cfg["clip"])
    set_requires_grad(D, False)  # the generator iteration needs only ∂D/∂x
    z = torch.randn(n, nz, device=dev)
    optG.zero_grad(set_to_none=False)
    d_gen = D(G(z))
    if cfg["loss"] == "gan":  # minimax: minimise log(1 − σ(D(G(z)))) = −softplus(D(G(z)))
        loss_g = -F.softplus(d_gen).mean()
    elif cfg["loss"] == "nsgan":  # non-saturating: minimise −log σ(D(G(z))) = softplus(−D(G(z)))
        loss_g = F.softplus(-d_gen).mean()
    else:
        loss_g = -d_gen.mean()
    loss_g.backward()
    optG.step()
    set_requires_grad(D, True)
    return loss_d.detach(), loss_g.detach()


def prime_grads(*nets):
    """Allocate every .grad as zeros so zero_grad(set_to_none=False) is a plain fill (graph-safe)."""
    for net in nets:
        for p in net.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)


# ----------------------------------------------------------------------------------------------
# FLOPs (analytic)
# ----------------------------------------------------------------------------------------------

def forward_macs(net: nn.Module, sample_shape) -> int:
    """Multiply-accumulates of one forward pass of one sample through linear/conv/convT layers
    (norms, activations and element-wise ops are not counted)."""
    macs, shape = 0, tuple(sample_shape)
    for m in net.main:
        if isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features
            shape = (m.out_features,)
        elif isinstance(m, nn.Conv2d):
            (k, _), (s, _), (p, _) = m.kernel_size, m.stride, m.padding
            h = (shape[1] + 2 * p - k) // s + 1
            macs += m.out_channels * h * h * m.in_channels * k * k
            shape = (m.out_channels, h, h)
        elif isinstance(m, nn.ConvTranspose2d):
            (k, _), (s, _), (p, _) = m.kernel_size, m.stride, m.padding
            h_in = shape[1] if len(shape) == 3 else 1
            macs += m.in_channels * h_in * h_in * m.out_channels * k * k
            h = (h_in - 1) * s - 2 * p + k
            shape = (m.out_channels, h, h)
    return macs


FLOP_FORMULA = (
    "FLOPs/step: F_G, F_D = 2·MACs·N of one forward pass (linear/conv/convT only); a full backward "
    "(weight + input grads) = 2F, an input-grad-only backward = 1F. WGAN-GP critic iteration = "
    "F_G (no-grad fake) + 3F_D (real, fake, x̂) + 1F_D (∂D(x̂)/∂x̂) + 2·2F_D (backward of real, fake) "
    "+ 2·(F_D + F_D) (backward through the penalty graph: x̂ forward and its gradient) = F_G + 12F_D; "
    "WGAN critic iteration = F_G + 2F_D + 2·2F_D = F_G + 6F_D; generator iteration = F_G + F_D "
    "(forward) + F_D (input-grad backward through frozen D) + 2F_G = 3F_G + 2F_D; "
    "step = n_critic·critic iteration + generator iteration."
)


def step_flops(G, D, cfg) -> int:
    n = cfg["batch"]
    fg = 2 * n * forward_macs(G, (cfg["nz"],) if cfg["size"] is None else (cfg["nz"], 1, 1))
    fd = 2 * n * forward_macs(D, cfg["sample_shape"])
    critic = fg + (12 * fd if cfg["loss"] == "wgan-gp" else 6 * fd)
    return cfg["n_critic"] * critic + 3 * fg + 2 * fd


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

def case_name(workload, loss, batch):
    return f"step/{workload}/{loss}/b{batch}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(run_one, steps, device):
    """Per-step wall times in ms (CUDA events on CUDA, perf_counter on CPU)."""
    times = []
    if device.type == "cuda":
        for _ in range(steps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            run_one()
            b.record()
            times.append((a, b))
        torch.cuda.synchronize(device)
        return [a.elapsed_time(b) for a, b in times]
    for _ in range(steps):
        t0 = time.perf_counter()
        run_one()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def bench_case(workload, loss, mode, device, args):
    tuned = mode == "tuned"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = tuned
    fmt = torch.channels_last if (tuned and WORKLOADS[workload][0] == "dcgan") else torch.contiguous_format
    G, D, optG, optD, data, cfg = build(workload, loss, device, fmt, args.critic_norm, args.toy_gan_toy_settings,
                                        capturable=(mode == "graph"), init=args.init)
    prime_grads(G, D)
    if mode == "graph":
        static_reals = data.next().clone()
        s = torch.cuda.Stream(device)
        s.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(s):  # warm-up on a side stream before capture
            for _ in range(max(3, args.warmup)):
                generator_step(G, D, optG, optD, static_reals, cfg)
        torch.cuda.current_stream(device).wait_stream(s)
        sync(device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            generator_step(G, D, optG, optD, static_reals, cfg)

        def run_one():
            static_reals.copy_(data.next())
            graph.replay()
    else:
        def run_one():
            generator_step(G, D, optG, optD, data.next(), cfg)
        for _ in range(args.warmup):
            run_one()
    sync(device)
    times = time_steps(run_one, args.steps, device)
    for p in D.parameters():  # sanity: training stayed finite
        if not torch.isfinite(p).all():
            raise RuntimeError("critic parameters became non-finite")
    flops = step_flops(G, D, cfg)
    med = statistics.median(times)
    return dict(case=case_name(workload, loss, cfg["batch"]), device=device.type,
                device_name=(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
                mode=mode, torch_ms=med, torch_ms_min=min(times), steps=args.steps, warmup=args.warmup,
                torch_version=torch.__version__, threads=torch.get_num_threads(),
                flops_per_step=flops, gflops_per_s=flops / (med * 1e-3) / 1e9,
                critic_norm=cfg["critic_norm"], n_critic=cfg["n_critic"],
                lam=cfg.get("lam"), betas=cfg.get("betas"))


# ----------------------------------------------------------------------------------------------
# --check: double backward of the penalty, numerically, in float64
# ----------------------------------------------------------------------------------------------

def run_check() -> bool:
    from torch.autograd import gradcheck, gradgradcheck
    from torch.func import functional_call
    torch.manual_seed(0)
    ok = True
    nets = [
        ("toy MLP (width 8)", ToyCritic(dim=8), torch.randn(3, 2) / 1.414 * 2),
        ("dcgan28 critic (width 2, layer norm)", DCGANCritic(28, 1, 2, "layer"), torch.rand(2, 1, 28, 28) * 2 - 1),
    ]
    for name, D, x in nets:
        init_weights(D)
        D = D.double()
        x = x.double()
        with torch.no_grad():  # larger weights so the check exercises non-trivial curvature
            for p in D.parameters():
                p.add_(0.3 * torch.randn_like(p))
        names = [k for k, _ in D.named_parameters()]
        params = [p.detach().clone().requires_grad_(True) for _, p in D.named_parameters()]
        eps = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), dtype=torch.float64)
        fake = (torch.rand_like(x) * 2 - 1) if x.dim() == 4 else torch.randn_like(x)

        def d_of(xin, *ps):
            return functional_call(D, dict(zip(names, ps)), (xin,))

        def penalty(*ps):
            xhat = (eps * x + (1 - eps) * fake).requires_grad_(True)
            g, = autograd.grad(d_of(xhat, *ps).sum(), xhat, create_graph=True)
            return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

        xin = x.clone().requires_grad_(True)
        # second derivatives of D w.r.t. its input (parameters held fixed), then the penalty's
        # gradient w.r.t. the parameters, which runs the double backward that training uses
        r1 = gradgradcheck(lambda xi: d_of(xi, *params), (xin,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
        r2 = gradcheck(penalty, tuple(params), eps=1e-6, atol=1e-5, rtol=1e-3)
        print(f"check {name}: gradgradcheck(D) {'ok' if r1 else 'FAIL'}, "
              f"gradcheck(∂penalty/∂params, the double backward) {'ok' if r2 else 'FAIL'}")
        ok = ok and r1 and r2
    print("check:", "passed" if ok else "FAILED")
    return ok


# ----------------------------------------------------------------------------------------------
# --train-toy: reference W1 curve on 8 gaussians with gan_toy.py settings
# ----------------------------------------------------------------------------------------------

def exact_w1(a, b):
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return None
    cost = torch.cdist(a.double().cpu(), b.double().cpu()).numpy()
    r, c = linear_sum_assignment(cost)
    return float(cost[r, c].mean())


def mode_coverage(fake, dataset):
    """(modes captured, modes, high-quality fraction) as src/metrics.rs `mode_coverage`: a sample is
    high quality within 3σ (Euclidean) of its nearest mode; a mode is captured when it is the nearest
    mode of at least one high-quality sample. None for the swiss roll."""
    if dataset not in TOY_MODES:
        return None
    centres, sigma = TOY_MODES[dataset]
    c = torch.tensor(centres, dtype=torch.float64)
    d = torch.cdist(fake.double().cpu(), c)
    best, idx = d.min(dim=1)
    good = best <= 3 * sigma
    return int(idx[good].unique().numel()), len(centres), float(good.double().mean())


def train_toy(steps, device, eval_steps, loss, seed, dataset="8gaussians", init="auto", n_points=2048,
              clip_start="clamped"):
    """Trains the toy models with gan_toy.py's settings and prints, at each step in `eval_steps`, one
    JSON line with the record `cargo run --example toy_parity` prints for the Rust crate: exact W1
    between n_points generated and fresh real points, its floor (real vs real), modes, high-quality
    fraction and the critic's estimate mean D(real) − mean D(fake) on those points."""
    torch.manual_seed(seed)
    G, D, optG, optD, data, cfg = build("toy", loss, device, toy_gan_toy_settings=True, init=init, dataset=dataset,
                                        clip_start=clip_start)
    prime_grads(G, D)
    print(f"train-toy: {loss} on {dataset}, gan_toy.py settings ({cfg}), device {device}, seed {seed}",
          file=sys.stderr)
    ref = TOY_SETS[dataset](device)
    floor = exact_w1(ref.sample(n_points), ref.sample(n_points))
    t0 = time.perf_counter()
    for it in range(1, steps + 1):
        loss_d, loss_g = generator_step(G, D, optG, optD, data.next(), cfg)
        if it not in eval_steps:
            continue
        with torch.no_grad():
            fake = G(torch.randn(n_points, cfg["nz"], device=device))
            real = ref.sample(n_points)
            w_est = float(D(real).mean() - D(fake).mean())
        rec = dict(impl="torch", dataset=dataset, loss=loss, init=cfg["init"], seed=seed, step=it,
                   w1=exact_w1(fake, real), floor=floor, w_est=w_est, critic_loss=loss_d.item(),
                   gen_loss=loss_g.item(), seconds=time.perf_counter() - t0)
        if loss == "wgan":
            rec.update(clip_start=clip_start)
        cov = mode_coverage(fake, dataset)
        if cov is not None:
            rec.update(modes=cov[0], n_modes=cov[1], hq=cov[2])
        print(json.dumps(rec), flush=True)


# ----------------------------------------------------------------------------------------------
# Training on the embedded MNIST digits against a clock (benches/time_to_quality.sh)
# ----------------------------------------------------------------------------------------------

EMBEDDED_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist10k",
                              "images-idx3-ubyte.gz")


def load_idx_images(path):
    """An IDX image file (gzip'd or not) as a float32 tensor [N, 1, H, W] in [−1, 1], b/127.5 − 1 as
    the crate's `src/data`."""
    import gzip
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise ValueError(f"{path}: not an IDX image file (magic {raw[:4].hex()})")
    n, h, w = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    if len(raw) != 16 + n * h * w:
        raise ValueError(f"{path}: {len(raw) - 16} pixel bytes for {n}×{h}×{w} images")
    x = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).view(n, 1, h, w)
    return x.float() / 127.5 - 1.0


def parse_seconds(text):
    """'90', '90s', '1.5m', '1h' → seconds (as `wgan train --snapshot-at`)."""
    t = text.strip()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:], None)
    v = float(t[:-1] if scale else t) * (scale or 1.0)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{text!r}: expected a positive time such as 90, 90s, 1.5m or 1h")
    return v


def snapshot_name(secs):
    """The folder name of a snapshot, as `wgan train` names it: t60s, t1.5s."""
    return f"t{secs:g}s"


def train_mnist(config_path, out, snapshot_at, time_limit, seed, device, data_path=None):
    """Trains the DCGAN of a `wgan train` run's config.json (same architecture, loss, optimizer,
    batch, λ and n_critic) on the embedded MNIST digits, keeping the generator at each point of
    training time in OUT/checkpoints/t{S}s/generator.safetensors (a PyTorch state dict with the
    configuration in its metadata, as the crate writes it, so `wgan eval --from` scores it).

    Training time is the sum of the generator steps' own durations, as `wgan train` counts it for
    --snapshot-at and --time-limit: saving snapshots is not counted."""
    from safetensors.torch import save_file
    with open(config_path) as f:
        cfg_json = json.load(f)
    if cfg_json["dataset"] != "mnist" or cfg_json.get("data"):
        raise ValueError(f"{config_path}: --train-mnist trains on the embedded MNIST digits; this run is "
                         f"{cfg_json['dataset']} {cfg_json.get('data') or ''}")
    if cfg_json["loss"] != "wgan-gp":
        raise ValueError(f"{config_path}: --train-mnist trains WGAN-GP; this run is {cfg_json['loss']}")
    torch.manual_seed(seed)
    size, nc, width, nz = cfg_json["image_size"], cfg_json["channels"], cfg_json["width"], cfg_json["nz"]
    G = DCGANGenerator(size, nc, width, nz)
    D = DCGANCritic(size, nc, width, cfg_json["critic_norm"])
    init_weights(G, cfg_json.get("init", "dcgan")), init_weights(D, cfg_json.get("init", "dcgan"))
    G.to(device), D.to(device)
    G.train(), D.train()
    betas = tuple(cfg_json["betas"])
    optG = torch.optim.Adam(G.parameters(), lr=cfg_json["lr"], betas=betas)
    optD = torch.optim.Adam(D.parameters(), lr=cfg_json["lr"], betas=betas)
    prime_grads(G, D)
    if cfg_json["penalty"] != "two-sided":
        raise ValueError(f"{config_path}: --train-mnist has the two-sided penalty only")
    batch, n_critic = cfg_json["batch_size"], cfg_json["n_critic"]
    cfg = dict(loss="wgan-gp", batch=batch, n_critic=n_critic, nz=nz, lam=cfg_json["lambda"])
    images = load_idx_images(data_path or EMBEDDED_MNIST)
    if images.shape[2] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = images.to(device)
    n = images.shape[0]
    # Batches in a fresh random order each epoch, each critic iteration a new batch (as the crate).
    order, pos = torch.randperm(n), 0

    def next_reals():
        nonlocal order, pos
        out = []
        for _ in range(n_critic):
            if pos + batch > n:
                order, pos = torch.randperm(n), 0
            out.append(images[order[pos:pos + batch]])
            pos += batch
        return torch.stack(out)

    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    run_cfg = dict(cfg_json, seed=seed, out=out, version=f"torch {torch.__version__}")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(run_cfg, f, indent=2)
    pending = sorted(set(snapshot_at))
    limit = time_limit if time_limit else (pending[-1] if pending else None)
    if limit is None:
        raise ValueError("--train-mnist needs --snapshot-at or --time-limit")
    print(f"train-mnist: WGAN-GP DCGAN-{size} width {width}, batch {batch}, n_critic {n_critic}, "
          f"λ {cfg['lam']}, Adam {cfg_json['lr']} betas {betas}, init {cfg_json.get('init')}, critic norm "
          f"{cfg_json['critic_norm']}; seed {seed}, threads {torch.get_num_threads()}, device {device}; "
          f"snapshots at {pending} s, stop at {limit} s of training", file=sys.stderr, flush=True)
    clock, step = 0.0, 0
    with open(os.path.join(out, "metrics.jsonl"), "w") as metrics:
        while clock < limit:
            t = time.perf_counter()
            reals = next_reals()
            loss_d, loss_g = generator_step(G, D, optG, optD, reals, cfg)
            loss_d, loss_g = loss_d.item(), loss_g.item()
            secs = time.perf_counter() - t
            clock += secs
            step += 1
            metrics.write(json.dumps(dict(step=step, critic_loss=loss_d, gen_loss=loss_g, seconds=secs,
                                          train_seconds=clock)) + "\n")
            if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
                raise RuntimeError(f"step {step}: non-finite loss (critic {loss_d}, generator {loss_g})")
            while pending and clock >= pending[0]:
                p = pending.pop(0)
                d = os.path.join(out, "checkpoints", snapshot_name(p))
                os.makedirs(d, exist_ok=True)
                meta = {"format": "wgan-checkpoint-1", "role": "generator", "step": str(step),
                        "config": json.dumps(run_cfg), "train_seconds": f"{clock:.3f}"}
                state = {k: v.detach().to("cpu").contiguous() for k, v in G.state_dict().items()}
                save_file(state, os.path.join(d, "generator.safetensors"), metadata=meta)
                print(f"kept {d} (step {step}, {clock:.1f} s of training)", file=sys.stderr, flush=True)
    print(f"done: {step} steps in {clock:.1f} s of training", file=sys.stderr)


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all", choices=["toy", "dcgan28w32", "dcgan28", "dcgan64", "all"])
    ap.add_argument("--loss", default="all", choices=["wgan-gp", "wgan", "gan", "nsgan", "all"],
                    help="all = wgan-gp and wgan; --train-toy: all = wgan-gp")
    ap.add_argument("--mode", default="eager", choices=["eager", "tuned", "graph", "all"],
                    help="eager: NCHW (on CUDA TF32 convolutions, PyTorch's default); tuned: channels_last + "
                         "cudnn.benchmark; graph: whole generator step captured with torch.cuda.graph")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=50, help="timed generator steps (median and min reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed warm-up generator steps")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    ap.add_argument("--critic-norm", default="auto", choices=["auto", "none", "layer"],
                    help="DCGAN critic norm; auto = layer for wgan-gp, none for wgan")
    ap.add_argument("--toy-gan-toy-settings", action="store_true",
                    help="toy WGAN-GP with gan_toy.py's λ=0.1, Adam betas (0.5, 0.9) instead of the paper's "
                         "λ=10, betas (0, 0.9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write one record per case to this path")
    ap.add_argument("--check", action="store_true", help="verify the penalty's double backward (float64) and exit")
    ap.add_argument("--train-toy", type=int, default=0, metavar="N",
                    help="train the toy models for N generator steps with gan_toy.py settings; print one JSON "
                         "line (exact W1 and its floor, modes, high-quality fraction) per evaluation step")
    ap.add_argument("--eval-every", type=int, default=200, help="--train-toy: evaluate every this many steps")
    ap.add_argument("--eval", default=None, help="--train-toy: evaluate at these steps (comma-separated)")
    ap.add_argument("--dataset", default="8gaussians", choices=list(TOY_SETS), help="--train-toy: the data set")
    ap.add_argument("--init", default="auto", choices=["auto", *INIT_RULES],
                    help="initialisation rule (auto: pytorch for the toy MLPs, dcgan for the DCGANs)")
    ap.add_argument("--clip-start", default="clamped", choices=["clamped", "unclamped"],
                    help="--train-toy with --loss wgan: clamp the fresh critic before its first iteration (the "
                    "WGAN code, as `wgan train`) or only after each update (gan_toy.py's order)")
    ap.add_argument("--train-mnist", metavar="CONFIG_JSON", default=None,
                    help="train the DCGAN of this `wgan train` run configuration on the embedded MNIST digits "
                         "against a clock, keeping generators at --snapshot-at (benches/time_to_quality.sh)")
    ap.add_argument("--snapshot-at", default="", help="--train-mnist: training times (90, 90s, 1.5m, 1h; "
                                                      "comma-separated) at which to keep the generator")
    ap.add_argument("--time-limit", default=None, help="--train-mnist: stop after this much training time "
                                                      "(default: the last --snapshot-at)")
    ap.add_argument("--out", default=None, help="--train-mnist: the run folder to write")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check:
        return 0 if run_check() else 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if args.train_mnist:
        if not args.out:
            print("error: --train-mnist needs --out RUN_FOLDER", file=sys.stderr)
            return 2
        try:
            points = [parse_seconds(x) for x in args.snapshot_at.split(",") if x.strip()]
            limit = parse_seconds(args.time_limit) if args.time_limit else None
        except ValueError as e:
            print(f"error: --snapshot-at/--time-limit: {e}", file=sys.stderr)
            return 2
        try:
            train_mnist(args.train_mnist, args.out, points, limit, args.seed, device)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            print(f"error: --train-mnist {args.train_mnist}: {what}", file=sys.stderr)
            return 2
        return 0
    if args.train_toy:
        if args.eval:
            eval_steps = {int(x) for x in args.eval.split(",")}
        else:
            eval_steps = {k for k in range(1, args.train_toy + 1) if k % args.eval_every == 0} | {args.train_toy}
        loss = "wgan-gp" if args.loss == "all" else args.loss
        train_toy(args.train_toy, device, eval_steps, loss, args.seed, args.dataset, args.init,
                  clip_start=args.clip_start)
        return 0

    torch.manual_seed(args.seed)
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    losses = ["wgan-gp", "wgan"] if args.loss == "all" else [args.loss]
    modes = ["eager", "tuned", "graph"] if args.mode == "all" else [args.mode]
    if device.type == "cpu":
        if modes != ["eager"]:
            print(f"note: on CPU only eager applies; skipping {[m for m in modes if m != 'eager']}")
        modes = ["eager"]
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", threads {torch.get_num_threads()}, steps {args.steps}, warmup {args.warmup}")
    if device.type == "cuda":
        print(f"TF32: conv {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}")
    print(COMPILE_NOTE)
    print(FLOP_FORMULA)
    records = []
    hdr = f"{'case':30s} {'device':6s} {'mode':6s} {'ms/step':>10s} {'min ms':>10s} {'GFLOP/step':>11s} {'GFLOP/s':>9s}"
    rows = []
    for w in workloads:
        for l in losses:
            for m in modes:
                try:
                    r = bench_case(w, l, m, device, args)
                except Exception as e:  # e.g. a graph capture that fails: say why and go on
                    print(f"{case_name(w, l, WORKLOADS[w][1])} {m}: FAILED: {type(e).__name__}: {e}", flush=True)
                    continue
                records.append(r)
                if args.json:  # after each case, so a run cut short keeps what it measured
                    write_records(args.json, [r], quiet=True)
                row = (f"{r['case']:30s} {r['device']:6s} {r['mode']:6s} {r['torch_ms']:10.3f} {r['torch_ms_min']:10.3f} "
                       f"{r['flops_per_step'] / 1e9:11.3f} {r['gflops_per_s']:9.1f}")
                rows.append(row)
                print(row, flush=True)
    print()
    print(hdr)
    for row in rows:
        print(row)
    if args.json:
        print(f"wrote {len(records)} records to {args.json}")
    return 0


def write_records(path, records, quiet=False):
    """Merges `records` into the JSON list at `path` (a record of the same case, device and mode is
    replaced), so runs of different workloads on one day share a file; written atomically."""
    key = lambda r: (r.get("case"), r.get("device"), r.get("mode"))
    old = []
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            print(f"warning: {path}: {e}; starting a new file", file=sys.stderr)
    new = {key(r) for r in records}
    merged = [r for r in old if isinstance(r, dict) and key(r) not in new] + records
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(merged, f, indent=1)
    os.replace(tmp, path)
    if not quiet:
        print(f"wrote {len(records)} records to {path} ({len(merged)} in the file)")


if __name__ == "__main__":
    sys.exit(main())
