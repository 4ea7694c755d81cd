//! The element types the CPU backend computes in: f32 for training, f64 for gradient checks.

use std::fmt::Debug;

pub trait Elem: Copy + Send + Sync + Debug + PartialOrd + Default + 'static {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn tanh(self) -> Self;
    fn powf(self, p: Self) -> Self;
    /// C = alpha·A·B + beta·C with arbitrary strides.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize, k: usize, n: usize, alpha: Self,
        a: *const Self, rsa: isize, csa: isize,
        b: *const Self, rsb: isize, csb: isize,
        beta: Self, c: *mut Self, rsc: isize, csc: isize,
    );
}

macro_rules! impl_elem {
    ($t:ty) => {
        impl Elem for $t {
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            unsafe fn gemm(
                m: usize, k: usize, n: usize, alpha: Self,
                a: *const Self, rsa: isize, csa: isize,
                b: *const Self, rsb: isize, csb: isize,
                beta: Self, c: *mut Self, rsc: isize, csc: isize,
            ) {
                // The gemm crate computes dst = α·dst + β·lhs·rhs, with column strides first.
                let threads = if m * n * k >= 1 << 16 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
                gemm::gemm(m, n, k, c, csc, rsc, beta != 0.0, a, csa, rsa, b, csb, rsb, beta, alpha, false, false, false, threads)
            }
        }
    };
}

impl_elem!(f32);
impl_elem!(f64);
