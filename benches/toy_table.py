#!/usr/bin/env python3
"""Summarises toy-quality records (JSON lines from `cargo run --release --example toy_parity` and
`benches/reference/wgan_torch.py --train-toy`) into the Markdown table of QUALITY.md:

    python3 benches/toy_table.py bench-results/quality/*.jsonl

One row per (data set, loss, step, implementation): seeds, exact W1 per seed and its median, the
W1 floor (real vs real, median over seeds), modes captured (min–max) and the high-quality fraction
(median). Standard library only."""

import json
import statistics
import sys
from collections import defaultdict

NAMES = {"wgan": "ours (wgan)", "torch": "PyTorch"}


def main(paths):
    rows = defaultdict(list)
    seen = set()  # a (run, seed, step) recorded twice (a seed rerun in another file) counts once
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    key = (r["impl"], r["dataset"], r["loss"], r.get("init"), r["seed"], r["step"])
                    if key in seen:
                        continue
                    seen.add(key)
                    rows[(r["dataset"], r["loss"], r["step"], r["impl"], r.get("init", "?"))].append(r)
    print("| data | loss | step | impl (init) | seeds | W1 per seed | median W1 | floor | modes | HQ fraction |")
    print("| --- | --- | ---: | --- | --- | --- | ---: | ---: | --- | ---: |")
    order = {"8gaussians": 0, "25gaussians": 1, "swissroll": 2}
    for key in sorted(rows, key=lambda k: (order.get(k[0], 9), k[1], k[2], k[3] != "wgan", k[4])):
        data, loss, step, impl, init = key
        rs = sorted(rows[key], key=lambda r: r["seed"])
        w1 = [r["w1"] for r in rs]
        floor = statistics.median(r["floor"] for r in rs)
        if "modes" in rs[0]:
            m = [r["modes"] for r in rs]
            modes = f"{min(m)}–{max(m)}/{rs[0]['n_modes']}" if min(m) != max(m) else f"{m[0]}/{rs[0]['n_modes']}"
            hq = f"{statistics.median(r['hq'] for r in rs):.3f}"
        else:
            modes, hq = "–", "–"
        print(f"| {data} | {loss} | {step} | {NAMES.get(impl, impl)} ({init}) | {','.join(str(r['seed']) for r in rs)} | "
              f"{' '.join(f'{v:.3f}' for v in w1)} | **{statistics.median(w1):.3f}** | {floor:.3f} | {modes} | {hq} |")


if __name__ == "__main__":
    main(sys.argv[1:])
