#!/usr/bin/env python3
"""PyTorch reference for wgan's benchmarks: the same networks (same parameter names, so a wgan
checkpoint loads with load_state_dict), initialisation, hyperparameters and batch sizes.

One "generator step" = n_critic (5) critic iterations + 1 generator iteration, timed as a whole.

Workloads: toy (3x512 ReLU MLPs, batch 256, 8 gaussians), dcgan28 (1x28x28, batch 64, width 64),
dcgan64 (3x64x64, batch 64, width 64). Image workloads use random data of the right shape: timing
does not depend on values.

Modes: eager (NCHW; on CUDA, TF32 convolutions are PyTorch's default), tuned (channels_last +
cudnn.benchmark), graph (the whole generator step captured with torch.cuda.graph). torch.compile
is not offered: it does not support double backward (the WGAN-GP penalty needs it).

  python3 benches/reference/wgan_torch.py --workload toy --loss all --device cpu --json out.json
  python3 benches/reference/wgan_torch.py --check          # gradgradcheck of the penalty (float64)
  python3 benches/reference/wgan_torch.py --train-toy 1000 # reference W1 curve on 8 gaussians
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn

NZ = 100
TOY_DIM = 512


def init_weights(module):
    """Conv/ConvT/Linear weights N(0, 0.02), biases 0; norm scales N(1, 0.02), offsets 0. wgan
    draws from its own generator, so values differ but distributions agree."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ToyGenerator(nn.Module):
    """Linear(2,512) ReLU x3, Linear(512,2): gan_toy.py's generator (names main.{i}.*)."""

    def __init__(self, nz=2):
        super().__init__()
        d = TOY_DIM
        self.main = nn.Sequential(nn.Linear(nz, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(),
                                  nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 2))

    def forward(self, z):
        return self.main(z)


class ToyCritic(nn.Module):
    def __init__(self):
        super().__init__()
        d = TOY_DIM
        self.main = nn.Sequential(nn.Linear(2, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(),
                                  nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1))

    def forward(self, x):
        return self.main(x).view(-1)


def generator_plan(size, nc, w, nz):
    return {
        64: [(nz, 8 * w, 4, 1, 0), (8 * w, 4 * w, 4, 2, 1), (4 * w, 2 * w, 4, 2, 1), (2 * w, w, 4, 2, 1), (w, nc, 4, 2, 1)],
        32: [(nz, 4 * w, 4, 1, 0), (4 * w, 2 * w, 4, 2, 1), (2 * w, w, 4, 2, 1), (w, nc, 4, 2, 1)],
        28: [(nz, 4 * w, 7, 1, 0), (4 * w, 2 * w, 4, 2, 1), (2 * w, nc, 4, 2, 1)],
    }[size]


def critic_plan(size, nc, w):
    return {
        64: [(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 4, 2, 1), (4 * w, 8 * w, 4, 2, 1), (8 * w, 1, 4, 1, 0)],
        32: [(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 4, 2, 1), (4 * w, 1, 4, 1, 0)],
        28: [(nc, w, 4, 2, 1), (w, 2 * w, 4, 2, 1), (2 * w, 4 * w, 3, 2, 1), (4 * w, 1, 4, 1, 0)],
    }[size]


class DCGANGenerator(nn.Module):
    """ConvT-BN-ReLU blocks, last ConvT-Tanh; z [N, nz] is viewed as [N, nz, 1, 1]."""

    def __init__(self, size=64, nc=3, width=64, nz=NZ):
        super().__init__()
        layers = []
        plan = generator_plan(size, nc, width, nz)
        for i, (cin, cout, k, s, p) in enumerate(plan):
            layers.append(nn.ConvTranspose2d(cin, cout, k, s, p, bias=False))
            if i + 1 < len(plan):
                layers += [nn.BatchNorm2d(cout), nn.ReLU(True)]
            else:
                layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, z):
        return self.main(z.view(z.shape[0], self.nz, 1, 1))


class DCGANCritic(nn.Module):
    """Conv-[GroupNorm(1,C) = layer norm over (C,H,W)]-LeakyReLU(0.2); no norm after the first
    conv; the last conv is linear. Output [N]."""

    def __init__(self, size=64, nc=3, width=64, norm="layer"):
        super().__init__()
        layers = []
        plan = critic_plan(size, nc, width)
        for i, (cin, cout, k, s, p) in enumerate(plan):
            layers.append(nn.Conv2d(cin, cout, k, s, p, bias=False))
            if i + 1 == len(plan):
                break
            if i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, cout))
            layers.append(nn.LeakyReLU(0.2, True))
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)


def eight_gaussians(n, gen):
    s = 1.0 / math.sqrt(2)
    centers = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)]) * 2.0
    idx = torch.randint(0, 8, (n,), generator=gen)
    return (centers[idx] + 0.02 * torch.randn(n, 2, generator=gen)) / 1.414


