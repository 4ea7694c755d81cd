//! The `wgan` command as a user meets it: a short toy run and its outputs, sampling, an
//! interrupted run resumed to a bitwise-identical result, and bad input — each case one clear
//! message naming the input, a non-zero exit, no panic and no half-written file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wgan::checkpoint::read_safetensors;

fn wgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgan")).args(args).env_remove("WGAN_ABORT_AFTER_STEP").output().expect("run wgan")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A failure: non-zero exit, "error:" and every `needles` in stderr, no panic.
fn fails(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

/// No temporary files left anywhere under `dir`.
fn no_temp_files(dir: &Path) {
    for e in walk(dir) {
        let n = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp"), "temporary file left behind: {}", e.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            }
            v.push(p);
        }
    }
    v
}

const TOY: &[&str] = &["train", "--dataset", "8gaussians", "--batch-size", "32", "--device", "cpu", "--seed", "5"];

fn toy_run(out: &Path, steps: u64, extra: &[&str]) -> Output {
    let steps = steps.to_string();
    let mut a: Vec<&str> = TOY.to_vec();
    a.extend(["--steps", &steps, "--out", s(out), "--sample-every", "10", "--checkpoint-every", "4"]);
    a.extend(extra);
    wgan(&a)
}

#[test]
fn toy_run_writes_its_folder_and_samples() {
    let d = tmp("toy");
    let run = d.join("run");
    let o = toy_run(&run, 12, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "config.json",
        "metrics.jsonl",
        "loss.png",
        "samples/step_000010.png",
        "samples/step_000012.png",
        "checkpoint/generator.safetensors",
        "checkpoint/critic.safetensors",
        "checkpoint/state.safetensors",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 12);
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for k in ["step", "critic_loss", "wasserstein", "penalty", "gen_loss", "seconds", "samples_per_sec"] {
        assert!(first.get(k).is_some(), "metrics line lacks {k}: {first}");
    }
    let csv = d.join("points.csv");
    let o = wgan(&["sample", "--from", s(&run), "--n", "100", "--out", s(&csv), "--device", "cpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 100);
    for l in text.lines() {
        let xy: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(xy.len(), 2);
        assert!(xy.iter().all(|v| v.is_finite()));
    }
    let png = d.join("points.png");
    assert!(wgan(&["sample", "--from", s(&run), "--n", "50", "--out", s(&png), "--device", "cpu"]).status.success());
    assert!(png.is_file());
    // A fresh run into a folder that holds one is refused rather than overwritten.
    fails(&toy_run(&run, 12, &[]), &["--resume", "already holds a run"]);
    no_temp_files(&d);
}

fn tensors(dir: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut v = Vec::new();
    for f in ["generator.safetensors", "critic.safetensors", "state.safetensors"] {
        let (ts, _) = read_safetensors(&dir.join("checkpoint").join(f)).unwrap();
        for t in ts {
            let bytes = match (t.as_f32(), t.as_i64()) {
                (Some(x), _) => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                (_, Some(x)) => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                _ => unreachable!(),
            };
            v.push((format!("{f}:{}", t.name), t.shape.clone(), bytes));
        }
    }
    v
}

#[test]
fn killed_run_resumes_bitwise_identical() {
    let d = tmp("resume");
    let (whole, broken) = (d.join("whole"), d.join("broken"));
    assert!(toy_run(&whole, 14, &[]).status.success());
    // The interrupted run dies without any cleanup right after step 10 (after its step-8
    // checkpoint, mid-way to the next), then resumes from step 8.
    let o = Command::new(env!("CARGO_BIN_EXE_wgan"))
        .args(TOY)
        .args(["--steps", "14", "--out", s(&broken), "--sample-every", "10", "--checkpoint-every", "4"])
        .env("WGAN_ABORT_AFTER_STEP", "10")
        .output()
        .unwrap();
    assert!(!o.status.success(), "the run should have been killed");
    let o = wgan(&["train", "--resume", "--out", s(&broken)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(tensors(&whole), tensors(&broken), "resumed run differs from the uninterrupted one");
    let (a, b) = (
        std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap(),
        std::fs::read_to_string(broken.join("metrics.jsonl")).unwrap(),
    );
    assert_eq!(b.lines().count(), 14, "metrics.jsonl should hold each step once");
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["seconds", "samples_per_sec"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v.to_string()
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    // Changing the architecture on resume is refused.
    fails(&wgan(&["train", "--resume", "--out", s(&broken), "--width", "4"]), &["--width", "keeps its configuration"]);
}

/// A tiny MNIST job (a few milliseconds a step, and its FID probe is as cheap): the toy runs spend
/// seconds on the exact W1 of their last step.
const TINY: &[&str] = &[
    "train",
    "--dataset",
    "mnist",
    "--width",
    "2",
    "--nz",
    "4",
    "--batch-size",
    "4",
    "--n-critic",
    "1",
    "--device",
    "cpu",
    "--seed",
    "5",
];

fn tiny_run(out: &Path, steps: &str, extra: &[&str]) -> Output {
    let mut a: Vec<&str> = TINY.to_vec();
    a.extend(["--steps", steps, "--out", s(out), "--sample-every", "2"]);
    a.extend(extra);
    wgan(&a)
}

/// `--resume` with the run's own configuration flags repeated: the same command again with
/// `--resume` added continues the run; a changed value is refused, naming the flag, the new value
/// and the recorded one, and leaves the run as it was.
#[test]
fn resume_accepts_repeated_flags_and_refuses_changes() {
    let d = tmp("resume-flags");
    let run = d.join("run");
    let ok = |o: Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(tiny_run(&run, "2", &[]));
    // The first command again, with --resume (TINY repeats --dataset, --width, --nz, --batch-size,
    // --n-critic, --device and --seed).
    ok(tiny_run(&run, "3", &["--resume"]));
    // Every other configuration flag, each with the value config.json records (the defaults here,
    // written as a user would: 1e-4 for 0.0001, 10 for 10.0).
    let same = [
        "--resume",
        "--loss",
        "wgan-gp",
        "--penalty",
        "two-sided",
        "--lambda",
        "10",
        "--clip",
        "0.01",
        "--lr",
        "1e-4",
        "--betas",
        "0,0.9",
        "--image-size",
        "28",
        "--channels",
        "1",
        "--critic-norm",
        "layer",
        "--init",
        "dcgan",
    ];
    ok(tiny_run(&run, "4", &same));
    let lines = |r: &Path| std::fs::read_to_string(r.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines(&run), 4);
    let cfg = run.join("config.json");
    let cfg_before = std::fs::read(&cfg).unwrap();
    // Real changes are refused with the flag, the new value and the recorded one.
    let changed: [(&[&str], &[&str]); 10] = [
        (&["--seed", "6"], &["--seed 6", "records --seed 5"]),
        (&["--lr", "2e-4"], &["--lr 0.0002", "records --lr 0.0001"]),
        (&["--betas", "0.5,0.9"], &["--betas 0.5,0.9", "records --betas 0,0.9"]),
        (&["--batch-size", "5"], &["--batch-size 5", "records --batch-size 4"]),
        (&["--width", "3"], &["--width 3", "records --width 2"]),
        (&["--dataset", "8gaussians"], &["--dataset 8gaussians", "records --dataset mnist"]),
        (&["--loss", "wgan"], &["--loss wgan", "records --loss wgan-gp"]),
        (&["--wgan-schedule"], &["--wgan-schedule on", "records --wgan-schedule off"]),
        (&["--data", "x.idx"], &["--data x.idx", "records no --data"]),
        (&["--preset", "dcgan-w32"], &["--preset dcgan-w32", "records --preset (none)"]),
    ];
    for (flags, needles) in changed {
        // TINY's flags, less the one being changed (clap refuses a flag given twice).
        let mut a = vec!["train"];
        for pair in TINY[1..].chunks(2).filter(|p| p[0] != flags[0]) {
            a.extend(pair);
        }
        a.extend(["--steps", "6", "--out", s(&run), "--resume"]);
        a.extend(flags);
        let mut n = needles.to_vec();
        n.extend([s(&cfg), "keeps its configuration", "--steps"]);
        fails(&wgan(&a), &n);
    }
    assert_eq!(lines(&run), 4, "a refused resume trained");
    assert_eq!(std::fs::read(&cfg).unwrap(), cfg_before, "a refused resume rewrote config.json");
    // --data: the same file by another spelling is the same; another file is a change.
    let (idx, other) = (d.join("digits.idx"), d.join("other.idx"));
    write(&idx, &idx_images(16, 28, 28));
    write(&other, &idx_images(16, 28, 28));
    let run2 = d.join("run2");
    ok(tiny_run(&run2, "1", &["--data", s(&idx)]));
    let respelt = d.join(".").join("digits.idx");
    ok(tiny_run(&run2, "2", &["--resume", "--data", s(&respelt)]));
    fails(
        &tiny_run(&run2, "3", &["--resume", "--data", s(&other)]),
        &[&format!("--data {}", s(&other)), &format!("records --data {}", s(&idx))],
    );
    assert_eq!(lines(&run2), 2);
    no_temp_files(&d);
}

/// `--preset`: the default job by name, and the WGAN-GP paper's MNIST settings; flags given beside
/// a preset win.
#[test]
fn presets_resolve_to_their_configurations() {
    use wgan::nn::arch::CriticNorm;
    use wgan::train::config::Preset;
    use wgan::train::{Loss, TrainOptions};
    let plain = TrainOptions::default().resolve().unwrap();
    let named = TrainOptions { preset: Some(Preset::DcganW32), ..Default::default() }.resolve().unwrap();
    assert_eq!(named.preset, Some(Preset::DcganW32));
    assert_eq!(wgan::train::TrainConfig { preset: None, ..named }, plain, "dcgan-w32 is the default job");
    let g = TrainOptions { preset: Some(Preset::GanMnist), ..Default::default() }.resolve().unwrap();
    assert_eq!(
        (g.loss, g.width, g.batch_size, g.nz, g.lr, g.betas, g.lambda, g.n_critic, g.critic_norm, g.steps),
        (Loss::WganGp, 64, 50, 128, 1e-4, (0.5, 0.9), 10.0, 5, CriticNorm::None, 200_000)
    );
    assert_eq!((g.dataset, g.image_size, g.channels), (wgan::train::DatasetKind::Mnist, 28, 1));
    let mine = TrainOptions { preset: Some(Preset::GanMnist), width: Some(32), steps: Some(10), ..Default::default() }
        .resolve()
        .unwrap();
    assert_eq!((mine.width, mine.steps, mine.batch_size, mine.betas), (32, 10, 50, (0.5, 0.9)));
}

/// The step counters and training time (the sum of metrics.jsonl's `seconds`) of a run.
fn clock(run: &Path) -> Vec<f64> {
    let mut t = 0.0;
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            t += serde_json::from_str::<serde_json::Value>(l).unwrap()["seconds"].as_f64().unwrap();
            t
        })
        .collect()
}

fn checkpoint_step(dir: &Path) -> usize {
    let (ts, _) = read_safetensors(&dir.join("state.safetensors")).unwrap();
    ts.iter().find(|t| t.name == "step").unwrap().as_i64().unwrap()[0] as usize
}

/// `--time-limit` stops at the first step that reaches it; `--snapshot-at` keeps a checkpoint at
/// the first step that reaches each time; both go on counting after `--resume`.
#[test]
fn time_limit_and_snapshots_follow_training_time() {
    let d = tmp("clock");
    let run = d.join("run");
    let train = |extra: &[&str]| {
        let mut a: Vec<&str> = TINY.to_vec();
        a.extend(["--steps", "1000000", "--sample-every", "1000000", "--out", s(&run)]);
        a.extend(extra);
        let o = wgan(&a);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = train(&["--time-limit", "0.3s", "--snapshot-at", "0.2,0.1,0.1"]);
    assert!(err.contains("time limit"), "{err}");
    let t = clock(&run);
    let n = t.len();
    assert!(n < 1000000 && t[n - 1] >= 0.3 && (n < 2 || t[n - 2] < 0.3), "stopped at step {n}, {:?}", &t[n - 2..]);
    assert_eq!(checkpoint_step(&run.join("checkpoint")), n);
    // The first step whose training time reaches each point.
    let first_at = |p: f64| t.iter().position(|&x| x >= p).unwrap() + 1;
    for (name, p) in [("t0.1s", 0.1), ("t0.2s", 0.2)] {
        assert_eq!(checkpoint_step(&run.join("checkpoints").join(name)), first_at(p), "{name}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["snapshot_at"].to_string(), cfg["time_limit"].as_f64()), ("[0.1,0.2]".to_string(), Some(0.3)));
    // Resumed with a later limit and another point: the clock goes on from the run's time.
    train(&["--resume", "--time-limit", "0.45", "--snapshot-at", "0.4"]);
    let t = clock(&run);
    let m = t.len();
    assert!(m > n && t[m - 1] >= 0.45 && t[m - 2] < 0.45, "resumed run stopped at step {m}");
    let first_at = |p: f64| t.iter().position(|&x| x >= p).unwrap() + 1;
    assert_eq!(checkpoint_step(&run.join("checkpoints/t0.4s")), first_at(0.4));
    // Resumed without a new limit: the time is already up, so nothing is trained.
    let err = train(&["--resume"]);
    assert!(err.contains("already has"), "{err}");
    assert_eq!(clock(&run).len(), m);
}

/// `wgan train --resume` with no --out continues runs/latest, where `wgan train` writes.
#[test]
fn resume_defaults_to_the_default_run_folder() {
    let d = tmp("resume-default");
    let in_d = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wgan"))
            .args(args)
            .current_dir(&d)
            .env_remove("WGAN_ABORT_AFTER_STEP")
            .output()
            .unwrap()
    };
    let with = |steps: &'static str, more: &[&'static str]| {
        let mut a: Vec<&str> = TINY.to_vec();
        a.extend(["--steps", steps]);
        a.extend(more);
        a
    };
    let o = in_d(&with("2", &[]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(d.join("runs/latest/config.json").is_file());
    let o = in_d(&with("3", &["--resume"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = std::fs::read_to_string(d.join("runs/latest/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    // Without a run there, the message names the file it looked for.
    std::fs::remove_dir_all(d.join("runs")).unwrap();
    fails(&in_d(&["train", "--resume"]), &["--resume", "runs/latest/config.json"]);
}

#[test]
fn invalid_flags() {
    let d = tmp("flags");
    let out = d.join("run");
    let o = s(&out);
    let (nothing, missing, xpng, xtxt) = (d.join("nothing-here"), d.join("missing"), d.join("x.png"), d.join("x.txt"));
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["train", "--lr", "0", "--out", o], vec!["--lr", "positive"]),
        (vec!["train", "--lr=-1e-4", "--out", o], vec!["--lr", "positive"]),
        (vec!["train", "--lr", "-1", "--out", o], vec!["--lr", "positive"]),
        (vec!["train", "--n-critic", "0", "--out", o], vec!["--n-critic"]),
        (vec!["train", "--loss", "wgan", "--clip", "0", "--out", o], vec!["--clip"]),
        (vec!["train", "--image-size", "30", "--out", o], vec!["--image-size 30", "28, 32 or 64"]),
        (
            vec!["train", "--batch-size", "20000", "--steps", "1", "--device", "cpu", "--out", o],
            vec!["--batch-size 20000", "10000 images"],
        ),
        (vec!["train", "--betas", "0.9", "--out", o], vec!["--betas"]),
        (vec!["train", "--dataset", "imagenet", "--out", o], vec!["--dataset"]),
        (vec!["train", "--device", "tpu", "--out", o], vec!["--device"]),
        (vec!["train", "--dataset", "cifar10", "--out", o], vec!["--data"]),
        (vec!["train", "--resume", "--out", s(&nothing)], vec!["--resume"]),
        (vec!["train", "--time-limit", "0", "--out", o], vec!["--time-limit", "positive time"]),
        (vec!["train", "--preset", "gan_mnist", "--out", o], vec!["--preset", "dcgan-w32 or gan-mnist"]),
        (
            vec!["train", "--preset", "gan-mnist", "--dataset", "swissroll", "--out", o],
            vec!["--preset gan-mnist", "toy"],
        ),
        (vec!["train", "--preset", "gan-mnist", "--image-size", "32", "--out", o], vec!["--preset gan-mnist", "28×28"]),
        (
            vec!["train", "--preset", "dcgan-w32", "--loss", "wgan", "--out", o],
            vec!["--preset dcgan-w32", "--loss wgan"],
        ),
        (vec!["train", "--snapshot-at", "1m,soon", "--out", o], vec!["--snapshot-at", "\"soon\""]),
        (vec!["sample", "--from", s(&missing), "--out", s(&xpng)], vec!["missing", "no such file"]),
        (vec!["sample", "--from", s(&d), "--out", s(&xtxt)], vec![".png or .csv"]),
    ];
    for (args, needles) in cases {
        let r = wgan(&args);
        fails(&r, &needles);
    }
    assert!(!out.join("metrics.jsonl").exists(), "a failed start wrote a run");
    no_temp_files(&d);
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).unwrap();
}

fn idx_images(n: u32, h: u32, w: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for x in [n, h, w] {
        v.extend(x.to_be_bytes());
    }
    v.extend(std::iter::repeat(128u8).take((n * h * w) as usize));
    v
}

#[test]
fn bad_datasets() {
    let d = tmp("data");
    let out = d.join("run");
    let train = |dataset: &str, data: &Path| {
        wgan(&["train", "--dataset", dataset, "--data", s(data), "--steps", "1", "--device", "cpu", "--out", s(&out)])
    };
    fails(&train("mnist", &d.join("absent.idx")), &["absent.idx"]);
    let good = idx_images(70, 28, 28);
    write(&d.join("truncated.idx"), &good[..good.len() - 100]);
    fails(&train("mnist", &d.join("truncated.idx")), &["truncated.idx"]);
    let mut magic = good.clone();
    magic[2] = 9;
    write(&d.join("magic.idx"), &magic);
    fails(&train("mnist", &d.join("magic.idx")), &["magic.idx"]);
    write(&d.join("corrupt.gz"), &[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7]);
    fails(&train("mnist", &d.join("corrupt.gz")), &["corrupt.gz"]);
    // Fewer images than one batch.
    write(&d.join("small.idx"), &good);
    let small = d.join("small.idx");
    fails(
        &wgan(&[
            "train",
            "--data",
            s(&small),
            "--batch-size",
            "100",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--out",
            s(&out),
        ]),
        &["--batch-size 100", "70 images"],
    );
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(&train("folder", &empty), &["empty", "no images"]);
    let broken = d.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    write(&broken.join("a.png"), b"\x89PNG\r\n\x1a\nnot really a png");
    fails(&train("folder", &broken), &["a.png"]);
    write(&d.join("data_batch_1.bin"), &[0u8; 1000]);
    fails(&train("cifar10", &d), &["data_batch_1.bin"]);
    assert!(!out.join("checkpoint").exists());
    no_temp_files(&d);
}

#[test]
fn bad_checkpoints_and_output_folders() {
    let d = tmp("ckpt");
    let run = d.join("run");
    assert!(toy_run(&run, 4, &[]).status.success());
    let g = run.join("checkpoint/generator.safetensors");
    // Corrupt: truncated file.
    let bytes = std::fs::read(&g).unwrap();
    let cut = d.join("cut.safetensors");
    write(&cut, &bytes[..bytes.len() / 2]);
    fails(&wgan(&["sample", "--from", s(&cut), "--out", s(&d.join("a.csv")), "--device", "cpu"]), &["cut.safetensors"]);
    write(&d.join("junk.safetensors"), b"definitely not a checkpoint");
    fails(
        &wgan(&["sample", "--from", s(&d.join("junk.safetensors")), "--out", s(&d.join("a.csv")), "--device", "cpu"]),
        &["junk.safetensors"],
    );
    // Another architecture: a run whose configuration says width 4 but whose checkpoint is the
    // toy model's.
    let other = d.join("other");
    std::fs::create_dir_all(other.join("checkpoint")).unwrap();
    for f in ["generator.safetensors", "critic.safetensors", "state.safetensors"] {
        std::fs::copy(run.join("checkpoint").join(f), other.join("checkpoint").join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    cfg["dataset"] = "mnist".into();
    cfg["image_size"] = 28.into();
    cfg["width"] = 4.into();
    cfg["nz"] = 100.into();
    write(&other.join("config.json"), cfg.to_string().as_bytes());
    fails(&wgan(&["train", "--resume", "--out", s(&other), "--device", "cpu"]), &["generator.safetensors"]);
    // CSV of an image generator is refused; so is an output folder that does not exist.
    fails(
        &wgan(&["sample", "--from", s(&run), "--out", s(&d.join("no/such/dir/a.csv")), "--device", "cpu"]),
        &["does not exist"],
    );
    // An unwritable output folder: a path below a regular file.
    let file = d.join("a-file");
    write(&file, b"x");
    let o = toy_run(&file.join("run"), 2, &[]);
    fails(&o, &["a-file"]);
    no_temp_files(&d);
}
