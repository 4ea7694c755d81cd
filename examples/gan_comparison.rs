//! The seed notes' claims on 8 gaussians, WGAN-GP beside the standard GAN, as one figure with its
//! numbers: sample quality (exact W1 to the data) and modes captured over generator steps, median
//! over seeds; and whether the critic's own estimate tracks sample quality.
//!
//! Reads the records of `examples/toy_parity` (one JSON line per seed and evaluation step):
//!
//!   cargo run --release --example toy_parity -- --loss wgan-gp --seeds 0,1,2,3 --steps 1000 \
//!       --eval 100,250,500,750,1000 > bench-results/quality/ours-8gaussians-wgan-gp.jsonl
//!   cargo run --release --example toy_parity -- --loss nsgan --seeds 0,1,2 --steps 1000 \
//!       --eval 100,200,300,400,500,600,700,800,900,1000 > bench-results/quality/ours-8gaussians-nsgan.jsonl
//!   (the same with --loss gan)
//!   cargo run --release --example gan_comparison -- bench-results/quality docs/gan_comparison.png
//!
//! and prints the figure's numbers as Markdown. The "critic's estimate" is mean D(real) − mean
//! D(fake) on 2048 fresh points of each for the WGAN-GP critic (its Wasserstein estimate), and
//! ln 4 − loss_D for the standard GAN's discriminator (2·JSD at the optimal discriminator, the
//! divergence its loss estimates). Their agreement with W1 is Spearman's rank correlation over all
//! (seed, step) points.

use std::collections::BTreeMap;
use std::path::PathBuf;
use wgan::plot::figure::{write_panels, Panel, Series, Style};

struct Rec {
    seed: u64,
    step: u64,
    w1: f64,
    floor: f64,
    modes: f64,
    w_est: f64,
    critic_loss: f64,
}

fn load(path: &std::path::Path) -> Vec<Rec> {
    let Ok(text) = std::fs::read_to_string(path) else { return vec![] };
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            Rec {
                seed: v["seed"].as_u64().unwrap(),
                step: v["step"].as_u64().unwrap(),
                w1: f("w1"),
                floor: f("floor"),
                modes: f("modes"),
                w_est: f("w_est"),
                critic_loss: f("critic_loss"),
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of x and y.
fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().map(String::as_str).unwrap_or("bench-results/quality"));
    let out = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("docs/gan_comparison.png"));
    let losses = [("wgan-gp", "WGAN-GP"), ("nsgan", "GAN (non-saturating)"), ("gan", "GAN (minimax)")];
    let mut w1_panel = Panel {
        title: "sample quality".into(),
        x_label: "generator step".into(),
        y_label: "exact W1 to the data (median over seeds)".into(),
        ..Default::default()
    };
    let mut modes_panel = Panel {
        title: "modes captured".into(),
        x_label: "generator step".into(),
        y_label: "modes of 8 (median over seeds)".into(),
        y_range: Some((0.0, 8.5)),
        ..Default::default()
    };
    let mut est_panel = Panel {
        title: "the critic's estimate vs quality".into(),
        x_label: "exact W1 to the data (each seed and step)".into(),
        y_label: "WGAN-GP: W estimate; GAN: ln 4 - loss_D".into(),
        ..Default::default()
    };
    let mut floors = vec![];
    println!("| loss | seeds | step | median W1 | W1 per seed | median modes | estimate (median) |");
    println!("| --- | --- | ---: | ---: | --- | ---: | ---: |");
    let mut corr = vec![];
    for (k, (loss, title)) in losses.iter().enumerate() {
        let recs = load(&dir.join(format!("ours-8gaussians-{loss}.jsonl")));
        if recs.is_empty() {
            eprintln!("no records for {loss} in {}", dir.display());
            continue;
        }
        // Only seeds that reached the last step, so every point of a curve is a median over the
        // same seeds (a run cut short by the time budget leaves a partial seed behind).
        let last = recs.iter().map(|r| r.step).max().unwrap();
        let done: std::collections::BTreeSet<u64> = recs.iter().filter(|r| r.step == last).map(|r| r.seed).collect();
        let recs: Vec<Rec> = recs.into_iter().filter(|r| done.contains(&r.seed)).collect();
        let estimate = |r: &Rec| if *loss == "wgan-gp" { r.w_est } else { 4f64.ln() - r.critic_loss };
        let mut by_step: BTreeMap<u64, Vec<&Rec>> = BTreeMap::new();
        for r in &recs {
            by_step.entry(r.step).or_default().push(r);
        }
        let seeds: std::collections::BTreeSet<u64> = recs.iter().map(|r| r.seed).collect();
        let seeds = seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
        let mut w1s = vec![];
        let mut modes = vec![];
        for (&step, rs) in &by_step {
            let w1 = median(rs.iter().map(|r| r.w1).collect());
            let m = median(rs.iter().map(|r| r.modes).collect());
            let e = median(rs.iter().map(|r| estimate(r)).collect());
            w1s.push((step as f64, w1));
            modes.push((step as f64, m));
            let per: Vec<String> = rs.iter().map(|r| format!("{:.3}", r.w1)).collect();
            println!("| {title} | {seeds} | {step} | {w1:.3} | {} | {m} | {e:.3} |", per.join(" "));
        }
        floors.extend(recs.iter().map(|r| r.floor));
        w1_panel.series.push(Series::new(*title, w1s, k, Style::Line));
        modes_panel.series.push(Series::new(*title, modes, k, Style::Line));
        let (x, y): (Vec<f64>, Vec<f64>) = recs.iter().map(|r| (r.w1, estimate(r))).unzip();
        let rho = spearman(&x, &y);
        corr.push(format!("{title}: Spearman ρ(estimate, W1) = {rho:.2} over {} points", x.len()));
        est_panel.series.push(Series::new(
            format!("{title} (rho {rho:.2})"),
            x.into_iter().zip(y).collect(),
            k,
            Style::Points,
        ));
    }
    let floor = median(floors);
    if let Some(steps) = w1_panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).reduce(f64::max) {
        w1_panel.series.push(Series {
            name: format!("floor: real vs real ({floor:.3})"),
            points: vec![(0.0, floor), (steps, floor)],
            color: [127, 127, 127],
            style: Style::Thin,
        });
    }
    println!();
    for c in &corr {
        println!("- {c}");
    }
    println!("- W1 floor (2048 real vs 2048 real points, median over seeds): {floor:.3}");
    write_panels(
        &out,
        "8 gaussians: WGAN-GP beside the standard GAN (wgan, CPU)",
        &[w1_panel, modes_panel, est_panel],
        460,
        380,
    )
    .unwrap();
    eprintln!("wrote {}", out.display());
}
