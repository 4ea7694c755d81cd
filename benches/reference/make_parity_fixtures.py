#!/usr/bin/env python3
"""Writes the step-parity fixtures tests/data/parity_*.safetensors that tests/parity.rs checks the
Rust step against, so the check runs in CI without PyTorch:

    python3 benches/reference/make_parity_fixtures.py        # rewrites tests/data/parity_*.safetensors

Each fixture holds, for one small configuration, the initial weights (the networks of
wgan_torch.py, initialised by the crate's rule for that model kind and a fixed seed), one real
batch, the latent noise, ε, and what PyTorch computes from exactly these: the critic iteration's
loss, Wasserstein estimate, penalty and parameter gradients; the optimizer step's new critic
parameters; the generated batch and the generator iteration's loss and parameter gradients.

Inputs are float32 (what the Rust crate trains in); the expected values are computed in float64
from those float32 inputs, so they are the exact values the f32 step approximates and the Rust
test's tolerance measures only its own rounding. The step follows wgan_torch.py's
`generator_step`, with ε given instead of drawn.

Cases: toy MLP WGAN-GP (Adam), toy MLP WGAN with weight clipping (RMSprop + clamp), DCGAN-28 with
a layer-norm critic and a batch-norm generator (WGAN-GP, Adam), and the toy standard GAN (nsgan).

One more fixture, `parity_toy_gp_steps`, covers what a single step cannot: several whole generator
steps (5 critic iterations each, Adam's state carried across its updates) of the trainer itself.
Its latent noise and ε are the crate's own Philox draws (`src/rng.rs`, ported below), so the Rust
test can run `Gan::train_step` unchanged and compare the weights it ends with.
"""

import os
import sys

import torch
import torch.nn.functional as F
from torch import autograd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wgan_torch as W  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data")


def state(prefix, net):
    return {f"{prefix}.{k}": v.detach().float().contiguous() for k, v in net.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def case(name, G, D, loss, batch, real, hyper, seed):
    torch.manual_seed(seed)
    nz = G.nz
    z_critic = torch.randn(batch, nz)
    z_gen = torch.randn(batch, nz)
    eps = torch.rand(batch)
    if loss == "wgan":  # the crate clamps the fresh critic before its first iteration, as the WGAN code
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-hyper["clip"], hyper["clip"])
    tensors = {**state("G", G), **state("D", D), "real": real.float(), "z_critic": z_critic, "z_gen": z_gen,
               "eps": eps}
    # float64 from here on, from the float32 values stored above
    G, D = G.double(), D.double()
    G.train(), D.train()
    real64 = real.double()
    with torch.no_grad():
        fake = G(z_critic.double())
    # critic iteration
    D.zero_grad()
    d_real, d_fake = D(real64), D(fake)
    wdist = d_real.mean() - d_fake.mean()
    if loss in ("gan", "nsgan"):
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    else:
        loss_d = d_fake.mean() - d_real.mean()
    penalty = None
    if loss == "wgan-gp":
        e = eps.double().view(-1, *([1] * (real.dim() - 1)))
        xhat = (e * real64 + (1 - e) * fake).requires_grad_(True)
        g, = autograd.grad(D(xhat).sum(), xhat, create_graph=True)
        penalty = ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        loss_d = loss_d + hyper["lambda"] * penalty
    loss_d.backward()
    tensors.update(fake=fake.float(), d_real=d_real.detach().float(), d_fake=d_fake.detach().float(),
                   critic_loss=loss_d.detach().float().view(1), wdist=wdist.detach().float().view(1))
    if penalty is not None:
        tensors["penalty"] = penalty.detach().float().view(1)
    for k, p in D.named_parameters():
        tensors[f"grad.D.{k}"] = p.grad.float()
    # the critic's optimizer step
    if loss == "wgan":
        opt = torch.optim.RMSprop(D.parameters(), lr=hyper["lr"])
    else:
        opt = torch.optim.Adam(D.parameters(), lr=hyper["lr"], betas=hyper["betas"])
    opt.step()
    if loss == "wgan":
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-hyper["clip"], hyper["clip"])
    for k, p in D.named_parameters():
        tensors[f"stepped.D.{k}"] = p.detach().float()
    # generator iteration, against the updated critic (as in training)
    for p in D.parameters():
        p.requires_grad_(False)
    G.zero_grad()
    d_gen = D(G(z_gen.double()))
    if loss == "gan":
        loss_g = -F.softplus(d_gen).mean()
    elif loss == "nsgan":
        loss_g = F.softplus(-d_gen).mean()
    else:
        loss_g = -d_gen.mean()
    loss_g.backward()
    tensors["gen_loss"] = loss_g.detach().float().view(1)
    for k, p in G.named_parameters():
        tensors[f"grad.G.{k}"] = p.grad.float()
    meta = {k: str(v) for k, v in hyper.items()}
    meta.update(loss=loss, torch=torch.__version__, made_by="benches/reference/make_parity_fixtures.py")
    from safetensors.torch import save_file
    path = os.path.join(OUT, f"parity_{name}.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"wrote {path}: {sum(v.numel() for v in tensors.values())} values, critic loss {loss_d.item():.6f}, "
          f"gen loss {loss_g.item():.6f}")


