//! Parallel drivers: rayon only above a size threshold, fixed chunking so results are deterministic.

use super::Elem;
use crate::backend::{numel, Group};
use rayon::prelude::*;
use std::any::Any;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Below this many elements an op runs on the calling thread.
pub(crate) const PAR_MIN: usize = 32 * 1024;
/// Work unit of the parallel loops (elements).
pub(crate) const CHUNK: usize = 16 * 1024;

thread_local! {
    /// Scratch buffers (im2col matrices and the like) kept between calls on this thread.
    static SCRATCH: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Scratch buffers kept per thread (a convolution task holds up to three at once).
const SCRATCH_KEEP: usize = 6;

/// A scratch buffer of at least `n` elements with unspecified contents; hand it back with
/// [`give_scratch`] so the next call skips the allocation and page faults.
///
/// Takes the smallest kept buffer that fits; when none fits, the largest kept one grows to `n`
/// (rather than a new one being allocated), so the kept buffers only grow and, once each has
/// reached the largest request made of it, no request allocates or page-faults again (a fresh
/// buffer per convolution task cost the training step 50,000 page faults).
pub(crate) fn take_scratch<T: Elem>(n: usize) -> Vec<T> {
    let found = SCRATCH.with(|p| {
        let mut p = p.borrow_mut();
        let mut fit: Option<(usize, usize)> = None;
        let mut largest: Option<(usize, usize)> = None;
        for (i, b) in p.iter().enumerate() {
            if let Some(v) = b.downcast_ref::<Vec<T>>() {
                if v.len() >= n && fit.map_or(true, |(l, _)| v.len() < l) {
                    fit = Some((v.len(), i));
                }
                if largest.map_or(true, |(l, _)| v.len() > l) {
                    largest = Some((v.len(), i));
                }
            }
        }
        let (_, pos) = fit.or(largest)?;
        p.swap_remove(pos).downcast::<Vec<T>>().ok()
    });
    match found {
        Some(mut v) => {
            if v.len() < n {
                v.resize(n, T::ZERO);
            }
            *v
        }
        None => zeros(n),
    }
}

pub(crate) fn give_scratch<T: Elem>(v: Vec<T>) {
    if v.is_empty() {
        return;
    }
    SCRATCH.with(|p| {
        let mut p = p.borrow_mut();
        p.push(Box::new(v));
        if p.len() > SCRATCH_KEEP {
            // Drop the smallest buffer.
            let sizes: Vec<usize> = p.iter().map(|b| scratch_bytes(b.as_ref())).collect();
            let (i, _) = sizes.iter().enumerate().min_by_key(|(_, s)| **s).unwrap();
            p.swap_remove(i);
        }
    });
}

fn scratch_bytes(b: &dyn Any) -> usize {
    if let Some(v) = b.downcast_ref::<Vec<f32>>() {
        v.len() * 4
    } else if let Some(v) = b.downcast_ref::<Vec<f64>>() {
        v.len() * 8
    } else {
        0
    }
}

/// A zero-filled output buffer.
pub(crate) fn zeros<T: Elem>(n: usize) -> Vec<T> {
    vec![T::ZERO; n]
}

/// A new buffer of `n` elements filled by `f(start, chunk)` over chunks (in parallel when large).
/// `f` must write every element of its chunk; the buffer is not zeroed first.
pub(crate) fn build<T: Elem>(n: usize, f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    if n < PAR_MIN {
        f(0, spare)
    } else {
        spare.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| f(c * CHUNK, o));
    }
    // SAFETY: every caller's `f` writes each element of the chunk it is given, and the chunks
    // cover 0..n; should `f` panic the length stays 0.
    unsafe { out.set_len(n) };
    out
}

/// A group reduction seen as a 3-D layout [outer, groups, inner]: flat element i is in group
/// (i / inner) % groups. All = [1, 1, n]; Sample = [1, N, n/N]; Channel = [n/(C·inner), C, inner].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub n: usize,
    pub outer: usize,
    pub groups: usize,
    pub inner: usize,
}

impl Layout {
    pub fn new(shape: &[usize], group: Group) -> Self {
        let n = numel(shape);
        let (groups, inner) = match group {
            Group::All => (1, n),
            Group::Sample => (shape[0], n.checked_div(shape[0]).unwrap_or(0)),
            Group::Channel => {
                assert!(shape.len() >= 2, "Group::Channel needs a tensor of rank >= 2, got {shape:?}");
                (shape[1], crate::backend::inner(shape))
            }
        };
        let outer = n.checked_div(groups * inner).unwrap_or(0);
        Layout { n, outer, groups, inner }
    }

    /// Elements per group (as f64, 1 for an empty layout so that means stay finite).
    pub fn group_size(&self) -> f64 {
        self.n.checked_div(self.groups).unwrap_or(1).max(1) as f64
    }

