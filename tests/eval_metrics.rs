//! The image metrics of `wgan eval` (src/eval/) against closed forms and against numpy on fixed
//! inputs: FID of known Gaussians, KID (unbiased cubic-kernel MMD²), IS and Mode Score of known
//! posteriors, the 1-NN two-sample test on separable, identical and same-distribution sets, class
//! coverage and its KL; and the feature-network layout (save, load, errors).

use std::collections::BTreeMap;
use std::process::Command;
use wgan::eval::features::{FeatureNet, LayerKind};
use wgan::eval::fid::{fid, frechet_distance, Gaussian};
use wgan::eval::{kid, linalg, nn1, scores};
use wgan::rng::HostRng;

fn gaussian_rows(n: usize, d: usize, shift: f64, scale: f64, seed: u64) -> Vec<f64> {
    let mut r = HostRng::new(seed, 5);
    (0..n * d).map(|_| shift + scale * r.normal()).collect()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs expected {b}");
}

/// A random rotation (Gram–Schmidt of a seeded Gaussian matrix), row-major.
fn rotation(d: usize, seed: u64) -> Vec<f64> {
    let mut q = gaussian_rows(d, d, 0.0, 1.0, seed);
    for i in 0..d {
        for j in 0..i {
            let dot: f64 = (0..d).map(|k| q[i * d + k] * q[j * d + k]).sum();
            for k in 0..d {
                q[i * d + k] -= dot * q[j * d + k];
            }
        }
        let norm: f64 = (0..d).map(|k| q[i * d + k].powi(2)).sum::<f64>().sqrt();
        (0..d).for_each(|k| q[i * d + k] /= norm);
    }
    q
}

/// Q·diag(l)·Qᵀ
fn with_spectrum(q: &[f64], l: &[f64]) -> Vec<f64> {
    let d = l.len();
    let mut m = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            m[i * d + j] = (0..d).map(|k| q[k * d + i] * l[k] * q[k * d + j]).sum();
        }
    }
    m
}

#[test]
fn fid_of_known_gaussians_matches_the_closed_form() {
    let d = 6;
    // Covariances that share eigenvectors: tr(Σ₁Σ₂)^½ = Σ √(λᵢμᵢ), so
    // FID = ‖μ₁ − μ₂‖² + Σ (√λᵢ − √μᵢ)².
    let q = rotation(d, 11);
    let (l1, l2) = (vec![1.0, 2.0, 0.5, 3.0, 0.1, 1.5], vec![4.0, 0.5, 0.5, 1.0, 0.2, 2.5]);
    let a = Gaussian { mean: vec![0.0, 1.0, -2.0, 0.5, 0.0, 3.0], cov: with_spectrum(&q, &l1), d };
    let b = Gaussian { mean: vec![1.0, 1.0, 0.0, 0.5, -1.0, 3.0], cov: with_spectrum(&q, &l2), d };
    let dm: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let expected = dm + l1.iter().zip(&l2).map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2)).sum::<f64>();
    close(frechet_distance(&a, &b), expected, 1e-10, "FID of commuting Gaussians");
    close(frechet_distance(&a, &a), 0.0, 1e-10, "FID of a Gaussian with itself");
    // 1-D: (μ₁ − μ₂)² + (σ₁ − σ₂)².
    let g = |m: f64, v: f64| Gaussian { mean: vec![m], cov: vec![v], d: 1 };
    close(frechet_distance(&g(1.0, 4.0), &g(-2.0, 9.0)), 9.0 + 1.0, 1e-12, "1-D FID");
    // Isotropic in d: d·(σ₁ − σ₂)²; FID is symmetric.
    let iso = |s: f64| Gaussian { mean: vec![0.0; d], cov: with_spectrum(&q, &vec![s * s; d]), d };
    close(frechet_distance(&iso(1.0), &iso(3.0)), d as f64 * 4.0, 1e-10, "isotropic FID");
    let c = Gaussian { mean: vec![0.0; d], cov: with_spectrum(&rotation(d, 12), &l2), d };
    close(frechet_distance(&a, &c), frechet_distance(&c, &a), 1e-9, "FID symmetry (non-commuting)");
}

