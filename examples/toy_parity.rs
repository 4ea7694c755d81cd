//! Toy sample quality over seeds, judged from the outside: trains the 2-D data sets with the
//! library's own step on the CPU and, at fixed generator steps, measures
//!
//! * exact W1 between 2048 generated points and 2048 fresh real points (`wgan::metrics`), with its
//!   sampling floor: the exact W1 between two independent sets of 2048 real points;
//! * modes captured and the high-quality fraction (samples within 3σ of their nearest mode);
//! * the critic's own estimate on the same points: mean D(real) − mean D(fake) (the Wasserstein
//!   estimate for WGAN and WGAN-GP; for `gan`/`nsgan` the same difference of logits).
//!
//! One JSON line per (seed, step) goes to stdout, the same record that
//! `benches/reference/wgan_torch.py --train-toy` prints for PyTorch, so `benches/toy_table.py` can
//! put both side by side (QUALITY.md).
//!
//!   cargo run --release --example toy_parity -- --dataset 8gaussians --loss wgan-gp \
//!       --seeds 0,1,2,3 --steps 1000 --eval 250,500,1000 [--init pytorch|dcgan]

use std::time::Instant;
use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::metrics::{mode_coverage, wasserstein1_exact_f32};
use wgan::nn::InitRule;
use wgan::rng::HostRng;
use wgan::toy::ToyDataset;
use wgan::train::run::Source;
use wgan::train::{DatasetKind, Loss, TrainOptions};

const POINTS: usize = 2048;

struct Args {
    dataset: DatasetKind,
    loss: Loss,
    seeds: Vec<u64>,
    steps: u64,
    eval: Vec<u64>,
    init: Option<InitRule>,
}

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').map(|x| x.trim().parse().unwrap_or_else(|_| panic!("bad list item {x:?} in {s:?}"))).collect()
}

fn parse() -> Args {
    let mut a = Args {
        dataset: DatasetKind::EightGaussians,
        loss: Loss::WganGp,
        seeds: vec![0, 1, 2, 3],
        steps: 1000,
        eval: vec![],
        init: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for kv in argv.chunks(2) {
        let (k, v) =
            (kv[0].as_str(), kv.get(1).map(String::as_str).unwrap_or_else(|| panic!("{} needs a value", kv[0])));
        match k {
            "--dataset" => a.dataset = v.parse().unwrap(),
            "--loss" => a.loss = v.parse().unwrap(),
            "--seeds" => a.seeds = list(v),
            "--steps" => a.steps = v.parse().unwrap(),
            "--eval" => a.eval = list(v),
            "--init" => a.init = Some(v.parse().unwrap()),
            _ => panic!("unknown flag {k}: expected --dataset --loss --seeds --steps --eval --init"),
        }
    }
    if a.eval.is_empty() {
        a.eval = vec![a.steps / 4, a.steps / 2, a.steps];
    }
    assert!(a.dataset.is_toy(), "--dataset: expected 8gaussians, 25gaussians or swissroll");
    a
}

fn main() {
    let a = parse();
    let be = Cpu::<f32>::new();
    for &seed in &a.seeds {
        let cfg = TrainOptions {
            dataset: Some(a.dataset),
            loss: Some(a.loss),
            steps: Some(a.steps),
            seed: Some(seed),
            init: a.init,
            device: Some("cpu".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let set: ToyDataset = a.dataset.name().parse().unwrap();
        // Evaluation draws come from their own streams, never from the training data's.
        let mut eval_rng = HostRng::new(seed, 1000);
        let floor = wasserstein1_exact_f32(&set.sample(&mut eval_rng, POINTS), &set.sample(&mut eval_rng, POINTS));
        let mut gan = cfg.build(be).unwrap();
        let mut src = Source::open(&cfg, 0).unwrap();
        let t0 = Instant::now();
        for step in 1..=a.steps {
            let stats = gan.train_step(|| src.next(&be, cfg.batch_size));
            if !a.eval.contains(&step) {
                continue;
            }
            let v = stats.read(&be);
            let z = be.randn(&[POINTS, cfg.nz], seed, 2000 + step);
            let fake = be.to_f32(&gan.sample(&z));
            let real = set.sample(&mut eval_rng, POINTS);
            let w1 = wasserstein1_exact_f32(&fake, &real);
            let d_real = be.to_f64(&gan.critic_values(&be.from_f32(&real, &[POINTS, 2])));
            let d_fake = be.to_f64(&gan.critic_values(&be.from_f32(&fake, &[POINTS, 2])));
            let w_est = d_real.iter().sum::<f64>() / POINTS as f64 - d_fake.iter().sum::<f64>() / POINTS as f64;
            let mut line = serde_json::json!({
                "impl": "wgan", "dataset": a.dataset.name(), "loss": cfg_loss(a.loss), "init": cfg.init.name(),
                "seed": seed, "step": step, "w1": w1, "floor": floor, "w_est": w_est,
                "critic_loss": v.critic_loss, "gen_loss": v.gen_loss, "seconds": t0.elapsed().as_secs_f64(),
            });
            if let Some((modes, sigma)) = set.modes() {
                let c = mode_coverage(&fake, &modes, sigma);
                line["modes"] = c.modes_captured.into();
                line["n_modes"] = c.n_modes.into();
                line["hq"] = c.high_quality_fraction.into();
            }
            println!("{line}");
        }
    }
}

fn cfg_loss(l: Loss) -> String {
    serde_json::to_value(l).unwrap().as_str().unwrap().to_string()
}
