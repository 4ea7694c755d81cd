#!/usr/bin/env python3
"""Time to quality: sample quality over training time, `wgan train` beside the PyTorch reference.

Trains the default job (`wgan train`: WGAN-GP on the embedded MNIST digits, every flag at its
default) and the PyTorch reference (`benches/reference/wgan_torch.py --train-mnist`, the same
configuration, read from our run's config.json) one after the other on this machine, with the same
number of threads. Each keeps its generator when its training time reaches each point (default 1,
2, 3, 5 and 10 minutes; training time is the steps' own time, without sample pictures, FID probes
and checkpoints, for both). Then `wgan eval --n 2000` scores every kept generator with the same
held-out metric: the FID of the embedded MNIST classifier, 2,000 samples.

    python3 benches/time_to_quality.py                         # 1,2,3,5,10 minutes, seed 0
    python3 benches/time_to_quality.py --points 1m,2m --seeds 0,1
    python3 benches/time_to_quality.py --no-torch              # ours only

Writes under --results (default bench-results/time-to-quality/):
    NAME.csv    impl,seed,minutes,seconds,step,fid,floor_fid: one line per kept generator
    NAME.json   the same records, the summary and the environment (commit, CPU, threads, versions)
    NAME.png    FID over minutes of training, one curve per trainer and seed
    NAME.log    the raw output of every command
NAME is DATE-COMMIT-POINTS. The run folders (checkpoints) go to --runs (default
target/time-to-quality/).

PyTorch missing: the script says so and measures ours alone (pip install torch safetensors).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TORCH_REF = os.path.join(ROOT, "benches", "reference", "wgan_torch.py")


def parse_seconds(text):
    """'90', '90s', '1.5m', '1h' → seconds (as `wgan train --snapshot-at`)."""
    t = text.strip()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:])
    try:
        v = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        v = float("nan")
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"expected positive times such as 90, 90s, 1.5m or 1h, got {text!r}")
    return v


def snapshot_name(secs):
    """As `wgan train` names a snapshot folder (Rust's `{}` of an f64 = Python's `{:g}` for these)."""
    return f"t{secs:g}s"


class Log:
    def __init__(self, path):
        self.f = open(path, "w")

    def say(self, msg):
        print(msg, flush=True)
        self.f.write(msg + "\n")
        self.f.flush()

    def run(self, cmd, env=None, cwd=ROOT):
        """Runs `cmd`, its output into the log (and the last lines on screen when it fails)."""
        self.say("$ " + " ".join(cmd))
        t = time.time()
        p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.f.write(p.stdout)
        self.f.write(f"[exit {p.returncode} after {time.time() - t:.1f} s]\n")
        self.f.flush()
        if p.returncode != 0:
            tail = "\n".join(p.stdout.splitlines()[-20:])
            raise SystemExit(f"error: {' '.join(cmd[:3])} … failed (exit {p.returncode}):\n{tail}")
        return p.stdout


def safetensors_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def torch_available():
    p = subprocess.run([sys.executable, "-c", "import torch, safetensors; print(torch.__version__)"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def git(*args):
    p = subprocess.run(["git", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--points", default="1m,2m,3m,5m,10m",
                    type=lambda s: sorted({parse_seconds(x) for x in s.split(",")}),
                    help="training times at which both trainers are scored (default 1m,2m,3m,5m,10m)")
    ap.add_argument("--seeds", default="0", type=lambda s: [int(x) for x in s.split(",")],
                    help="comma-separated seeds, each a run of both trainers (default 0)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of both trainers and of the evaluation (default: every core)")
    ap.add_argument("--n", type=int, default=2000, help="samples per FID (default 2000)")
    ap.add_argument("--no-torch", action="store_true", help="measure `wgan train` only")
    ap.add_argument("--no-build", action="store_true", help="use target/release as it is")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench-results", "time-to-quality"))
    ap.add_argument("--runs", default=os.path.join(ROOT, "target", "time-to-quality"))
    ap.add_argument("--name", default=None, help="file name stem of the results (default DATE-COMMIT-POINTS)")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.n < 10:
        ap.error("--threads must be at least 1 and --n at least 10")

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    pts = "-".join(f"{p:g}s" for p in args.points)
    name = args.name or f"{datetime.date.today().isoformat()}-{commit}-{pts}"
    os.makedirs(args.results, exist_ok=True)
    log = Log(os.path.join(args.results, name + ".log"))
    wgan = os.path.join(ROOT, "target", "release", "wgan")
    plot = os.path.join(ROOT, "target", "release", "examples", "time_to_quality_plot")
    if not args.no_build:
        log.run(["cargo", "build", "--release", "--bin", "wgan", "--example", "time_to_quality_plot"])
    for exe in (wgan, plot):
        if not os.path.isfile(exe):
            raise SystemExit(f"error: {exe} is missing; build it (cargo build --release --bin wgan "
                             f"--example time_to_quality_plot) or leave out --no-build")

    torch_version = None if args.no_torch else torch_available()
    if not args.no_torch and torch_version is None:
        log.say(f"note: PyTorch (with safetensors) cannot be imported by {sys.executable}; measuring `wgan train` "
                "only. Install it with: pip install torch safetensors")
    t = str(args.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t)
    env.pop("WGAN_PROFILE", None)
    points = ",".join(f"{p:g}" for p in args.points)
    limit = f"{args.points[-1]:g}"
    log.say(f"time to quality: points {points} s of training, seeds {args.seeds}, {args.threads} threads, "
            f"FID of {args.n} samples; commit {commit}; CPU {cpu_model()}; torch {torch_version or 'absent'}")

    records, trainings = [], []

    def train(impl, seed, cmd):
        """One training run, with the machine's load average before and after: other work on the
        cores slows a trainer down (PyTorch's OpenMP threads far more than ours), so a run on a busy
        machine says little."""
        before = os.getloadavg()[0]
        t = time.time()
        log.run(cmd, env=env)
        after = os.getloadavg()[0]
        trainings.append(dict(impl=impl, seed=seed, wall_seconds=round(time.time() - t, 1),
                              load_before=before, load_after=after))
        if max(before, after) > (os.cpu_count() or 1) + 0.5:
            log.say(f"warning: load average {before:.1f} before and {after:.1f} after the {impl} run on "
                    f"{os.cpu_count()} cores: other work shared the machine, so this curve is slower than it "
                    "would be on a quiet one")

    for seed in args.seeds:
        ours = os.path.join(args.runs, f"{name}-ours-s{seed}")
        shutil.rmtree(ours, ignore_errors=True)
        # The default job; a time limit instead of the step count, and no sample step on the way
        # (its pictures and FID probe are not training time, so they change nothing but the wait).
        train("wgan", seed, [wgan, "train", "--device", "cpu", "--seed", str(seed), "--out", ours, "--steps",
                             "100000000", "--sample-every", "100000000", "--checkpoint-every", "100000000",
                             "--snapshot-at", points, "--time-limit", limit])
        runs = [("wgan", ours)]
        if torch_version:
            ref = os.path.join(args.runs, f"{name}-torch-s{seed}")
            shutil.rmtree(ref, ignore_errors=True)
            train("pytorch", seed, [sys.executable, TORCH_REF, "--train-mnist", os.path.join(ours, "config.json"),
                                    "--device", "cpu", "--threads", t, "--seed", str(seed), "--snapshot-at", points,
                                    "--time-limit", limit, "--out", ref])
            runs.append(("pytorch", ref))
        for impl, run in runs:
            for p in args.points:
                snap = os.path.join(run, "checkpoints", snapshot_name(p))
                gen = os.path.join(snap, "generator.safetensors")
                if not os.path.isfile(gen):
                    log.say(f"warning: {impl} seed {seed}: no generator kept at {p:g} s ({gen})")
                    continue
                log.run([wgan, "eval", "--from", snap, "--n", str(args.n), "--device", "cpu", "--seed", "0"], env=env)
                with open(os.path.join(snap, "eval.json")) as f:
                    ev = json.load(f)
                rec = dict(impl=impl, seed=seed, minutes=p / 60, seconds=p,
                           step=int(safetensors_metadata(gen).get("step", -1)), fid=ev["metrics"]["fid"],
                           floor_fid=ev["real_vs_real"]["fid"])
                records.append(rec)
                log.say(f"{impl:8s} seed {seed} at {p:6.0f} s (step {rec['step']:5d}): FID {rec['fid']:.2f} "
                        f"(real vs real {rec['floor_fid']:.2f})")

    csv = os.path.join(args.results, name + ".csv")
    cols = ["impl", "seed", "minutes", "seconds", "step", "fid", "floor_fid"]
    with open(csv, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in records:
            f.write(",".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + "\n")
    png = os.path.join(args.results, name + ".png")
    log.run([plot, csv, png])

    summary = summarise(records, args.points)
    for line in summary["lines"]:
        log.say(line)
    out = dict(name=name, commit=commit, points_seconds=args.points, seeds=args.seeds, threads=args.threads,
               samples=args.n, metric="FID of the embedded MNIST classifier's 32 features, samples vs held-out "
               "digits 8000..8999 (wgan eval)", cpu=cpu_model(), cores=os.cpu_count(), torch=torch_version,
               python=platform.python_version(), records=records, trainings=trainings, summary=summary,
               command=" ".join([os.path.relpath(sys.argv[0], ROOT), *(argv if argv is not None else sys.argv[1:])]))
    with open(os.path.join(args.results, name + ".json"), "w") as f:
        json.dump(out, f, indent=1)
    log.say(f"wrote {csv}, {png}, {name}.json and {name}.log in {args.results}")
    return 0


def summarise(records, points):
    """Median FID per trainer and point; PyTorch's best median and the first point where ours is at
    least as good."""
    lines, med = [], {}
    for impl in sorted({r["impl"] for r in records}):
        row = []
        for p in points:
            v = [r["fid"] for r in records if r["impl"] == impl and r["seconds"] == p]
            if v:
                med[(impl, p)] = statistics.median(v)
                row.append(f"{p / 60:g} min {med[(impl, p)]:.1f}")
        lines.append(f"median FID, {impl}: " + ", ".join(row))
    out = dict(median_fid={f"{i}@{p:g}s": v for (i, p), v in med.items()}, lines=lines)
    torch_pts = [(p, med[("pytorch", p)]) for p in points if ("pytorch", p) in med]
    if torch_pts:
        best_p, best = min(torch_pts, key=lambda x: x[1])
        ours_at = next((p for p in points if med.get(("wgan", p), float("inf")) <= best), None)
        out.update(pytorch_best_fid=best, pytorch_best_at_seconds=best_p, wgan_reaches_it_at_seconds=ours_at)
        lines.append(f"PyTorch's best median FID {best:.1f} (at {best_p / 60:g} min); `wgan train` reaches it "
                     + (f"at {ours_at / 60:g} min" if ours_at is not None else "at none of the points"))
    return out


if __name__ == "__main__":
    sys.exit(main())
