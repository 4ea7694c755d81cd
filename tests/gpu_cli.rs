//! The `wgan` command end to end on the CUDA backend: `--device cuda` on a GPU (ignored without
//! one) and `--device emulated` (the same host code and kernels on the CPU emulator, in every CI
//! run). A short MNIST run killed after a step and resumed must equal the uninterrupted run
//! bitwise, as on the CPU: the device's random numbers are counter-based and its reductions have a
//! fixed order, so a step depends only on the checkpoint. A toy run writes its metrics (exact W1,
//! modes) and its contour figure, and `wgan sample` reads the checkpoint back on the device.
//!
//! The binary is `$WGAN_BIN`, else the one cargo built, else `.gpu/bin/wgan` under the working
//! directory (a GPU machine without Rust runs binaries gathered by `../shared/gpu/pack`).
//! `wgan train` runs get `--precision $WGAN_TEST_PRECISION` when that is set (else the CLI's
//! default: tf32 on CUDA).

mod cuda_devices;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cuda_devices::On;
use wgan::checkpoint::read_safetensors;

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WGAN_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(env!("CARGO_BIN_EXE_wgan"));
    if built.is_file() {
        return built;
    }
    PathBuf::from(".gpu/bin/wgan")
}

fn wgan(args: &[&str], abort_after: Option<u64>) -> Output {
    let mut c = Command::new(binary());
    c.args(args).env_remove("WGAN_ABORT_AFTER_STEP");
    // Training runs at WGAN_TEST_PRECISION when set (else the CLI's default, tf32 on CUDA).
    let p = std::env::var("WGAN_TEST_PRECISION").unwrap_or_default();
    if args.first() == Some(&"train") && !p.is_empty() {
        c.args(["--precision", p.as_str()]);
    }
    if let Some(s) = abort_after {
        c.env("WGAN_ABORT_AFTER_STEP", s.to_string());
    }
    c.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()))
}

fn ok(o: &Output) {
    assert!(o.status.success(), "wgan failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

fn device(on: On) -> &'static str {
    match on {
        On::Gpu => "cuda",
        On::Emulator => "emulated",
    }
}

fn tmp(name: &str, on: On) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-gpu-cli-{}-{name}-{}", std::process::id(), device(on)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every tensor of a run's checkpoint, as (file:name, shape, little-endian bytes).
fn tensors(run: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut v = Vec::new();
    for f in ["generator.safetensors", "critic.safetensors", "state.safetensors"] {
        let (ts, _) = read_safetensors(&run.join("checkpoint").join(f)).unwrap();
        for t in ts {
            let bytes: Vec<u8> = match (t.as_f32(), t.as_i64()) {
                (Some(x), _) => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                (_, Some(x)) => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                _ => panic!("{f}:{}: unexpected dtype", t.name),
            };
            v.push((format!("{f}:{}", t.name), t.shape.clone(), bytes));
        }
    }
    v
}

/// metrics.jsonl without its timing fields, one JSON value per line.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["seconds", "samples_per_sec"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn mnist_run_resumes_bitwise_identical(on: On) {
    if cuda_devices::open(on).is_none() {
        return;
    }
    let d = tmp("mnist", on);
    let (whole, broken) = (d.join("whole"), d.join("broken"));
    let dev = device(on);
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--dataset",
            "mnist",
            "--width",
            "4",
            "--batch-size",
            "4",
            "--n-critic",
            "2",
            "--steps",
            "4",
            "--checkpoint-every",
            "2",
            "--sample-every",
            "2",
            "--seed",
            "3",
            "--device",
            dev,
            "--out",
            s(out),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    ok(&wgan(&strs(&args(&whole)), None));
    // CUDA graphs are on by default (the resume below is thus bitwise exact with them on).
    let cfg = std::fs::read_to_string(whole.join("config.json")).unwrap();
    assert!(cfg.contains("\"graph\": true"), "config.json records --graph: {cfg}");
    let o = wgan(&strs(&args(&broken)), Some(3));
    assert!(!o.status.success(), "the run should have been killed after step 3");
    ok(&wgan(&["train", "--resume", "--out", s(&broken), "--device", dev], None));
    assert_eq!(tensors(&whole), tensors(&broken), "{dev}: the resumed run differs from the uninterrupted one");
    let (mw, mb) = (metrics(&whole), metrics(&broken));
    assert_eq!(mw.len(), 4);
    assert_eq!(mw, mb, "{dev}: metrics of the resumed run differ");
    for m in &mw {
        for k in ["critic_loss", "wasserstein", "penalty", "gen_loss"] {
            assert!(m[k].as_f64().is_some_and(f64::is_finite), "{dev}: {k} is not finite in {m}");
        }
    }
    assert!(whole.join("samples/step_000004.png").is_file() && whole.join("loss.png").is_file());
    let grid = d.join("grid.png");
    ok(&wgan(&["sample", "--from", s(&whole), "--n", "9", "--out", s(&grid), "--device", dev], None));
    let img = image::open(&grid).expect("a PNG grid");
    assert!(img.width() >= 28 * 3 && img.height() >= 28 * 3, "grid of 9 digits is {}×{}", img.width(), img.height());
}

