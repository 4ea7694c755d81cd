//! Trains the MNIST classifier that `wgan eval` uses as its feature network, on the embedded
//! digits 0..8000, and writes it in the feature-network layout. The committed weights
//! (`data/classifier/mnist-classifier.safetensors`, embedded in the binary) come from:
//!
//!     cargo run --release --example train_classifier -- data/classifier/mnist-classifier.safetensors
//!
//! Options after the path: `--epochs N --seed S --lr LR --batch B` (defaults: those of the
//! committed weights). CPU only, so that the same seed gives the same weights.

use std::collections::BTreeMap;
use std::path::PathBuf;
use wgan::eval::mnist::{self, ClassifierTraining};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> wgan::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut s = ClassifierTraining::default();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| wgan::Error(format!("{name} needs a value")));
        let bad = |name: &str, v: &str| wgan::Error(format!("{name} {v:?}: not a number"));
        match a.as_str() {
            "--epochs" => { let v = value("--epochs")?; s.epochs = v.parse().map_err(|_| bad("--epochs", &v))?; }
            "--seed" => { let v = value("--seed")?; s.seed = v.parse().map_err(|_| bad("--seed", &v))?; }
            "--lr" => { let v = value("--lr")?; s.lr = v.parse().map_err(|_| bad("--lr", &v))?; }
            "--batch" => { let v = value("--batch")?; s.batch = v.parse().map_err(|_| bad("--batch", &v))?; }
            p if !p.starts_with("--") && out.is_none() => out = Some(PathBuf::from(p)),
            other => wgan::bail!("unexpected argument {other:?}; usage: train_classifier OUT.safetensors [--epochs N] [--seed S] [--lr LR] [--batch B]"),
        }
    }
    let out = out.ok_or_else(|| {
        wgan::Error("usage: train_classifier OUT.safetensors [--epochs N] [--seed S] [--lr LR] [--batch B]".into())
    })?;
    let be = wgan::backend::cpu::Cpu::<f32>::new();
    let t0 = std::time::Instant::now();
    eprintln!(
        "training the MNIST classifier on embedded digits {:?}, testing on {:?}, {:?}",
        mnist::TRAIN,
        mnist::HELD_OUT,
        s
    );
    let (net, acc) = mnist::train_classifier(&be, &s, |line| eprintln!("{line}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let mut meta = BTreeMap::new();
    meta.insert("held_out_accuracy".to_string(), format!("{acc:.4}"));
    meta.insert("train_digits".to_string(), format!("{}..{}", mnist::TRAIN.start, mnist::TRAIN.end));
    meta.insert("held_out_digits".to_string(), format!("{}..{}", mnist::HELD_OUT.start, mnist::HELD_OUT.end));
    meta.insert(
        "trained_with".to_string(),
        format!(
            "cargo run --release --example train_classifier -- OUT --epochs {} --seed {} --lr {} --batch {}",
            s.epochs, s.seed, s.lr, s.batch
        ),
    );
    net.save(&out, &meta)?;
    println!(
        "wrote {} ({} parameters) in {secs:.1} s; held-out accuracy {:.2} % on {} digits",
        out.display(),
        net.params.len(),
        100.0 * acc,
        mnist::HELD_OUT.len()
    );
    Ok(())
}