class Workload:
    def __init__(self, name, loss, device, mode, toy_settings=False):
        self.name, self.loss, self.device, self.mode = name, loss, device, mode
        if name == "toy":
            self.G, self.D, self.batch, self.nz = ToyGenerator(), ToyCritic(), 256, 2
            self.shape = (2,)
        else:
            size, nc = (28, 1) if name == "dcgan28" else (64, 3)
            norm = "layer" if loss == "wgan-gp" else "none"
            self.G, self.D = DCGANGenerator(size, nc, 64, NZ), DCGANCritic(size, nc, 64, norm)
            self.batch, self.nz, self.shape = 64, NZ, (nc, size, size)
        init_weights(self.G)
        init_weights(self.D)
        self.G.to(device)
        self.D.to(device)
        fmt = torch.channels_last if (mode == "tuned" and name != "toy") else torch.contiguous_format
        if fmt is torch.channels_last:
            self.G.to(memory_format=fmt)
            self.D.to(memory_format=fmt)
        self.fmt = fmt
        if loss == "wgan-gp":
            betas = (0.5, 0.9) if toy_settings else (0.0, 0.9)
            self.lam = 0.1 if toy_settings else 10.0
            self.optG = torch.optim.Adam(self.G.parameters(), lr=1e-4, betas=betas)
            self.optD = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=betas)
        else:
            self.optG = torch.optim.RMSprop(self.G.parameters(), lr=5e-5)
            self.optD = torch.optim.RMSprop(self.D.parameters(), lr=5e-5)
            self.clip = 0.01
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-self.clip, self.clip)
        gen = torch.Generator().manual_seed(0)
        if name == "toy":
            reals = [eight_gaussians(self.batch, gen) for _ in range(8)]
        else:
            reals = [torch.rand((self.batch,) + self.shape, generator=gen) * 2 - 1 for _ in range(8)]
        self.reals = [r.to(device).contiguous(memory_format=fmt) if r.dim() == 4 else r.to(device) for r in reals]
        self.k = 0

    def next_real(self):
        self.k += 1
        return self.reals[self.k % len(self.reals)]

    def penalty(self, real, fake):
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        d = self.D(x_hat)
        (g,) = torch.autograd.grad(d.sum(), x_hat, create_graph=True)
        return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def step(self, n_critic=5):
        for _ in range(n_critic):
            real = self.next_real()
            z = torch.randn(self.batch, self.nz, device=self.device)
            with torch.no_grad():
                fake = self.G(z)
            self.optD.zero_grad(set_to_none=True)
            loss = self.D(fake).mean() - self.D(real).mean()
            if self.loss == "wgan-gp":
                loss = loss + self.lam * self.penalty(real, fake)
            loss.backward()
            self.optD.step()
            if self.loss == "wgan":
                with torch.no_grad():
                    for p in self.D.parameters():
                        p.clamp_(-self.clip, self.clip)
        z = torch.randn(self.batch, self.nz, device=self.device)
        self.optG.zero_grad(set_to_none=True)
        g_loss = -self.D(self.G(z)).mean()
        g_loss.backward()
        self.optG.step()
        return g_loss


def forward_flops(net, batch, shape):
    """2 x multiply-adds of linear and conv layers for one forward pass (as wgan's src/flops.rs)."""
    total = 0
    x = torch.zeros((1,) + tuple(shape))
    hooks = []

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
        elif isinstance(m, nn.Conv2d):
            total += 2 * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1] * out.shape[2] * out.shape[3]
        elif isinstance(m, nn.ConvTranspose2d):
            total += 2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * inp[0].shape[2] * inp[0].shape[3]

    for m in net.modules():
        hooks.append(m.register_forward_hook(hook))
    cpu = net.to("cpu")
    with torch.no_grad():
        cpu.eval()
        cpu(x)
        cpu.train()
    for h in hooks:
        h.remove()
    return total * batch