    /// Splits the flat range [start, end) into runs and calls `f(g, lo, hi, seq)`: with `seq` false
    /// every element of the run is in group g; with `seq` true (inner = 1) element lo + j is in
    /// group g + j.
    #[inline(always)]
    pub fn runs(&self, start: usize, end: usize, mut f: impl FnMut(usize, usize, usize, bool)) {
        if start >= end {
            return;
        }
        if self.inner == 1 && self.groups > 1 {
            let mut pos = start;
            while pos < end {
                let g = pos % self.groups;
                let e = (pos + self.groups - g).min(end);
                f(g, pos, e, true);
                pos = e;
            }
            return;
        }
        let mut blk = start / self.inner;
        let mut g = blk % self.groups;
        let mut pos = start;
        while pos < end {
            let e = ((blk + 1) * self.inner).min(end);
            f(g, pos, e, false);
            pos = e;
            blk += 1;
            g += 1;
            if g == self.groups {
                g = 0;
            }
        }
    }

    /// A new buffer with out[i] = f([in₀[i], in₁[i], …], params[group(i)]).
    pub fn build<T: Elem, P: Copy + Sync, const M: usize>(
        &self,
        inputs: [&[T]; M],
        params: &[P],
        f: impl Fn([T; M], P) -> T + Sync,
    ) -> Vec<T> {
        assert_eq!(params.len(), self.groups);
        assert!(inputs.iter().all(|x| x.len() == self.n));
        build(self.n, |s, o| {
            self.runs(s, s + o.len(), |g, a, b, seq| {
                let o = &mut o[a - s..b - s];
                let ins: [&[T]; M] = std::array::from_fn(|m| &inputs[m][a..b]);
                if seq {
                    let ps = &params[g..g + (b - a)];
                    for (j, o) in o.iter_mut().enumerate() {
                        o.write(f(std::array::from_fn(|m| ins[m][j]), ps[j]));
                    }
                } else {
                    let p = params[g];
                    for (j, o) in o.iter_mut().enumerate() {
                        o.write(f(std::array::from_fn(|m| ins[m][j]), p));
                    }
                }
            })
        })
    }

    /// Per-group sums of `f(i, g)` over the elements; accumulated in f64 over fixed
    /// chunks (whole rows when outer > 1) reduced in order, so the result does not depend on timing.
    ///
    /// `f([in₀[i], in₁[i], …], g)` is the contribution of element i, in group g.
    pub fn reduce<T: Elem, const M: usize, const K: usize>(
        &self,
        inputs: [&[T]; M],
        f: impl Fn([T; M], usize) -> [f64; K] + Sync,
    ) -> Vec<[f64; K]> {
        assert!(inputs.iter().all(|x| x.len() == self.n));
        let mut out = vec![[0.0; K]; self.groups];
        if self.n == 0 {
            return out;
        }
        let unit = if self.outer > 1 {
            self.groups * self.inner
        } else if self.groups > 1 {
            self.inner
        } else {
            1
        };
        let clen = (CHUNK / unit).max(1) * unit;
        let nchunks = self.n.div_ceil(clen);
        let partial = |c: usize| -> (usize, Vec<[f64; K]>) {
            let (lo, hi) = (c * clen, ((c + 1) * clen).min(self.n));
            let (base, size) = if self.outer > 1 {
                (0, self.groups)
            } else {
                (lo / self.inner, (hi - 1) / self.inner - lo / self.inner + 1)
            };
            let mut acc = vec![[0.0; K]; size];
            self.runs(lo, hi, |g, a, b, seq| {
                let ins: [&[T]; M] = std::array::from_fn(|m| &inputs[m][a..b]);
                let len = b - a;
                if seq {
                    for (j, d) in acc[g - base..g - base + len].iter_mut().enumerate() {
                        let s = f(std::array::from_fn(|m| ins[m][j]), g + j);
                        for k in 0..K {
                            d[k] += s[k];
                        }
                    }
                } else {
                    // Independent lanes so the f64 adds pipeline (and vectorise).
                    const L: usize = 8;
                    let mut d = [[0.0; K]; L];
                    let mut i = 0;
                    while i + L <= len {
                        for (l, dl) in d.iter_mut().enumerate() {
                            let s = f(std::array::from_fn(|m| ins[m][i + l]), g);
                            for k in 0..K {
                                dl[k] += s[k];
                            }
                        }
                        i += L;
                    }
                    for (l, i) in (i..len).enumerate() {
                        let s = f(std::array::from_fn(|m| ins[m][i]), g);
                        for k in 0..K {
                            d[l][k] += s[k];
                        }
                    }
                    for dl in &d {
                        for k in 0..K {
                            acc[g - base][k] += dl[k];
                        }
                    }
                }
            });
            (base, acc)
        };
        let parts: Vec<(usize, Vec<[f64; K]>)> = if self.n < PAR_MIN {
            (0..nchunks).map(partial).collect()
        } else {
            (0..nchunks).into_par_iter().map(partial).collect()
        };
        for (base, acc) in parts {
            for (j, s) in acc.iter().enumerate() {
                for k in 0..K {
                    out[base + j][k] += s[k];
                }
            }
        }
        out
    }
}