#[test]
fn fid_of_samples_converges_to_the_population_value() {
    // N(0, I) vs N(0.5·1, 4·I) in d = 4: FID = 4·0.25 + 4·(2 − 1)² = 5.
    let (n, d) = (20_000, 4);
    let x = gaussian_rows(n, d, 0.0, 1.0, 1);
    let y = gaussian_rows(n, d, 0.5, 2.0, 2);
    close(fid(&x, n, &y, n, d), 5.0, 0.03, "sample FID");
}

#[test]
fn jacobi_eigenvalues_of_a_known_spectrum() {
    let d = 9;
    let l: Vec<f64> = (0..d).map(|i| (i as f64 - 2.5) * 0.7).collect();
    let (mut got, _) = linalg::symmetric_eigen(&with_spectrum(&rotation(d, 3), &l), d);
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    for (g, e) in got.iter().zip(&l) {
        close(*g, *e, 1e-11, "eigenvalue");
    }
}

#[test]
fn inception_and_mode_scores_of_known_posteriors() {
    let k = 10;
    // One-hot posteriors, every class equally often: IS = k.
    let one_hot: Vec<f64> = (0..100).flat_map(|i| (0..k).map(move |j| if j == i % k { 1.0 } else { 0.0 })).collect();
    close(scores::inception_score(&one_hot, k), k as f64, 1e-12, "IS of balanced one-hot posteriors");
    let uniform = vec![1.0 / k as f64; k];
    close(scores::mode_score(&one_hot, &uniform, k), k as f64, 1e-12, "Mode Score against a uniform real marginal");
    // Uniform posteriors: IS = 1. All mass on one class: IS = 1, and Mode Score = 1/k·... = exp(−KL(δ‖U)) = 1/k.
    let flat = vec![1.0 / k as f64; 50 * k];
    close(scores::inception_score(&flat, k), 1.0, 1e-12, "IS of uniform posteriors");
    let one: Vec<f64> = (0..50).flat_map(|_| (0..k).map(|j| if j == 3 { 1.0 } else { 0.0 })).collect();
    close(scores::inception_score(&one, k), 1.0, 1e-12, "IS of a collapsed generator");
    close(scores::mode_score(&one, &uniform, k), 1.0 / k as f64, 1e-12, "Mode Score of a collapsed generator");
    // Balanced one-hot over 4 of 10 classes: IS = 4.
    let four: Vec<f64> = (0..40).flat_map(|i| (0..k).map(move |j| if j == i % 4 { 1.0 } else { 0.0 })).collect();
    close(scores::inception_score(&four, k), 4.0, 1e-12, "IS of one-hot posteriors over 4 classes");
}

#[test]
fn coverage_and_class_kl_of_known_histograms() {
    let real = vec![0.1; 10];
    let (c, kl) = scores::coverage(&real, &real);
    assert_eq!(c, 10);
    close(kl, 0.0, 1e-15, "KL of equal histograms");
    // Half the mass on two classes: KL = 2 · 0.5 ln(0.5/0.1) = ln 5.
    let mut two = vec![0.0; 10];
    two[2] = 0.5;
    two[7] = 0.5;
    let (c, kl) = scores::coverage(&two, &real);
    assert_eq!(c, 2);
    close(kl, 5f64.ln(), 1e-12, "KL of a two-class histogram");
    // The 2 % threshold: 0.019 does not count, 0.02 does.
    let mut h = vec![0.0; 10];
    h[0] = 0.019;
    h[1] = 0.02;
    h[2] = 1.0 - 0.039;
    assert_eq!(scores::coverage(&h, &real).0, 2);
    // The histogram of argmax classes.
    let p = vec![0.1, 0.7, 0.2, 0.6, 0.3, 0.1, 0.2, 0.5, 0.3, 0.0, 0.1, 0.9];
    assert_eq!(scores::class_histogram(&p, 3), vec![0.25, 0.5, 0.25]);
}