def step_flops(w):
    """FLOPs of a generator step, counted as wgan counts them: WGAN-GP critic iteration = G + 12 D,
    WGAN critic iteration = G + 6 D, generator iteration = 3 G + 2 D (forward passes)."""
    dev = next(w.G.parameters()).device
    g = forward_flops(w.G, w.batch, (w.nz,))
    d = forward_flops(w.D, w.batch, w.shape)
    w.G.to(dev)
    w.D.to(dev)
    per = g + (12 * d if w.loss == "wgan-gp" else 6 * d)
    return 5 * per + 3 * g + 2 * d


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_workload(w, steps, warmup):
    if w.mode == "graph":
        if w.device != "cuda":
            raise RuntimeError("graph mode needs CUDA")
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(max(3, warmup)):
                w.step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        w.optD.zero_grad(set_to_none=False)
        w.optG.zero_grad(set_to_none=False)
        with torch.cuda.graph(graph):
            w.step()
        run = graph.replay
    else:
        run = w.step
        for _ in range(warmup):
            run()
    times = []
    for _ in range(steps):
        sync(w.device)
        t0 = time.perf_counter()
        run()
        sync(w.device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def check_double_backward():
    """gradgradcheck of the penalty through a tiny critic in float64: the penalty's gradient with
    respect to the weights must run through grad_x D(x_hat)."""
    torch.manual_seed(0)
    D = nn.Sequential(nn.Conv2d(2, 3, 3, 2, 1), nn.GroupNorm(1, 3), nn.LeakyReLU(0.2), nn.Conv2d(3, 1, 3, 1, 0)).double()
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64, requires_grad=True)

    def f(x_):
        d = D(x_)
        (g,) = torch.autograd.grad(d.sum(), x_, create_graph=True)
        return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    ok = torch.autograd.gradcheck(f, (x,)) and torch.autograd.gradgradcheck(lambda x_: D(x_).sum(), (x,))
    print(f"double-backward check (float64 gradcheck/gradgradcheck): {'ok' if ok else 'FAILED'}")
    return ok


def train_toy(steps, seed=1):
    """gan_toy.py's configuration on 8 gaussians; prints exact W1 (2048 vs 2048) as it goes."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        linear_sum_assignment = None
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    w = Workload("toy", "wgan-gp", "cpu", "eager", toy_settings=True)
    w.reals = None
    w.next_real = lambda: eight_gaussians(256, gen)
    t0 = time.time()
    for s in range(1, steps + 1):
        w.step()
        if s % 250 == 0 or s == steps:
            with torch.no_grad():
                fake = w.G(torch.randn(2048, 2)).numpy()
            real = eight_gaussians(2048, gen).numpy()
            msg = f"step {s}: {time.time() - t0:.0f} s"
            if linear_sum_assignment is not None:
                import numpy as np
                cost = np.sqrt(((fake[:, None, :] - real[None, :, :]) ** 2).sum(-1))
                r, c = linear_sum_assignment(cost)
                msg += f", exact W1 {cost[r, c].mean():.4f}"
            print(msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all", choices=["toy", "dcgan28", "dcgan64", "all"])
    ap.add_argument("--loss", default="all", choices=["wgan-gp", "wgan", "all"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--mode", default="all", choices=["eager", "tuned", "graph", "all"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", help="write one record per case to this file")
    ap.add_argument("--toy-gan-toy-settings", action="store_true",
                    help="toy workload with gan_toy.py's lambda 0.1 and betas (0.5, 0.9) (default: the paper's 10 and (0, 0.9))")
    ap.add_argument("--check", action="store_true", help="only run the float64 double-backward check")
    ap.add_argument("--train-toy", type=int, metavar="N", help="train the toy WGAN-GP for N generator steps and print W1")
    a = ap.parse_args()
    if a.check:
        sys.exit(0 if check_double_backward() else 1)
    if a.train_toy:
        train_toy(a.train_toy)
        return
    works = ["toy", "dcgan28", "dcgan64"] if a.workload == "all" else [a.workload]
    losses = ["wgan-gp", "wgan"] if a.loss == "all" else [a.loss]
    modes = (["eager", "tuned", "graph"] if a.device == "cuda" else ["eager"]) if a.mode == "all" else [a.mode]
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = False
        info = f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    else:
        info = f"cpu ({torch.get_num_threads()} threads)"
    print(f"PyTorch {torch.__version__} on {info}; torch.compile is not used: it does not support double backward")
    print(f"{'case':<28} {'mode':<6} {'ms/step':>10} {'min ms':>10} {'GFLOP':>8}")
    records = []
    for work in works:
        for loss in losses:
            for mode in modes:
                torch.backends.cudnn.benchmark = mode == "tuned"
                case = f"step/{work}/{loss}/b{256 if work == 'toy' else 64}"
                try:
                    w = Workload(work, loss, a.device, mode, a.toy_gan_toy_settings)
                    flops = step_flops(w)
                    med, mn = time_workload(w, a.steps, a.warmup)
                except Exception as e:  # a configuration that fails is reported, not fatal
                    print(f"{case:<28} {mode:<6} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
                    continue
                print(f"{case:<28} {mode:<6} {med:>10.2f} {mn:>10.2f} {flops / 1e9:>8.2f}", flush=True)
                records.append({"case": case, "device": "cpu" if a.device == "cpu" else torch.cuda.get_device_name(),
                                "mode": mode, "torch_ms": med, "torch_min_ms": mn, "flops": flops,
                                "torch_version": torch.__version__, "threads": torch.get_num_threads()})
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(records, f, indent=1)
        import os
        os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
