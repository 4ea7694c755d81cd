use std::time::Instant;
use wgan::metrics::{
    linear_sum_assignment, mode_coverage, points_from_f32, wasserstein1_exact, wasserstein1_exact_f32, Coverage,
};
use wgan::rng::HostRng;
use wgan::toy::ToyDataset;

// ---------------------------------------------------------------- toy data

#[test]
fn names_round_trip() {
    for d in ToyDataset::ALL {
        assert_eq!(d.to_string().parse::<ToyDataset>().unwrap(), d);
    }
    assert_eq!("8gaussians".parse::<ToyDataset>().unwrap(), ToyDataset::EightGaussians);
    assert_eq!("25gaussians".parse::<ToyDataset>().unwrap(), ToyDataset::TwentyFiveGaussians);
    assert_eq!("swissroll".parse::<ToyDataset>().unwrap(), ToyDataset::SwissRoll);
    let e = "9gaussians".parse::<ToyDataset>().unwrap_err();
    assert!(e.to_string().contains("9gaussians") && e.to_string().contains("swissroll"), "{e}");
}

#[test]
fn sampling_is_deterministic_and_prefix_stable() {
    for d in ToyDataset::ALL {
        let a = d.sample(&mut HostRng::new(5, 1), 300);
        let b = d.sample(&mut HostRng::new(5, 1), 300);
        let c = d.sample(&mut HostRng::new(6, 1), 300);
        let p = d.sample(&mut HostRng::new(5, 1), 100);
        assert_eq!(a.len(), 600);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(&a[..200], &p[..]);
        assert!(a.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn mode_geometry_matches_gan_toy() {
    let (m8, s8) = ToyDataset::EightGaussians.modes().unwrap();
    assert_eq!(m8.len(), 8);
    assert!((s8 - 0.02 / 1.414).abs() < 1e-12);
    for m in &m8 {
        let r = (m[0] * m[0] + m[1] * m[1]).sqrt();
        assert!((r - 2.0 / 1.414).abs() < 1e-12, "radius {r}");
    }
    assert!(m8.iter().any(|m| (m[0] - 2.0 / 1.414).abs() < 1e-12 && m[1].abs() < 1e-12));
    let d = 2.0 / 2f64.sqrt() / 1.414;
    assert!(m8.iter().any(|m| (m[0] + d).abs() < 1e-12 && (m[1] - d).abs() < 1e-12));

    let (m25, s25) = ToyDataset::TwentyFiveGaussians.modes().unwrap();
    assert_eq!(m25.len(), 25);
    assert!((s25 - 0.05 / 2.828).abs() < 1e-12);
    for x in [-4.0, -2.0, 0.0, 2.0, 4.0] {
        for y in [-4.0, -2.0, 0.0, 2.0, 4.0] {
            let c = [x / 2.828, y / 2.828];
            assert!(m25.iter().any(|m| (m[0] - c[0]).abs() < 1e-12 && (m[1] - c[1]).abs() < 1e-12));
        }
    }
    assert!(ToyDataset::SwissRoll.modes().is_none());
}

fn check_mixture(d: ToyDataset) {
    let n = 40_000;
    let xs = d.sample(&mut HostRng::new(11, 0), n);
    let (modes, sigma) = d.modes().unwrap();
    let mut counts = vec![0usize; modes.len()];
    let mut sum = [0.0f64; 2];
    let mut sq = 0.0f64;
    for p in points_from_f32(&xs) {
        let (k, _) = modes
            .iter()
            .enumerate()
            .map(|(k, m)| (k, (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2)))
            .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap())
            .unwrap();
        counts[k] += 1;
        let m = modes[k];
        sum[0] += p[0] - m[0];
        sum[1] += p[1] - m[1];
        sq += (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2);
    }
    // Offsets from the nearest centre: mean 0, per-coordinate std sigma.
    let std = (sq / (2.0 * n as f64)).sqrt();
    assert!((std / sigma - 1.0).abs() < 0.03, "{d}: std {std} vs sigma {sigma}");
    assert!(sum[0].abs() / (n as f64) < 0.05 * sigma && sum[1].abs() / (n as f64) < 0.05 * sigma);
    // Centres chosen uniformly.
    let expect = n as f64 / modes.len() as f64;
    for &c in &counts {
        assert!((c as f64 - expect).abs() < 5.0 * expect.sqrt(), "{d}: counts {counts:?}");
    }
    let cov = mode_coverage(&xs, &modes, sigma);
    assert_eq!(cov.modes_captured, modes.len());
    assert_eq!(cov.n_modes, modes.len());
    // P(radius ≤ 3σ) = 1 − exp(−4.5) ≈ 0.9889.
    assert!((cov.high_quality_fraction - (1.0 - (-4.5f64).exp())).abs() < 0.004, "{d}: {cov:?}");
}

#[test]
fn eight_gaussians_statistics() {
    check_mixture(ToyDataset::EightGaussians);
}

#[test]
fn twenty_five_gaussians_statistics() {
    check_mixture(ToyDataset::TwentyFiveGaussians);
}

#[test]
fn swiss_roll_statistics() {
    let n = 40_000;
    let xs = ToyDataset::SwissRoll.sample(&mut HostRng::new(3, 0), n);
    let pts = points_from_f32(&xs);
    // Undo the scaling: the radius is t (plus noise), with t uniform on [1.5π, 4.5π].
    let radii: Vec<f64> = pts.iter().map(|p| 7.5 * (p[0] * p[0] + p[1] * p[1]).sqrt()).collect();
    let mean_r = radii.iter().sum::<f64>() / n as f64;
    assert!((mean_r - 3.0 * std::f64::consts::PI).abs() < 0.06, "mean radius {mean_r}");
    let (lo, hi) = (1.5 * std::f64::consts::PI - 1.5, 4.5 * std::f64::consts::PI + 1.5);
    assert!(radii.iter().all(|&r| r > lo && r < hi));
    // Spiral structure: the angle of each point matches its radius (angle ≡ t mod 2π) up to noise.
    let mut close = 0usize;
    for (p, &r) in pts.iter().zip(&radii) {
        let ang = p[1].atan2(p[0]);
        let expected = [(r).cos(), (r).sin()];
        let dot = ang.cos() * expected[0] + ang.sin() * expected[1];
        if dot > 0.8 {
            close += 1;
        }
    }
    assert!(close as f64 > 0.9 * n as f64, "only {close} points on the spiral");
    // Noise 0.25 per coordinate before scaling: the spread across the spiral arm.
    let resid: f64 = pts
        .iter()
        .map(|p| {
            let (x, z) = (7.5 * p[0], 7.5 * p[1]);
            let r = (x * x + z * z).sqrt();
            // distance to the noiseless curve point with the same angle on the nearest winding
            let ang = z.atan2(x);
            let mut best = f64::INFINITY;
            for k in -1..4 {
                let t = ang + 2.0 * std::f64::consts::PI * k as f64;
                best = best.min((r - t).abs());
            }
            best * best
        })
        .sum::<f64>()
        / n as f64;
    assert!(resid.sqrt() > 0.15 && resid.sqrt() < 0.4, "radial spread {}", resid.sqrt());
}

// ---------------------------------------------------------------- assignment / W1

fn brute_force(cost: &[f64], n: usize) -> f64 {
    fn rec(cost: &[f64], n: usize, row: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
        if row == n {
            *best = best.min(acc);
            return;
        }
        for j in 0..n {
            if !used[j] {
                used[j] = true;
                rec(cost, n, row + 1, used, acc + cost[row * n + j], best);
                used[j] = false;
            }
        }
    }
    let mut best = f64::INFINITY;
    rec(cost, n, 0, &mut vec![false; n], 0.0, &mut best);
    best
}

fn is_permutation(p: &[usize]) -> bool {
    let mut seen = vec![false; p.len()];
    p.iter().all(|&j| j < p.len() && !std::mem::replace(&mut seen[j], true))
}

fn random_points(rng: &mut HostRng, n: usize, scale: f64) -> Vec<[f64; 2]> {
    (0..n).map(|_| [scale * rng.normal(), scale * rng.normal()]).collect()
}

#[test]
fn assignment_matches_brute_force_on_arbitrary_costs() {
    let mut rng = HostRng::new(42, 0);
    for n in 1..=7 {
        for trial in 0..30 {
            // Small integer costs give many ties; real costs give none.
            let cost: Vec<f64> = (0..n * n)
                .map(|_| if trial % 2 == 0 { rng.below(4) as f64 } else { rng.uniform() * 10.0 - 3.0 })
                .collect();
            let p = linear_sum_assignment(&cost, n);
            assert!(is_permutation(&p), "{p:?}");
            let got: f64 = p.iter().enumerate().map(|(i, &j)| cost[i * n + j]).sum();
            let want = brute_force(&cost, n);
            assert!((got - want).abs() < 1e-9, "n={n} trial={trial}: {got} vs {want}");
        }
    }
}

#[test]
fn w1_matches_brute_force_on_points() {
    let mut rng = HostRng::new(7, 2);
    for n in 1..=7 {
        for _ in 0..20 {
            let a = random_points(&mut rng, n, 1.0);
            let b = random_points(&mut rng, n, 1.5);
            let cost: Vec<f64> = a
                .iter()
                .flat_map(|p| b.iter().map(move |q| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()))
                .collect();
            let want = brute_force(&cost, n) / n as f64;
            let got = wasserstein1_exact(&a, &b);
            assert!((got - want).abs() < 1e-12, "n={n}: {got} vs {want}");
            assert!((wasserstein1_exact(&b, &a) - got).abs() < 1e-12, "not symmetric");
        }
    }
}

#[test]
fn w1_of_shifted_copy_is_the_shift_length() {
    let mut rng = HostRng::new(9, 0);
    let n = 300;
    let a = random_points(&mut rng, n, 1.0);
    let shift = [0.3, -0.4];
    // Shuffle b so the identity pairing is not handed to the solver.
    let mut b: Vec<[f64; 2]> = a.iter().map(|p| [p[0] + shift[0], p[1] + shift[1]]).collect();
    for i in (1..n).rev() {
        b.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let w = wasserstein1_exact(&a, &b);
    assert!((w - 0.5).abs() < 1e-9, "W1 {w}");
    // Identical sets (shuffled): zero.
    let mut c = a.clone();
    c.reverse();
    assert!(wasserstein1_exact(&a, &c).abs() < 1e-12);
    // f32 front end.
    let af: Vec<f32> = vec![0.0, 0.0, 1.0, 0.0];
    let bf: Vec<f32> = vec![4.0, 4.0, 3.0, 4.0];
    assert!((wasserstein1_exact_f32(&af, &bf) - 5.0).abs() < 1e-9);
    assert_eq!(wasserstein1_exact(&[], &[]), 0.0);
}

#[test]
fn w1_bounds_on_toy_data() {
    // Jensen lower bound ‖mean a − mean b‖ ≤ W1 ≤ cost of the index pairing.
    let n = 256;
    let a = points_from_f32(&ToyDataset::EightGaussians.sample(&mut HostRng::new(1, 0), n));
    let b = points_from_f32(&ToyDataset::SwissRoll.sample(&mut HostRng::new(1, 1), n));
    let w = wasserstein1_exact(&a, &b);
    let mean = |s: &[[f64; 2]]| {
        let m = s.iter().fold([0.0, 0.0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
        [m[0] / n as f64, m[1] / n as f64]
    };
    let (ma, mb) = (mean(&a), mean(&b));
    let lower = ((ma[0] - mb[0]).powi(2) + (ma[1] - mb[1]).powi(2)).sqrt();
    let upper =
        a.iter().zip(&b).map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()).sum::<f64>() / n as f64;
    assert!(lower <= w + 1e-12 && w <= upper + 1e-12, "{lower} <= {w} <= {upper}");
    // Two samples of the same distribution are much closer than two different distributions.
    let a2 = points_from_f32(&ToyDataset::EightGaussians.sample(&mut HostRng::new(2, 0), n));
    let same = wasserstein1_exact(&a, &a2);
    assert!(same < 0.5 * w, "same-distribution W1 {same} vs different {w}");
}

#[test]
fn w1_at_2048_points_is_fast() {
    let n = 2048;
    let a = ToyDataset::TwentyFiveGaussians.sample(&mut HostRng::new(21, 0), n);
    let b = ToyDataset::SwissRoll.sample(&mut HostRng::new(21, 1), n);
    let t = Instant::now();
    let w = wasserstein1_exact_f32(&a, &b);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("W1 at n=2048: {w:.6} in {secs:.2}s");
    assert!(w.is_finite() && w > 0.0);
    // A few seconds on one core; generous for a loaded shared machine.
    assert!(secs < 20.0, "took {secs:.1}s");
}

// ---------------------------------------------------------------- coverage

#[test]
fn coverage_counts_modes_and_quality() {
    let modes = vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];
    let sigma = 0.1; // 3σ = 0.3
    #[rustfmt::skip]
    let samples: Vec<f32> = vec![
        0.05, 0.0,   // mode 0, good
        0.0, 0.29,   // mode 0, good (just inside 3σ)
        1.2, 0.2,    // mode 1, distance √0.08 ≈ 0.283: good
        0.5, 0.5,    // far from everything
        0.0, 0.62,   // nearest is mode 2 but 0.38 away: not good
    ];
    let c = mode_coverage(&samples, &modes, sigma);
    assert_eq!(c, Coverage { high_quality_fraction: 3.0 / 5.0, modes_captured: 2, n_modes: 3 });
    // Collapse to one mode.
    let collapsed: Vec<f32> = (0..100).flat_map(|_| [1.0f32, 0.0]).collect();
    let c = mode_coverage(&collapsed, &modes, sigma);
    assert_eq!((c.high_quality_fraction, c.modes_captured), (1.0, 1));
    let c = mode_coverage(&[], &modes, sigma);
    assert_eq!((c.high_quality_fraction, c.modes_captured, c.n_modes), (0.0, 0, 3));
}