# The crate's counter-based generator (src/rng.rs), so PyTorch can be fed the trainer's own draws.
_MASK = 0xFFFFFFFF


def _philox(seed, stream, i):
    """Philox4x32-10 of key (seed lo, seed hi), counters (i lo, i hi, stream lo, stream hi); i: uint64 array."""
    import numpy as np
    i = i.astype(np.uint64)
    c = [i & _MASK, i >> np.uint64(32), np.full_like(i, stream & _MASK), np.full_like(i, stream >> 32)]
    k = [seed & _MASK, seed >> 32]
    for r in range(10):
        if r > 0:
            k = [(k[0] + 0x9E3779B9) & _MASK, (k[1] + 0xBB67AE85) & _MASK]
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        m = np.uint64(_MASK)
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k[0]), p1 & m, (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k[1]), p0 & m]
    return c


def crate_uniform(shape, seed, stream):
    import numpy as np
    n = int(np.prod(shape))
    w = _philox(seed, stream, np.arange(n, dtype=np.uint64))
    u = ((w[0] >> np.uint64(8)).astype(np.float64) + 0.5) / 16777216.0
    return torch.from_numpy(u.astype(np.float32).reshape(shape))


def crate_randn(shape, seed, stream):
    import numpy as np
    n = int(np.prod(shape))
    w = _philox(seed, stream, np.arange(n, dtype=np.uint64))
    u1 = ((w[0] >> np.uint64(8)).astype(np.float64) + 0.5) / 16777216.0
    u2 = ((w[1] >> np.uint64(8)).astype(np.float64) + 0.5) / 16777216.0
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return torch.from_numpy(z.astype(np.float32).reshape(shape))


STREAM_DRAWS = 1 << 32  # src/train/gan.rs: draw k of noise or ε uses stream STREAM_DRAWS + k