#[test]
fn one_nn_two_sample_accuracy() {
    let (n, d) = (300, 5);
    let x = gaussian_rows(n, d, 0.0, 1.0, 1);
    // Separable sets: every point's nearest neighbour is on its own side.
    let far = gaussian_rows(n, d, 50.0, 1.0, 2);
    assert_eq!(nn1::one_nn_accuracy(&x, &far, d), 1.0);
    // A copied set: every point's nearest neighbour is its twin on the other side.
    assert_eq!(nn1::one_nn_accuracy(&x, &x, d), 0.0);
    // Two draws of one distribution: chance (0.5 ± 3 standard errors of 600 Bernoulli trials).
    let y = gaussian_rows(n, d, 0.0, 1.0, 3);
    let acc = nn1::one_nn_accuracy(&x, &y, d);
    assert!((acc - 0.5).abs() < 3.0 * (0.25f64 / 600.0).sqrt() + 0.02, "1-NN of two draws of one Gaussian: {acc}");
}

#[test]
fn kid_of_identical_distributions_is_about_zero_and_grows_with_a_shift() {
    let (n, d) = (400, 8);
    let x = gaussian_rows(n, d, 0.0, 1.0, 1);
    let y = gaussian_rows(n, d, 0.0, 1.0, 2);
    let (m, s) = kid::kid(&x, &y, d, 0);
    assert!(m.abs() < 3.0 * s.max(1e-3), "KID of two draws of one Gaussian: {m} ± {s}");
    let (m0, _) = kid::kid(&x, &x, d, 0);
    assert!(m0.abs() < 0.05, "KID of a set with itself: {m0}");
    let z = gaussian_rows(n, d, 0.5, 1.0, 3);
    let (ms, ss) = kid::kid(&x, &z, d, 0);
    assert!(ms > 5.0 * ss && ms > 0.05, "KID of shifted sets: {ms} ± {ss}");
}

fn numpy() -> bool {
    let ok = Command::new("python3").args(["-c", "import numpy"]).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("WGAN_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "WGAN_REQUIRE_PYTHON=1 but python3 with numpy is not available"
        );
        eprintln!("skipped: python3 with numpy not available");
    }
    ok
}

