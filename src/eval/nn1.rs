//! The 1-nearest-neighbour two-sample test (Lopez-Paz & Oquab 2017; used to judge GANs by Xu et al.
//! 2018): pool two equal-size sets, label each point by its set, and classify every point by its
//! nearest other point (leave-one-out, Euclidean distance). 0.5 means the sets cannot be told
//! apart; 1.0 means they are separated (a collapsed or memorising generator pushes it towards 1).

/// Leave-one-out 1-NN accuracy on the pooled rows of x and y (length d each); both sets are cut to
/// the size of the smaller so that 0.5 is chance. Ties go to the lower index.
pub fn one_nn_accuracy(x: &[f64], y: &[f64], d: usize) -> f64 {
    let n = (x.len() / d).min(y.len() / d);
    assert!(n >= 1, "1-NN needs at least one row per set");
    let rows: Vec<&[f64]> = x.chunks_exact(d).take(n).chain(y.chunks_exact(d).take(n)).collect();
    let total = rows.len();
    let correct: usize = (0..total)
        .map(|i| {
            let mut best = (f64::INFINITY, usize::MAX);
            for j in 0..total {
                if j == i {
                    continue;
                }
                let dist: f64 = rows[i].iter().zip(rows[j]).map(|(a, b)| (a - b) * (a - b)).sum();
                if dist < best.0 {
                    best = (dist, j);
                }
            }
            usize::from((best.1 < n) == (i < n))
        })
        .sum();
    correct as f64 / total as f64
}
