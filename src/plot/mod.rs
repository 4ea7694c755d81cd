//! PNG figures, drawn with the `image` crate's encoder and nothing else (a built-in 5×7 bitmap font
//! writes the numbers), each written atomically:
//!
//! * [`toy_figure`]: the WGAN-GP paper's toy figure — the critic's value as a filled contour map with
//!   contour lines and a colour bar, real points as orange `+`, generated points as green `+`.
//! * [`line_plot`]: curves over training steps (e.g. the critic's Wasserstein estimate, as in the
//!   WGAN paper), with axes, numbered ticks, a legend, and light smoothing of long noisy series.
//! * [`image_grid`]: a batch of NCHW images in [−1, 1] tiled with 2-pixel padding, grey or RGB.

pub mod canvas;
pub mod figure;

use crate::bail;
use crate::error::Result;
use canvas::{mix, text_height, text_width, Canvas, Clip, Mask, Rgb, WHITE};
use std::path::Path;

/// Colour of real points in [`toy_figure`] (the paper's orange).
pub const REAL_COLOR: Rgb = [255, 140, 0];
/// Colour of generated points in [`toy_figure`] (the paper's green, darkened to stand out on the map).
pub const FAKE_COLOR: Rgb = [0, 128, 0];
/// Colours given to the series of [`line_plot`], in order (matplotlib's tab10).
pub const SERIES_COLORS: [Rgb; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];
/// Padding between and around the tiles of [`image_grid`], in pixels.
pub const GRID_PADDING: usize = 2;

const AXIS_COLOR: Rgb = [60, 60, 60];
const GRID_COLOR: Rgb = [225, 225, 225];
const TEXT_COLOR: Rgb = [30, 30, 30];

// ------------------------------------------------------------------------------------------ ticks

/// About `target` "nice" tick values (multiples of 1, 2 or 5 × 10ᵏ) within [lo, hi], and their step.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = m * mag;
    let first = (lo / step - 1e-9).ceil();
    let mut ticks = Vec::new();
    let mut k = first;
    while k * step <= hi + 1e-9 * step && ticks.len() < 1000 {
        ticks.push(k * step);
        k += 1.0;
    }
    (ticks, step)
}