fn toy_run_and_sample(on: On) {
    if cuda_devices::open(on).is_none() {
        return;
    }
    let d = tmp("toy", on);
    let run = d.join("run");
    let dev = device(on);
    ok(&wgan(
        &[
            "train",
            "--dataset",
            "8gaussians",
            "--width",
            "16",
            "--batch-size",
            "16",
            "--steps",
            "2",
            "--sample-every",
            "2",
            "--seed",
            "1",
            "--device",
            dev,
            "--out",
            s(&run),
        ],
        None,
    ));
    let m = metrics(&run);
    let last = m.last().unwrap();
    assert!(last["w1"].as_f64().is_some_and(|w| w.is_finite() && w > 0.0), "{dev}: no exact W1 in {last}");
    assert!(last["modes_captured"].as_u64().is_some(), "{dev}: no mode count in {last}");
    assert!(run.join("samples/step_000002.png").is_file());
    let csv = d.join("points.csv");
    ok(&wgan(&["sample", "--from", s(&run), "--n", "33", "--out", s(&csv), "--device", dev], None));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 33);
    for l in text.lines() {
        let xy: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
        assert!(xy.len() == 2 && xy.iter().all(|v| v.is_finite()), "bad line {l:?}");
    }
}

on_gpu_and_emulator!(mnist_run_resumes_bitwise_identical, toy_run_and_sample);

/// A one-step MNIST run of the smallest model on the emulator (about 5 s; a toy run spends 30 s in
/// its exact W1), standing for a device of compute capability `sm` when given
/// (`WGAN_EMULATED_SM`), with `extra` flags (no `WGAN_TEST_PRECISION`: these tests choose it).
fn emulated_small_run(out: &Path, sm: Option<&str>, extra: &[&str]) -> Output {
    let mut c = Command::new(binary());
    c.args(["train", "--dataset", "mnist", "--width", "4", "--batch-size", "4", "--n-critic", "1"])
        .args(["--steps", "1", "--seed", "2", "--device", "emulated", "--out", s(out)])
        .args(extra)
        .env_remove("WGAN_ABORT_AFTER_STEP");
    match sm {
        Some(v) => c.env("WGAN_EMULATED_SM", v),
        None => c.env_remove("WGAN_EMULATED_SM"),
    };
    c.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", binary().display()))
}

fn recorded_precision(run: &Path) -> String {
    let text = std::fs::read_to_string(run.join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["precision"].as_str().unwrap_or_else(|| panic!("no precision in {text}")).to_string()
}

/// TF32/BF16 tensor cores need sm_80. On the emulator standing for an sm_75 GPU, an explicit
/// `--precision tf32|bf16` fails before training with one line naming the flag and the sm; the
/// default falls back to f32 with one notice, and config.json records what ran (f32). Without
/// `WGAN_EMULATED_SM` the emulator runs the default, tf32, and records it.
fn precision_follows_the_compute_capability() {
    if cuda_devices::open(On::Emulator).is_none() {
        return;
    }
    let d = tmp("precision", On::Emulator);
    for p in ["tf32", "bf16"] {
        let out = d.join(format!("explicit-{p}"));
        let o = emulated_small_run(&out, Some("sm_75"), &["--precision", p]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "--precision {p} on sm_75 must fail: {err}");
        assert!(err.contains(&format!("--precision {p}:")) && err.contains("sm_75"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.join("checkpoint").exists(), "nothing may be trained: {err}");
    }
    let o = emulated_small_run(&d.join("bad-sm"), Some("banana"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("WGAN_EMULATED_SM=banana"), "{err}");

    let old = d.join("sm75");
    let o = emulated_small_run(&old, Some("sm_75"), &[]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let notices: Vec<&str> = err.lines().filter(|l| l.contains("sm_75") && l.contains("f32")).collect();
    assert_eq!(notices.len(), 1, "one notice of the f32 fallback: {err}");
    assert_eq!(recorded_precision(&old), "f32");

    let new = d.join("any");
    let o = emulated_small_run(&new, None, &[]);
    ok(&o);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("sm_75"));
    assert_eq!(recorded_precision(&new), "tf32");
}

// Emulator only (WGAN_EMULATED_SM); named `::emulated` so that GPU sessions skip it.
mod precision_follows_the_compute_capability {
    #[test]
    fn emulated() {
        super::precision_follows_the_compute_capability()
    }
}
