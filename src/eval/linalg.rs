//! The little dense linear algebra the metrics need, in f64: means and covariances of feature
//! sets, and the eigenvalues of a symmetric matrix by cyclic Jacobi rotations (exact to rounding
//! for the small matrices here, d ≤ a few hundred, and free of any dependency).

/// Row-major d×d matrix.
pub type Mat = Vec<f64>;

/// Mean (length d) and unbiased covariance (d×d, divisor n − 1) of n rows of length d.
pub fn mean_cov(x: &[f64], n: usize, d: usize) -> (Vec<f64>, Mat) {
    assert_eq!(x.len(), n * d);
    assert!(n >= 2, "a covariance needs at least two rows");
    let mut mu = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for (m, v) in mu.iter_mut().zip(row) {
            *m += v;
        }
    }
    mu.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0.0; d * d];
    let mut c = vec![0.0; d];
    for row in x.chunks_exact(d) {
        for j in 0..d {
            c[j] = row[j] - mu[j];
        }
        for i in 0..d {
            let ci = c[i];
            let out = &mut cov[i * d..(i + 1) * d];
            for j in i..d {
                out[j] += ci * c[j];
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / (n as f64 - 1.0);
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mu, cov)
}

/// C = A·B for d×d matrices.
pub fn matmul(a: &[f64], b: &[f64], d: usize) -> Mat {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..d {
                c[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    c
}

/// Eigen-decomposition of a symmetric d×d matrix: (eigenvalues, eigenvectors as the columns of a
/// row-major matrix V), A = V·diag(λ)·Vᵀ. Cyclic Jacobi: each sweep zeroes every off-diagonal
/// element once by a plane rotation; it stops when the off-diagonal mass is below 1e-22 of the
/// total (quadratic convergence: about 6-10 sweeps).
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Mat) {
    assert_eq!(a.len(), d * d);
    let mut m = a.to_vec();
    // Symmetrise: callers pass matrices that are symmetric up to rounding.
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * d + j].powi(2))
            .sum();
        if off <= 1e-22 * total || off == 0.0 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * d + p], m[q * d + q]);
                // The rotation angle that zeroes A[p][q] (Golub & Van Loan, Algorithm 8.4.1).
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (m[k * d + p], m[k * d + q]);
                    m[k * d + p] = c * akp - s * akq;
                    m[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (m[p * d + k], m[q * d + k]);
                    m[p * d + k] = c * apk - s * aqk;
                    m[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| m[i * d + i]).collect(), v)
}

/// The symmetric square root of a symmetric positive semi-definite matrix, V·diag(√max(λ,0))·Vᵀ
/// (negative eigenvalues from rounding are clamped to zero).
pub fn sqrt_psd(a: &[f64], d: usize) -> Mat {
    let (lam, v) = symmetric_eigen(a, d);
    let mut out = vec![0.0; d * d];
    for k in 0..d {
        let s = lam[k].max(0.0).sqrt();
        if s == 0.0 {
            continue;
        }
        for i in 0..d {
            let vik = v[i * d + k] * s;
            for j in 0..d {
                out[i * d + j] += vik * v[j * d + k];
            }
        }
    }
    out
}

/// tr(√(√A·B·√A)) for symmetric PSD A and B: the cross term of the Fréchet distance. √A·B·√A is
/// symmetric PSD and has the same eigenvalues as A·B, so its trace root is tr((A·B)^½).
pub fn trace_sqrt_product(a: &[f64], b: &[f64], d: usize) -> f64 {
    let ra = sqrt_psd(a, d);
    let m = matmul(&matmul(&ra, b, d), &ra, d);
    let (lam, _) = symmetric_eigen(&m, d);
    lam.iter().map(|l| l.max(0.0).sqrt()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_reconstructs_and_sqrt_squares_back() {
        let d = 7;
        let mut rng = crate::rng::HostRng::new(1, 2);
        let x: Vec<f64> = (0..40 * d).map(|_| rng.normal()).collect();
        let (_, c) = mean_cov(&x, 40, d);
        let (lam, v) = symmetric_eigen(&c, d);
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| v[i * d + k] * lam[k] * v[j * d + k]).sum();
                assert!((r - c[i * d + j]).abs() < 1e-12, "V·Λ·Vᵀ differs at ({i},{j})");
            }
        }
        let s = sqrt_psd(&c, d);
        let s2 = matmul(&s, &s, d);
        for (a, b) in s2.iter().zip(&c) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