/// Runs a numpy program that reads x.npy and y.npy from `dir` and prints numbers.
fn numpy_values(dir: &std::path::Path, program: &str) -> Vec<f64> {
    let o = Command::new("python3").arg("-c").arg(program).current_dir(dir).output().unwrap();
    assert!(o.status.success(), "python3 failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).split_whitespace().map(|v| v.parse().unwrap()).collect()
}

#[test]
fn mmd_fid_and_scores_agree_with_numpy() {
    if !numpy() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgan-eval-numpy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (m, n, d) = (60, 45, 7);
    let x = gaussian_rows(m, d, 0.0, 1.0, 7);
    let y = gaussian_rows(n, d, 0.3, 1.3, 8);
    let f32s = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    // f32 on disk; the Rust side uses the same rounded values.
    let (xr, yr): (Vec<f64>, Vec<f64>) =
        (f32s(&x).iter().map(|&a| a as f64).collect(), f32s(&y).iter().map(|&a| a as f64).collect());
    wgan::eval::export::write_npy(&dir.join("x.npy"), &f32s(&x), &[m, d]).unwrap();
    wgan::eval::export::write_npy(&dir.join("y.npy"), &f32s(&y), &[n, d]).unwrap();
    let got = numpy_values(
        &dir,
        r#"
import numpy as np
x = np.load("x.npy").astype(np.float64); y = np.load("y.npy").astype(np.float64)
d = x.shape[1]
k = lambda a, b: (a @ b.T / d + 1) ** 3
kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
m, n = len(x), len(y)
mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
mu1, mu2 = x.mean(0), y.mean(0)
s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
w, v = np.linalg.eigh(s1)
r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
cross = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross
# posteriors: softmax of the first 4 columns
def sm(a):
    e = np.exp(a[:, :4] - a[:, :4].max(1, keepdims=True)); return e / e.sum(1, keepdims=True)
p, q = sm(x), sm(y)
py, qy = p.mean(0), q.mean(0)
kl = (p * np.log(p / py)).sum(1).mean()
IS = np.exp(kl)
MS = np.exp(kl - (py * np.log(py / qy)).sum())
print(mmd, fid, IS, MS)
"#,
    );
    close(kid::mmd2_unbiased(&xr, &yr, d), got[0], 1e-9, "unbiased MMD² vs numpy");
    close(fid(&xr, m, &yr, n, d), got[1], 1e-9, "FID vs numpy");
    let sm = |v: &[f64], rows: usize| -> Vec<f64> {
        (0..rows).flat_map(|i| wgan::eval::features::softmax(&v[i * d..i * d + 4])).collect()
    };
    let (p, q) = (sm(&xr, m), sm(&yr, n));
    close(scores::inception_score(&p, 4), got[2], 1e-10, "IS vs numpy");
    close(scores::mode_score(&p, &scores::marginal(&q, 4), 4), got[3], 1e-10, "Mode Score vs numpy");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn feature_network_layout_round_trips_and_bad_files_get_clear_errors() {
    let dir = std::env::temp_dir().join(format!("wgan-eval-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The embedded classifier is itself a file in the layout.
    let net = wgan::eval::mnist::embedded_classifier().unwrap();
    assert_eq!((net.input, net.feature_dim(), net.classes()), ((1, 28, 28), 32, 10));
    let p = dir.join("net.safetensors");
    net.save(&p, &BTreeMap::new()).unwrap();
    let back = FeatureNet::load(&p).unwrap();
    assert_eq!((back.layers.clone(), back.params.clone()), (net.layers.clone(), net.params.clone()));
    // A linear layer that does not fit the activation before it.
    let mut bad = FeatureNet::new(
        (1, 8, 8),
        vec![LayerKind::Linear { inp: 64, out: 5 }, LayerKind::Linear { inp: 5, out: 3 }],
        "x",
    )
    .unwrap();
    bad.layers[1] = LayerKind::Linear { inp: 6, out: 3 };
    bad.params.extend([0.0; 3]);
    bad.save(&p, &BTreeMap::new()).unwrap();
    let e = FeatureNet::load(&p).unwrap_err().to_string();
    assert!(e.contains("net.safetensors") && e.contains("layer 1") && e.contains("6 inputs"), "{e}");
    // No input metadata.
    let t = vec![wgan::checkpoint::NamedTensor::f32("layers.0.weight", vec![2, 3], vec![0.0; 6])];
    wgan::checkpoint::write_safetensors(&p, &t, &BTreeMap::new()).unwrap();
    let e = FeatureNet::load(&p).unwrap_err().to_string();
    assert!(e.contains("\"input\"") && e.contains("C,H,W"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_embedded_classifier_is_accurate_on_held_out_digits() {
    let be = wgan::backend::cpu::Cpu::<f32>::new();
    let net = wgan::eval::mnist::embedded_classifier().unwrap();
    let (digits, labels) = wgan::eval::mnist::embedded_subset(wgan::eval::mnist::HELD_OUT);
    let acc = wgan::eval::mnist::accuracy(&be, &net, &digits, &labels);
    let recorded = wgan::eval::mnist::embedded_accuracy().unwrap();
    assert!(acc > 0.95, "held-out accuracy {acc}");
    close(acc, recorded, 1e-4, "accuracy recorded in the weights' metadata");
}

#[test]
fn classifier_training_is_deterministic_on_the_cpu() {
    // One epoch, twice: the same seed gives the same weights bit for bit (the committed weights
    // are reproducible), and one epoch already classifies most held-out digits.
    let be = wgan::backend::cpu::Cpu::<f32>::new();
    let s = wgan::eval::mnist::ClassifierTraining { epochs: 1, ..Default::default() };
    let (a, acc) = wgan::eval::mnist::train_classifier(&be, &s, |_| {}).unwrap();
    let (b, _) = wgan::eval::mnist::train_classifier(&be, &s, |_| {}).unwrap();
    assert!(a.params == b.params, "two trainings with one seed differ");
    assert!(acc > 0.7, "held-out accuracy after one epoch: {acc}");
    let (c, _) =
        wgan::eval::mnist::train_classifier(&be, &wgan::eval::mnist::ClassifierTraining { seed: 1, ..s }, |_| {})
            .unwrap();
    assert!(a.params != c.params, "another seed gives the same weights");
}