/// A tick label for `v` on an axis whose ticks are `step` apart: just enough decimals, scientific
/// notation for very large or small steps, and never `-0`.
pub fn format_tick(v: f64, step: f64) -> String {
    if v.abs() < step * 1e-6 {
        return "0".to_string();
    }
    if v.abs() >= 1e6 || step < 1e-4 {
        return format!("{v:.1e}");
    }
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

// ------------------------------------------------------------------------------------------ colour map

/// Viridis at t ∈ [0, 1] (piecewise linear through eleven samples of matplotlib's table).
pub fn viridis(t: f64) -> Rgb {
    const V: [[f64; 3]; 11] = [
        [68.0, 1.0, 84.0],
        [72.0, 35.0, 116.0],
        [64.0, 67.0, 135.0],
        [52.0, 94.0, 141.0],
        [41.0, 120.0, 142.0],
        [32.0, 144.0, 140.0],
        [34.0, 167.0, 132.0],
        [68.0, 190.0, 112.0],
        [121.0, 209.0, 81.0],
        [189.0, 222.0, 38.0],
        [253.0, 231.0, 37.0],
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * 10.0;
    let i = (t.floor() as usize).min(9);
    let f = t - i as f64;
    let c = |k: usize| (V[i][k] + (V[i + 1][k] - V[i][k]) * f).round() as u8;
    [c(0), c(1), c(2)]
}

// ------------------------------------------------------------------------------------------ toy figure

/// Side of the square plot area of [`toy_figure`], in pixels.
pub const TOY_PLOT_SIZE: u32 = 512;
const TOY_LEFT: u32 = 56;
const TOY_TOP: u32 = 28;
const TOY_RIGHT: u32 = 84;
const TOY_BOTTOM: u32 = 32;
/// (width, height) of the PNG written by [`toy_figure`].
pub const TOY_FIGURE_SIZE: (u32, u32) = (TOY_LEFT + TOY_PLOT_SIZE + TOY_RIGHT, TOY_TOP + TOY_PLOT_SIZE + TOY_BOTTOM);

/// The critic's values on a square grid, for [`toy_figure`]: `values[iy·n + ix]` is the critic at
/// (x, y) = (lo + ix·d, lo + iy·d), d = (hi − lo)/(n − 1) — the order of [`critic_grid_points`].
#[derive(Clone, Copy, Debug)]
pub struct CriticMap<'a> {
    pub values: &'a [f32],
    pub n: usize,
    pub lo: f64,
    pub hi: f64,
}

/// The n×n grid of points (row-major n²×2) at which to evaluate the critic for a [`CriticMap`]:
/// point iy·n + ix is (lo + ix·d, lo + iy·d), d = (hi − lo)/(n − 1).
pub fn critic_grid_points(n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let d = if n > 1 { (hi - lo) / (n - 1) as f64 } else { 0.0 };
    let mut out = Vec::with_capacity(2 * n * n);
    for iy in 0..n {
        for ix in 0..n {
            out.push((lo + ix as f64 * d) as f32);
            out.push((lo + iy as f64 * d) as f32);
        }
    }
    out
}

/// A square plot range (lo, hi) = (−r, r) holding every finite point of `real` (row-major n×2) with
/// a 15 % margin, r rounded up to a multiple of 0.5: (−2, 2) for 8gaussians and 25gaussians,
/// (−2.5, 2.5) for swissroll. (−3, 3), gan_toy.py's range, when there is no finite point.
pub fn toy_plot_range(real: &[f32]) -> (f64, f64) {
    let r = real.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    if r == 0.0 {
        return (-3.0, 3.0);
    }
    let r = ((r * 1.15) / 0.5).ceil().max(1.0) * 0.5;
    (-r, r)
}

/// The pixel (column, row) of data point (x, y) in a [`toy_figure`] over [lo, hi]².
pub fn toy_pixel(x: f64, y: f64, lo: f64, hi: f64) -> (i64, i64) {
    let (px, py) = toy_pixel_f(x, y, lo, hi);
    (px.floor() as i64, py.floor() as i64)
}

fn toy_pixel_f(x: f64, y: f64, lo: f64, hi: f64) -> (f64, f64) {
    let s = TOY_PLOT_SIZE as f64 / (hi - lo);
    (TOY_LEFT as f64 + (x - lo) * s, TOY_TOP as f64 + (hi - y) * s)
}

/// Bilinear interpolation of the critic map at (x, y); NaN outside or where a corner is not finite.
fn critic_at(m: &CriticMap, x: f64, y: f64) -> f64 {
    let n = m.n;
    let gx = (x - m.lo) / (m.hi - m.lo) * (n - 1) as f64;
    let gy = (y - m.lo) / (m.hi - m.lo) * (n - 1) as f64;
    if !(gx >= 0.0 && gy >= 0.0 && gx <= (n - 1) as f64 && gy <= (n - 1) as f64) {
        return f64::NAN;
    }
    let (ix, iy) = ((gx.floor() as usize).min(n - 2), (gy.floor() as usize).min(n - 2));
    let (fx, fy) = (gx - ix as f64, gy - iy as f64);
    let v = |i: usize, j: usize| m.values[j * n + i] as f64;
    let top = v(ix, iy) * (1.0 - fx) + v(ix + 1, iy) * fx;
    let bottom = v(ix, iy + 1) * (1.0 - fx) + v(ix + 1, iy + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

fn check_points(name: &str, xs: &[f32]) -> Result<()> {
    if xs.len() % 2 != 0 {
        bail!("{name} points: buffer length {} is not a multiple of 2 (expected n×2 row-major)", xs.len());
    }
    Ok(())
}

/// The WGAN-GP paper's toy figure: the critic's values (if given) as filled contour bands with
/// contour lines over [lo, hi]² and a colour bar, real points (row-major n×2) as orange `+`,
/// generated points as green `+` drawn over them. Without a critic the range is
/// [`toy_plot_range`]`(real)` and the background white. The PNG is [`TOY_FIGURE_SIZE`] pixels;
/// [`toy_pixel`] maps data to pixels.
pub fn toy_figure(path: &Path, real: &[f32], fake: &[f32], critic: Option<CriticMap>) -> Result<()> {
    toy_figure_canvas(real, fake, critic)?.save_png(path)
}

/// [`toy_figure`] as PNG bytes.
pub fn toy_figure_png(real: &[f32], fake: &[f32], critic: Option<CriticMap>) -> Result<Vec<u8>> {
    toy_figure_canvas(real, fake, critic)?.to_png()
}

fn toy_figure_canvas(real: &[f32], fake: &[f32], critic: Option<CriticMap>) -> Result<Canvas> {
    check_points("real", real)?;
    check_points("generated", fake)?;
    let (lo, hi) = match &critic {
        Some(m) => {
            if m.n < 2 || m.values.len() != m.n * m.n {
                bail!("critic map: {} values for a {}×{} grid (need n ≥ 2 and n² values)", m.values.len(), m.n, m.n);
            }
            if !m.lo.is_finite() || !m.hi.is_finite() || m.hi <= m.lo {
                bail!("critic map: range [{}, {}] is empty or not finite", m.lo, m.hi);
            }
            (m.lo, m.hi)
        }
        None => toy_plot_range(real),
    };
    let (w, h) = TOY_FIGURE_SIZE;
    let mut cv = Canvas::new(w, h, WHITE);
    let (l, t, p) = (TOY_LEFT as i64, TOY_TOP as i64, TOY_PLOT_SIZE as i64);
    let plot_clip = Clip { x0: l, y0: t, x1: l + p, y1: t + p };

    if let Some(m) = &critic {
        draw_critic(&mut cv, m, lo, hi);
    }

    // Axes, ticks and numbers.
    let (ticks, step) = nice_ticks(lo, hi, 6);
    for &v in &ticks {
        let (px, _) = toy_pixel(v, lo, lo, hi);
        let (_, py) = toy_pixel(lo, v, lo, hi);
        let label = format_tick(v, step);
        let px = px.min(l + p - 1);
        cv.fill_rect(px, t + p, px + 1, t + p + 5, AXIS_COLOR);
        cv.text(px - text_width(&label, 1) / 2, t + p + 9, &label, 1, TEXT_COLOR);
        let py = py.min(t + p - 1);
        cv.fill_rect(l - 5, py, l, py + 1, AXIS_COLOR);
        cv.text(l - 8 - text_width(&label, 1), py - 3, &label, 1, TEXT_COLOR);
    }
    cv.rect_outline(l - 1, t - 1, l + p, t + p, AXIS_COLOR);

    // Legend above the plot.
    let mut x = l + 4;
    for (label, c) in [("real", REAL_COLOR), ("generated", FAKE_COLOR)] {
        cv.plus(x as f64 + 3.5, 13.5, 3, c, cv.full_clip());
        cv.text(x + 12, 10, label, 1, TEXT_COLOR);
        x += 12 + text_width(label, 1) + 20;
    }
    if critic.is_some() {
        let label = "critic";
        cv.text(l + p + 16 + 7 - text_width(label, 1) / 2, 10, label, 1, TEXT_COLOR);
    }

    // Points: real first, generated on top, as gan_toy.py does.
    for (xs, c) in [(real, REAL_COLOR), (fake, FAKE_COLOR)] {
        for pt in xs.chunks_exact(2) {
            let (x, y) = (pt[0] as f64, pt[1] as f64);
            if x.is_finite() && y.is_finite() {
                let (px, py) = toy_pixel_f(x, y, lo, hi);
                cv.plus(px, py, 2, c, plot_clip);
            }
        }
    }
    Ok(cv)
}

/// Filled contour bands, contour lines and a colour bar for the critic map.
fn draw_critic(cv: &mut Canvas, m: &CriticMap, lo: f64, hi: f64) {
    let (l, t, p) = (TOY_LEFT as i64, TOY_TOP as i64, TOY_PLOT_SIZE as i64);
    let finite = m.values.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
    let (vmin, vmax) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !vmin.is_finite() {
        return;
    }
    // Band boundaries at nice values strictly inside (vmin, vmax).
    let (levels, step): (Vec<f64>, f64) = if vmax > vmin {
        let (ticks, step) = nice_ticks(vmin, vmax, 12);
        (ticks.into_iter().filter(|&v| v > vmin && v < vmax).collect(), step)
    } else {
        (Vec::new(), 1.0)
    };
    let bands = levels.len() + 1;
    let band_of = |v: f64| levels.iter().take_while(|&&b| b <= v).count();
    let band_fill = |b: usize| mix(viridis((b as f64 + 0.5) / bands as f64), WHITE, 0.45);
    let line_color = |b: usize| mix(viridis(b as f64 / bands as f64), [0, 0, 0], 0.15);

    let side = p as usize;
    let s = (hi - lo) / p as f64;
    let mut band = vec![usize::MAX; side * side];
    for j in 0..side {
        let y = hi - (j as f64 + 0.5) * s;
        for i in 0..side {
            let x = lo + (i as f64 + 0.5) * s;
            let v = critic_at(m, x, y);
            if v.is_finite() {
                band[j * side + i] = band_of(v);
            }
        }
    }
    for j in 0..side {
        for i in 0..side {
            let b = band[j * side + i];
            if b == usize::MAX {
                continue;
            }
            // A contour line where the band changes towards the right or downwards neighbour.
            let right = if i + 1 < side { band[j * side + i + 1] } else { b };
            let down = if j + 1 < side { band[(j + 1) * side + i] } else { b };
            let edge = [right, down].into_iter().filter(|&o| o != usize::MAX && o != b).map(|o| o.max(b)).max();
            let c = match edge {
                Some(upper) => line_color(upper),
                None => band_fill(b),
            };
            cv.set(l + i as i64, t + j as i64, c);
        }
    }

    // Colour bar: vmax at the top, with the band boundaries marked and numbered.
    let (bx, bw) = (l + p + 16, 14i64);
    let span = if vmax > vmin { vmax - vmin } else { 1.0 };
    for r in 0..p {
        let v = vmax - (r as f64 + 0.5) / p as f64 * span;
        cv.fill_rect(bx, t + r, bx + bw, t + r + 1, band_fill(band_of(v)));
    }
    cv.rect_outline(bx - 1, t - 1, bx + bw, t + p, AXIS_COLOR);
    let mut last_label_y: Option<i64> = None;
    let marks: Vec<f64> = if levels.is_empty() { vec![vmin] } else { levels.clone() };
    for &v in marks.iter().rev() {
        let r = t + (((vmax - v) / span) * p as f64).round() as i64;
        let r = r.clamp(t, t + p - 1);
        cv.fill_rect(bx + bw, r, bx + bw + 4, r + 1, AXIS_COLOR);
        if last_label_y.map_or(true, |y| r - y >= 10) {
            cv.text(bx + bw + 7, r - 3, &format_tick(v, step), 1, TEXT_COLOR);
            last_label_y = Some(r);
        }
    }
}

// ------------------------------------------------------------------------------------------ line plot

/// (width, height) of the PNG written by [`line_plot`].
pub const LINE_PLOT_SIZE: (u32, u32) = (800, 480);

/// Centred moving average over 2k+1 points (fewer at the ends), skipping non-finite values.
pub fn smooth(ys: &[f64], k: usize) -> Vec<f64> {
    let n = ys.len();
    let mut pre = vec![(0.0f64, 0usize); n + 1];
    for (i, &y) in ys.iter().enumerate() {
        let (s, c) = pre[i];
        pre[i + 1] = if y.is_finite() { (s + y, c + 1) } else { (s, c) };
    }
    (0..n)
        .map(|i| {
            if !ys[i].is_finite() {
                return f64::NAN;
            }
            let (a, b) = (i.saturating_sub(k), (i + k + 1).min(n));
            let (s, c) = (pre[b].0 - pre[a].0, pre[b].1 - pre[a].1);
            s / c as f64
        })
        .collect()
}

/// Curves of (x, y) points with axes, numbered ticks, grid lines, a legend (top right) and a
/// title, e.g. the critic's Wasserstein estimate against the generator step. Series longer than
/// 200 points are drawn faintly as they are and, on top, smoothed by a centred moving average over
/// about 2 % of their length. Non-finite points break a curve. The PNG is [`LINE_PLOT_SIZE`].
pub fn line_plot<S: AsRef<str>>(path: &Path, series: &[(S, Vec<(f64, f64)>)], title: &str) -> Result<()> {
    line_plot_canvas(series, title, LINE_PLOT_SIZE).save_png(path)
}

/// [`line_plot`]'s drawing, on a canvas of `size` (for figures of several panels).
pub fn line_plot_canvas<S: AsRef<str>>(series: &[(S, Vec<(f64, f64)>)], title: &str, size: (u32, u32)) -> Canvas {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let pts = || series.iter().flat_map(|(_, v)| v.iter().filter(finite));
    let (mut x0, mut x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    if y1 <= y0 {
        let d = if y0 == 0.0 { 1.0 } else { 0.1 * y0.abs() };
        (y0, y1) = (y0 - d, y1 + d);
    }
    let pad = 0.05 * (y1 - y0);
    let (y0, y1) = (y0 - pad, y1 + pad);

    let (w, h) = size;
    let (yticks, ystep) = nice_ticks(y0, y1, 6);
    let (xticks, xstep) = nice_ticks(x0, x1, 8);
    let ylabels: Vec<String> = yticks.iter().map(|&v| format_tick(v, ystep)).collect();
    let label_w = ylabels.iter().map(|s| text_width(s, 1)).max().unwrap_or(0);
    let (l, t) = (label_w + 16, 44i64);
    let (r, b) = (w as i64 - 24, h as i64 - 32);
    let (pw, ph) = ((r - l) as f64, (b - t) as f64);
    let map = |x: f64, y: f64| (l as f64 + (x - x0) / (x1 - x0) * pw, t as f64 + (y1 - y) / (y1 - y0) * ph);

    let mut cv = Canvas::new(w, h, WHITE);
    let clip = Clip { x0: l, y0: t, x1: r, y1: b };
    for (&v, label) in yticks.iter().zip(&ylabels) {
        let py = map(x0, v).1.floor() as i64;
        cv.fill_rect(l, py, r, py + 1, GRID_COLOR);
        cv.fill_rect(l - 5, py, l, py + 1, AXIS_COLOR);
        cv.text(l - 8 - text_width(label, 1), py - 3, label, 1, TEXT_COLOR);
    }
    for &v in &xticks {
        let px = map(v, y0).0.floor() as i64;
        let label = format_tick(v, xstep);
        cv.fill_rect(px, t, px + 1, b, GRID_COLOR);
        cv.fill_rect(px, b, px + 1, b + 5, AXIS_COLOR);
        cv.text(px - text_width(&label, 1) / 2, b + 9, &label, 1, TEXT_COLOR);
    }
    cv.rect_outline(l - 1, t - 1, r, b, AXIS_COLOR);
    cv.text((w as i64 - text_width(title, 2)) / 2, 12, title, 2, TEXT_COLOR);

    for (k, (_, data)) in series.iter().enumerate() {
        let c = SERIES_COLORS[k % SERIES_COLORS.len()];
        let draw = |cv: &mut Canvas, xs: &[(f64, f64)], width: f64, alpha: f64| {
            let mut mask = Mask::new(w, h);
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in xs {
                if !(x.is_finite() && y.is_finite()) {
                    prev = None;
                    continue;
                }
                let q = map(x, y);
                let p0 = prev.unwrap_or(q);
                mask.segment(p0.0, p0.1, q.0, q.1, width, clip);
                prev = Some(q);
            }
            cv.paint_mask(&mask, c, alpha);
        };
        if data.len() > 200 {
            draw(&mut cv, data, 1.0, 0.25);
            let ys: Vec<f64> = data.iter().map(|p| p.1).collect();
            let sm: Vec<(f64, f64)> = data.iter().zip(smooth(&ys, data.len() / 100)).map(|(p, y)| (p.0, y)).collect();
            draw(&mut cv, &sm, 2.0, 1.0);
        } else {
            draw(&mut cv, data, 2.0, 1.0);
        }
    }

    // Legend, top right inside the plot, on a white box.
    if !series.is_empty() {
        let lw = series.iter().map(|(s, _)| text_width(s.as_ref(), 1)).max().unwrap_or(0) + 36;
        let lh = series.len() as i64 * 14 + 8;
        let (lx, ly) = (r - lw - 8, t + 8);
        cv.fill_rect(lx, ly, lx + lw, ly + lh, WHITE);
        cv.rect_outline(lx, ly, lx + lw - 1, ly + lh - 1, GRID_COLOR);
        for (k, (name, _)) in series.iter().enumerate() {
            let c = SERIES_COLORS[k % SERIES_COLORS.len()];
            let yy = ly + 5 + k as i64 * 14 + text_height(1) / 2;
            cv.fill_rect(lx + 6, yy - 1, lx + 26, yy + 1, c);
            cv.text(lx + 32, yy - 3, name.as_ref(), 1, TEXT_COLOR);
        }
    }
    cv
}

// ------------------------------------------------------------------------------------------ image grid

/// Maps a value in [−1, 1] to a byte (clamped; NaN gives 0).
#[inline]
pub fn to_byte(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
    }
}

/// Tiles `n` images (NCHW, values in [−1, 1], c = 1 grey or 3 RGB, h×w pixels) in rows of
/// min(cols, n) with [`GRID_PADDING`] black pixels between and around the tiles, and writes the PNG
/// (grey for c = 1, RGB for c = 3): (cols·(w + 2) + 2) × (rows·(h + 2) + 2) pixels.
pub fn image_grid(path: &Path, images: &[f32], n: usize, c: usize, h: usize, w: usize, cols: usize) -> Result<()> {
    let (gw, gh, px) = image_grid_pixels(images, n, c, h, w, cols)?;
    canvas::write_png(path, gw, gh, c as u8, &px)
}

/// [`image_grid`] as PNG bytes.
pub fn image_grid_png(images: &[f32], n: usize, c: usize, h: usize, w: usize, cols: usize) -> Result<Vec<u8>> {
    let (gw, gh, px) = image_grid_pixels(images, n, c, h, w, cols)?;
    canvas::encode_png(gw, gh, c as u8, &px)
}

/// (width, height, pixels) of an [`image_grid`].
fn image_grid_pixels(
    images: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<(u32, u32, Vec<u8>)> {
    if c != 1 && c != 3 {
        bail!("image grid: {c} channels (expected 1 for grey or 3 for RGB)");
    }
    if n == 0 || h == 0 || w == 0 || cols == 0 {
        bail!("image grid: nothing to draw (n={n}, h={h}, w={w}, cols={cols})");
    }
    if images.len() != n * c * h * w {
        bail!("image grid: {} values for {n}×{c}×{h}×{w} images (expected {})", images.len(), n * c * h * w);
    }
    let cols = cols.min(n);
    let rows = n.div_ceil(cols);
    let p = GRID_PADDING;
    let (gw, gh) = (cols * (w + p) + p, rows * (h + p) + p);
    let mut px = vec![0u8; gw * gh * c];
    for k in 0..n {
        let (ox, oy) = (p + (k % cols) * (w + p), p + (k / cols) * (h + p));
        let img = &images[k * c * h * w..(k + 1) * c * h * w];
        for y in 0..h {
            for x in 0..w {
                let dst = ((oy + y) * gw + ox + x) * c;
                for ch in 0..c {
                    px[dst + ch] = to_byte(img[ch * h * w + y * w + x]);
                }
            }
        }
    }
    Ok((gw as u32, gh as u32, px))
}