def steps_case(name, G, D, batch, reals, hyper, seed, gen_steps, n_critic, loss="wgan-gp"):
    """`gen_steps` whole generator steps of toy WGAN-GP (Adam) or WGAN (RMSprop, the critic clamped
    before its first iteration and after every update) as `Gan::train_step` runs them. Draws: per
    critic iteration the noise is draw c (stream STREAM_DRAWS + c), and under WGAN-GP ε is draw
    c + 1; c advances by the draws taken. The generator iteration's noise is draw c, then c += 1."""
    tensors = {**state("G", G), **state("D", D), "reals": reals.float()}
    G, D = G.double(), D.double()
    if loss == "wgan-gp":
        optD = torch.optim.Adam(D.parameters(), lr=hyper["lr"], betas=hyper["betas"])
        optG = torch.optim.Adam(G.parameters(), lr=hyper["lr"], betas=hyper["betas"])
    else:
        optD = torch.optim.RMSprop(D.parameters(), lr=hyper["lr"], alpha=hyper["alpha"])
        optG = torch.optim.RMSprop(G.parameters(), lr=hyper["lr"], alpha=hyper["alpha"])

    def clamp_critic():
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-hyper["clip"], hyper["clip"])

    if loss == "wgan":
        clamp_critic()
    nz, c, it = G.nz, 0, 0
    for step in range(gen_steps):
        for p in D.parameters():
            p.requires_grad_(True)
        for _ in range(n_critic):
            z = crate_randn((batch, nz), seed, STREAM_DRAWS + c)
            if c == 0:
                tensors["z_first"] = z
            c += 1
            real = reals[it].double()
            it += 1
            with torch.no_grad():
                fake = G(z.double())
            optD.zero_grad()
            loss_d = D(fake).mean() - D(real).mean()
            if loss == "wgan-gp":
                eps = crate_uniform((batch,), seed, STREAM_DRAWS + c)
                if c == 1:
                    tensors["eps_first"] = eps
                c += 1
                e = eps.double().view(-1, 1)
                xhat = (e * real + (1 - e) * fake).requires_grad_(True)
                g, = autograd.grad(D(xhat).sum(), xhat, create_graph=True)
                loss_d = loss_d + hyper["lambda"] * ((g.norm(2, dim=1) - 1) ** 2).mean()
            loss_d.backward()
            optD.step()
            if loss == "wgan":
                clamp_critic()
        for p in D.parameters():
            p.requires_grad_(False)
        z = crate_randn((batch, nz), seed, STREAM_DRAWS + c)
        c += 1
        optG.zero_grad()
        loss_g = -D(G(z.double())).mean()
        loss_g.backward()
        optG.step()
        tensors[f"critic_loss.{step}"] = loss_d.detach().float().view(1)
        tensors[f"gen_loss.{step}"] = loss_g.detach().float().view(1)
    tensors.update({f"final.{k}": v for k, v in {**state("G", G), **state("D", D)}.items()})
    meta = {k: str(v) for k, v in hyper.items()}
    meta.update(loss=loss, seed=str(seed), gen_steps=str(gen_steps), n_critic=str(n_critic), batch=str(batch),
                torch=torch.__version__, made_by="benches/reference/make_parity_fixtures.py")
    from safetensors.torch import save_file
    path = os.path.join(OUT, f"parity_{name}.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"wrote {path}: {sum(v.numel() for v in tensors.values())} values, last critic loss {loss_d.item():.6f}, "
          f"gen loss {loss_g.item():.6f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    width, batch = 16, 8
    toy_set = W.EightGaussians("cpu")
    for name, loss, hyper, seed in [
        ("toy_gp", "wgan-gp", dict(lr=1e-4, betas=(0.5, 0.9), **{"lambda": 10.0}), 1),
        ("toy_clip", "wgan", dict(lr=5e-5, clip=0.01), 2),
        ("toy_nsgan", "nsgan", dict(lr=1e-4, betas=(0.5, 0.9)), 3),
    ]:
        torch.manual_seed(seed)
        G, D = W.ToyGenerator(dim=width), W.ToyCritic(dim=width)
        W.init_weights(G, "pytorch"), W.init_weights(D, "pytorch")
        case(name, G, D, loss, batch, toy_set.sample(batch), hyper, seed + 100)
    torch.manual_seed(5)
    G, D = W.ToyGenerator(dim=width), W.ToyCritic(dim=width)
    W.init_weights(G, "pytorch"), W.init_weights(D, "pytorch")
    gen_steps, n_critic = 4, 5
    reals = toy_set.sample(gen_steps * n_critic, batch)
    steps_case("toy_gp_steps", G, D, batch, reals, dict(lr=1e-3, betas=(0.5, 0.9), **{"lambda": 0.1}), 7, gen_steps,
               n_critic)
    # WGAN with clipping: RMSprop and the clamp carried over 20 critic and 4 generator updates. A bound
    # of 0.05 and lr 1e-3 (not the paper's 0.01 and 5e-5) so that the updates move weights off the
    # bound and back: with 0.01 nearly every weight sits on it and the clamp hides the update.
    torch.manual_seed(6)
    G, D = W.ToyGenerator(dim=width), W.ToyCritic(dim=width)
    W.init_weights(G, "pytorch"), W.init_weights(D, "pytorch")
    reals = toy_set.sample(gen_steps * n_critic, batch)
    steps_case("toy_clip_steps", G, D, batch, reals, dict(lr=1e-3, alpha=0.99, clip=0.05), 8, gen_steps, n_critic,
               loss="wgan")
    torch.manual_seed(4)
    G, D = W.DCGANGenerator(28, 1, 4, nz=8), W.DCGANCritic(28, 1, 4, "layer")
    W.init_weights(G, "dcgan"), W.init_weights(D, "dcgan")
    with torch.no_grad():  # larger critic weights than N(0, 0.02), so the penalty's gradient is far from zero
        for p in D.parameters():
            p.mul_(5.0) if p.dim() > 1 else None
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    case("dcgan28_gp", G, D, "wgan-gp", 4, real, dict(lr=1e-4, betas=(0.0, 0.9), **{"lambda": 10.0}), 104)


if __name__ == "__main__":
    main()
