"""Reads a wgan checkpoint folder as a PyTorch user would and checks it against an expectation
file written by tests/checkpoint.rs: every tensor's name, dtype, shape and a checksum of its values.
When PyTorch is importable, also loads generator and critic into the matching modules of
benches/reference/wgan_torch.py with load_state_dict(strict=True).

  python3 tests/python/check_checkpoint.py CHECKPOINT_DIR EXPECTED_JSON
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    ckpt, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    for fname, tensors in expected["files"].items():
        got = load_file(os.path.join(ckpt, fname))
        if sorted(got) != sorted(tensors):
            sys.exit(f"{fname}: names differ: {sorted(set(got) ^ set(tensors))}")
        for name, want in tensors.items():
            t = got[name]
            if str(t.dtype) != want["dtype"]:
                sys.exit(f"{fname}:{name}: dtype {t.dtype}, expected {want['dtype']}")
            if list(t.shape) != want["shape"]:
                sys.exit(f"{fname}:{name}: shape {list(t.shape)}, expected {want['shape']}")
            s = float(np.asarray(t, dtype=np.float64).sum())
            if abs(s - want["sum"]) > 1e-4 * (1 + abs(want["sum"])):
                sys.exit(f"{fname}:{name}: sum {s}, expected {want['sum']}")
    try:
        import torch  # noqa: F401
    except Exception:
        print("checked with safetensors + numpy (PyTorch not importable: load_state_dict not tried)")
        return
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benches", "reference"))
    import wgan_torch
    from safetensors.torch import load_file as load_torch

    cfg = expected["config"]
    if cfg["dataset"] in ("8gaussians", "25gaussians", "swissroll"):
        G, D = wgan_torch.ToyGenerator(cfg["width"], cfg["nz"]), wgan_torch.ToyCritic(cfg["width"])
    else:
        s, c, w = cfg["image_size"], cfg["channels"], cfg["width"]
        G = wgan_torch.DCGANGenerator(s, c, w, cfg["nz"])
        D = wgan_torch.DCGANCritic(s, c, w, cfg["critic_norm"])
    G.load_state_dict(load_torch(os.path.join(ckpt, "generator.safetensors")), strict=True)
    D.load_state_dict(load_torch(os.path.join(ckpt, "critic.safetensors")), strict=True)
    print("checked with safetensors + numpy, and loaded into the PyTorch modules with load_state_dict")


if __name__ == "__main__":
    main()
