//! Checkpoints as files: round trip through `snapshot`, and read by Python's `safetensors` (and,
//! when PyTorch is installed, loaded into the reference modules with `load_state_dict`).

use std::path::Path;
use std::process::Command;
use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::checkpoint::read_safetensors;
use wgan::train::snapshot::{self, Progress};
use wgan::train::{DatasetKind, Loss, TrainConfig, TrainOptions};

fn config(loss: Loss, dataset: DatasetKind, out: &Path) -> TrainConfig {
    TrainOptions {
        dataset: Some(dataset),
        loss: Some(loss),
        width: Some(4),
        batch_size: Some(4),
        steps: Some(1),
        out: Some(out.to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn round_trip_restores_everything() {
    let d = tmp("round");
    let cfg = config(Loss::WganGp, DatasetKind::Mnist, &d);
    let be = Cpu::<f32>::new();
    let mut a = cfg.build(be.clone()).unwrap();
    let real = be.from_f32(&vec![0.5; 4 * 28 * 28], &[4, 1, 28, 28]);
    a.train_step(|| real.clone());
    snapshot::save(&d.join("checkpoint"), &cfg, &a, Progress { step: 1, data_position: 7 }).unwrap();
    let mut b = config(Loss::WganGp, DatasetKind::Mnist, &d).build(be.clone()).unwrap();
    let p = snapshot::load(&d.join("checkpoint"), &mut b).unwrap();
    assert_eq!(p, Progress { step: 1, data_position: 7 });
    assert_eq!(be.to_f32(&a.gen.params), be.to_f32(&b.gen.params));
    assert_eq!(be.to_f32(&a.gen.buffers), be.to_f32(&b.gen.buffers));
    assert_eq!(be.to_f32(&a.critic.params), be.to_f32(&b.critic.params));
    assert_eq!(be.to_f32(&a.opt_d.v), be.to_f32(&b.opt_d.v));
    assert_eq!(be.to_f32(&a.opt_g.m), be.to_f32(&b.opt_g.m));
    assert_eq!((a.draws, a.opt_d.t, a.gen.batches_tracked.get()), (b.draws, b.opt_d.t, b.gen.batches_tracked.get()));
    // Both continue identically.
    let (sa, sb) = (a.train_step(|| real.clone()).read(&be), b.train_step(|| real.clone()).read(&be));
    assert_eq!(sa, sb);
    // Another architecture is refused with a message naming the file.
    let mut other = TrainOptions { width: Some(8), ..Default::default() }.resolve().unwrap().build(be.clone()).unwrap();
    let e =
        snapshot::load(&d.join("checkpoint"), &mut other).err().expect("width 8 must not load a width-4 checkpoint");
    assert!(e.0.contains("generator.safetensors"), "{e}");
}

fn python_ok() -> bool {
    Command::new("python3").args(["-c", "import safetensors, numpy"]).status().map(|s| s.success()).unwrap_or(false)
}

#[test]
fn python_reads_our_checkpoints() {
    if !python_ok() {
        assert!(
            std::env::var("WGAN_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "WGAN_REQUIRE_PYTHON=1 but python3 with safetensors and numpy is not available"
        );
        eprintln!("skipped: python3 with safetensors and numpy not available (pip install safetensors numpy)");
        return;
    }
    for (loss, dataset) in [(Loss::WganGp, DatasetKind::Mnist), (Loss::Wgan, DatasetKind::EightGaussians)] {
        let d = tmp(&format!("py-{}", dataset.name()));
        let cfg = config(loss, dataset, &d);
        let be = Cpu::<f32>::new();
        let gan = cfg.build(be.clone()).unwrap();
        let dir = d.join("checkpoint");
        snapshot::save(&dir, &cfg, &gan, Progress { step: 3, data_position: 2 }).unwrap();
        let mut files = serde_json::Map::new();
        for f in [snapshot::GENERATOR_FILE, snapshot::CRITIC_FILE, snapshot::STATE_FILE] {
            let (ts, _) = read_safetensors(&dir.join(f)).unwrap();
            let mut m = serde_json::Map::new();
            for t in ts {
                let (dtype, sum) = match (t.as_f32(), t.as_i64()) {
                    (Some(v), _) => ("float32", v.iter().map(|x| *x as f64).sum::<f64>()),
                    (_, Some(v)) => ("int64", v.iter().map(|x| *x as f64).sum::<f64>()),
                    _ => unreachable!(),
                };
                m.insert(t.name.clone(), serde_json::json!({"dtype": dtype, "shape": t.shape, "sum": sum}));
            }
            files.insert(f.to_string(), m.into());
        }
        let expected = d.join("expected.json");
        let doc = serde_json::json!({"files": files, "config": serde_json::to_value(&cfg).unwrap()});
        std::fs::write(&expected, doc.to_string()).unwrap();
        // Relative to the working directory (the package root under cargo test), so it also works
        // from a copy of the tree where the build path does not exist.
        let script = Path::new("tests/python/check_checkpoint.py");
        let o = Command::new("python3").arg(&script).arg(&dir).arg(&expected).output().unwrap();
        assert!(
            o.status.success(),
            "python check failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&o.stdout).trim());
    }
}
