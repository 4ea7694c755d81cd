//! `wgan eval` and `wgan sample --out DIR/|x.npy` as a user meets them: a tiny MNIST run logs IS,
//! FID and coverage and draws the FID panel; `wgan eval` prints all six metrics beside their
//! real-vs-real floors and writes eval.json; samples go to a folder of numbered PNGs and to a .npy
//! array that numpy reads; bad input gets one clear message and leaves nothing half-written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wgan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgan")).args(args).env_remove("WGAN_ABORT_AFTER_STEP").output().expect("run wgan")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-eval-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "wgan failed:\n{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got success; stderr:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "panic:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Trains the tiny MNIST run; returns its stderr.
fn tiny_mnist(out: &Path, extra: &[&str]) -> String {
    let mut a = vec![
        "train",
        "--dataset",
        "mnist",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--n-critic",
        "2",
        "--steps",
        "4",
        "--sample-every",
        "2",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--out",
        s(out),
    ];
    a.extend(extra);
    let o = wgan(&a);
    ok(&o);
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn mnist_run_logs_scores_and_eval_prints_every_metric_with_its_floor() {
    let d = tmp("mnist");
    let run = d.join("run");
    let stderr = tiny_mnist(&run, &[]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        let sample_step = l["step"].as_u64().unwrap() % 2 == 0;
        for k in ["inception_score", "fid", "classes_covered", "class_kl"] {
            assert_eq!(l[k].is_number(), sample_step, "{k} in {l}");
        }
    }
    // The progress line (one per step here: 4 steps, not a terminal) carries the FID of the latest
    // sample step once there is one: none at step 1, step 2's at steps 2 and 3, step 4's at 4.
    let fid_at = |i: usize| format!("FID {}", wgan::progress::format_value(lines[i]["fid"].as_f64().unwrap()));
    let expect = [None, Some(fid_at(1)), Some(fid_at(1)), Some(fid_at(3))];
    for (i, want) in expect.iter().enumerate() {
        let prefix = format!("step {}/4 ", i + 1);
        let line =
            stderr.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix:?} line:\n{stderr}"));
        match want {
            Some(f) => assert!(line.ends_with(f.as_str()), "{line:?} should end with {f:?}"),
            None => assert!(!line.contains("FID"), "{line:?} shows an FID before any was measured"),
        }
    }
    let is = lines[1]["inception_score"].as_f64().unwrap();
    assert!((1.0..=10.0).contains(&is) && lines[1]["fid"].as_f64().unwrap() > 0.0, "{}", lines[1]);
    let img = image::open(run.join("loss.png")).unwrap();
    assert!(img.height() > 600, "loss.png has no FID panel ({}×{})", img.width(), img.height());

    let out = ok(&wgan(&["eval", "--from", s(&run), "--n", "200", "--device", "cpu"]));
    for m in ["Inception Score", "Mode Score", "FID", "KID", "1-NN accuracy", "classes covered", "class histogram KL"] {
        let row = out.lines().find(|l| l.starts_with(m)).unwrap_or_else(|| panic!("no {m} row in:\n{out}"));
        assert!(row.split_whitespace().filter(|w| w.parse::<f64>().is_ok() || w.contains('/')).count() >= 2, "{row}");
    }
    assert!(out.contains("real vs real") && out.contains("held out"), "{out}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    for side in ["metrics", "real_vs_real"] {
        for k in
            ["inception_score", "mode_score", "fid", "kid", "kid_std", "one_nn_accuracy", "classes_covered", "class_kl"]
        {
            assert!(j[side][k].is_number(), "eval.json lacks {side}.{k}: {j}");
        }
    }
    assert_eq!(j["samples"], 200);
    // The floor: two real sets are close; these samples from a 4-step generator are not.
    let (f, r) = (&j["metrics"], &j["real_vs_real"]);
    assert!(r["fid"].as_f64().unwrap() < f["fid"].as_f64().unwrap(), "{j}");
    assert!(r["classes_covered"] == 10 && r["inception_score"].as_f64().unwrap() > 7.0, "{j}");
    assert!((r["one_nn_accuracy"].as_f64().unwrap() - 0.5).abs() < 0.1, "{j}");
    // Same seed, same numbers.
    ok(&wgan(&["eval", "--from", s(&run.join("checkpoint")), "--n", "200", "--device", "cpu"]));
    let j2: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(j["metrics"], j2["metrics"]);

    // Samples: a folder of numbered PNGs and a .npy array of the same images.
    let folder = d.join("pngs");
    ok(&wgan(&["sample", "--from", s(&run), "--n", "12", "--out", &format!("{}/", s(&folder)), "--device", "cpu"]));
    let files = names(&folder);
    assert_eq!(files.len(), 12);
    assert_eq!((files[0].as_str(), files[11].as_str()), ("000000.png", "000011.png"));
    let first = image::open(folder.join("000000.png")).unwrap().to_luma8();
    assert_eq!(first.dimensions(), (28, 28));
    let npy = d.join("x.npy");
    ok(&wgan(&["sample", "--from", s(&run), "--n", "12", "--out", s(&npy), "--device", "cpu"]));
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hl) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + hl]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (12, 1, 28, 28)"), "{header}");
    let vals: Vec<f32> = bytes[10 + hl..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(vals.len(), 12 * 28 * 28);
    assert!(vals.iter().all(|v| (-1.0..=1.0).contains(v)));
    for (p, v) in first.pixels().zip(&vals[..28 * 28]) {
        assert_eq!(p.0[0], wgan::plot::to_byte(*v), "PNG 000000 and the .npy's first image differ");
    }
    if Command::new("python3").args(["-c", "import numpy"]).status().map(|s| s.success()).unwrap_or(false) {
        let o = Command::new("python3")
            .args(["-c", "import numpy as np, sys; a = np.load(sys.argv[1]); print(a.dtype, a.shape, a.min() >= -1, a.max() <= 1)"])
            .arg(&npy)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "float32 (12, 1, 28, 28) True True");
    } else {
        assert!(std::env::var("WGAN_REQUIRE_PYTHON").as_deref() != Ok("1"), "python3 with numpy is required");
    }
    // A folder that is not empty is refused, untouched.
    fails(
        &wgan(&["sample", "--from", s(&run), "--n", "3", "--out", s(&folder), "--device", "cpu"]),
        &["not an empty folder"],
    );
    assert_eq!(names(&folder).len(), 12);
    // Nothing half-written when sampling fails (a missing checkpoint).
    fails(
        &wgan(&["sample", "--from", s(&d.join("nope")), "--n", "3", "--out", s(&d.join("y.npy")), "--device", "cpu"]),
        &["nope"],
    );
    assert_eq!(names(&d), vec!["pngs", "run", "x.npy"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// A 2-D run's checkpoint, written directly (training would spend its time on exact W1).
fn toy_checkpoint(run: &Path) {
    use wgan::train::{snapshot, DatasetKind, TrainOptions};
    let cfg = TrainOptions {
        dataset: Some(DatasetKind::EightGaussians),
        width: Some(8),
        out: Some(run.to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let gan = cfg.build(wgan::backend::cpu::Cpu::<f32>::new()).unwrap();
    std::fs::create_dir_all(run).unwrap();
    snapshot::save(&run.join("checkpoint"), &cfg, &gan, snapshot::Progress { step: 0, data_position: 0 }).unwrap();
}

#[test]
fn eval_refuses_clearly() {
    let d = tmp("bad");
    // No checkpoint.
    fails(&wgan(&["eval", "--from", s(&d), "--device", "cpu"]), &["no checkpoint found"]);
    fails(&wgan(&["eval", "--from", s(&d.join("missing")), "--device", "cpu"]), &["no such file"]);
    // A 2-D run.
    let toy = d.join("toy");
    toy_checkpoint(&toy);
    fails(&wgan(&["eval", "--from", s(&toy), "--device", "cpu"]), &["2-D run", "metrics.jsonl"]);
    fails(
        &wgan(&["sample", "--from", s(&toy), "--n", "3", "--out", s(&d.join("pts/")), "--device", "cpu"]),
        &["2-D points"],
    );
    ok(&wgan(&["sample", "--from", s(&toy), "--n", "3", "--out", s(&d.join("pts.npy")), "--device", "cpu"]));
    assert!(std::fs::read(d.join("pts.npy")).unwrap().windows(15).any(|w| w == b"'shape': (3, 2)"));
    // Images that are not MNIST: no embedded feature network; a user network must fit.
    let imgs = d.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..24u8 {
        let px: Vec<u8> = (0..28 * 28).map(|p| ((p as u8).wrapping_mul(i + 1)) / 2).collect();
        image::GrayImage::from_raw(28, 28, px).unwrap().save(imgs.join(format!("{i}.png"))).unwrap();
    }
    let run = d.join("folder-run");
    ok(&wgan(&[
        "train",
        "--dataset",
        "folder",
        "--data",
        s(&imgs),
        "--image-size",
        "28",
        "--channels",
        "1",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--n-critic",
        "1",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&run),
    ]));
    fails(
        &wgan(&["eval", "--from", s(&run), "--device", "cpu"]),
        &["no feature network for folder images", "--features"],
    );
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"not a network").unwrap();
    fails(
        &wgan(&["eval", "--from", s(&run), "--features", s(&junk), "--device", "cpu"]),
        &["--features", "junk.safetensors"],
    );
    assert!(!run.join("eval.json").exists());
    // A user network in the layout (here the MNIST classifier's file) works on the run's own images.
    let net = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/classifier/mnist-classifier.safetensors");
    let out = ok(&wgan(&["eval", "--from", s(&run), "--n", "20", "--features", s(&net), "--device", "cpu"]));
    assert!(out.contains("FID") && out.contains("12 random images of"), "{out}");
    assert!(run.join("eval.json").is_file());
    // Too few samples.
    fails(&wgan(&["eval", "--from", s(&run), "--n", "3", "--device", "cpu"]), &["--n 3"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// The PyTorch side of `benches/time_to_quality.py`: `wgan_torch.py --train-mnist` trains the
/// configuration of one of our runs against the clock and keeps generators that `wgan eval`
/// scores like ours. Skipped without PyTorch (it is not a test requirement).
#[test]
fn torch_reference_generators_are_scored_by_wgan_eval() {
    let torch = Command::new("python3").args(["-c", "import torch, safetensors"]).status();
    if !torch.map(|s| s.success()).unwrap_or(false) {
        return eprintln!("skipped: python3 cannot import torch and safetensors (pip install torch safetensors)");
    }
    let d = tmp("torch-ref");
    let ours = d.join("ours");
    tiny_mnist(&ours, &[]);
    let reference = d.join("torch");
    let o = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reference/wgan_torch.py"))
        .args(["--train-mnist", s(&ours.join("config.json")), "--device", "cpu", "--threads", "1", "--seed", "3"])
        .args(["--snapshot-at", "0.05s", "--time-limit", "0.2s", "--out", s(&reference)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snap = reference.join("checkpoints/t0.05s");
    let out = ok(&wgan(&["eval", "--from", s(&snap), "--n", "100", "--device", "cpu"]));
    assert!(out.lines().any(|l| l.starts_with("FID")), "{out}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(snap.join("eval.json")).unwrap()).unwrap();
    assert!(j["metrics"]["fid"].as_f64().is_some_and(|f| f.is_finite() && f > 0.0), "{j}");
    // The configuration in the file's metadata is our run's, with the reference's seed.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["width"].as_u64(), cfg["seed"].as_u64()), (Some(4), Some(3)));
    // A configuration it cannot train is refused with a message, not a traceback.
    let o = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/reference/wgan_torch.py"))
        .args(["--train-mnist", s(&d.join("absent.json")), "--time-limit", "1", "--out", s(&d.join("x"))])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("absent.json") && !err.contains("Traceback"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}
