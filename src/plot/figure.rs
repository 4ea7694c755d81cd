//! Figures of several panels on one canvas: [`Panel`] draws curves or point clouds with axes,
//! numbered ticks, axis labels and a legend into a rectangle of a [`Canvas`], so a comparison
//! (e.g. sample quality of several losses over training) reads as one picture.

use super::canvas::{text_height, text_width, Canvas, Clip, Mask, Rgb, WHITE};
use super::{format_tick, nice_ticks, SERIES_COLORS};

const AXIS_COLOR: Rgb = [60, 60, 60];
const GRID_COLOR: Rgb = [225, 225, 225];
const TEXT_COLOR: Rgb = [30, 30, 30];

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A 2-pixel line through the points in order, with a `+` at each.
    Line,
    /// A thin line, e.g. a reference level.
    Thin,
    /// A `+` at each point, no line.
    Points,
}

/// One named series with its colour.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: Rgb,
    pub style: Style,
}

impl Series {
    /// A series coloured by its index in [`SERIES_COLORS`].
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, index: usize, style: Style) -> Self {
        Series { name: name.into(), points, color: SERIES_COLORS[index % SERIES_COLORS.len()], style }
    }
}

/// A panel: a title, axis labels, optional fixed y range, and its series.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Fixed (lo, hi) of the y axis; None fits the data.
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
}

impl Panel {
    /// Draws the panel into the rectangle (x0, y0)–(x1, y1) of `cv`.
    pub fn draw(&self, cv: &mut Canvas, x0: i64, y0: i64, x1: i64, y1: i64) {
        let ok = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let pts = || self.series.iter().flat_map(|s| s.points.iter().filter(ok));
        let fold = |f: fn(&(f64, f64)) -> f64| {
            pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(f(p)), b.max(f(p))))
        };
        let (mut lx, mut hx) = fold(|p| p.0);
        let (mut ly, mut hy) = fold(|p| p.1);
        if !lx.is_finite() {
            (lx, hx, ly, hy) = (0.0, 1.0, 0.0, 1.0);
        }
        if let Some((a, b)) = self.y_range {
            (ly, hy) = (a, b);
        } else {
            let pad = 0.05 * (hy - ly).max(1e-9);
            (ly, hy) = (ly - pad, hy + pad);
        }
        if hx <= lx {
            (lx, hx) = (lx - 0.5, hx + 0.5);
        }
        if hy <= ly {
            (ly, hy) = (ly - 0.5, hy + 0.5);
        }
        let (yticks, ystep) = nice_ticks(ly, hy, 5);
        let (xticks, xstep) = nice_ticks(lx, hx, 6);
        let ylabels: Vec<String> = yticks.iter().map(|&v| format_tick(v, ystep)).collect();
        let label_w = ylabels.iter().map(|s| text_width(s, 1)).max().unwrap_or(0);
        // plot area inside the panel: room for the title, tick labels and axis labels
        let (l, t) = (x0 + label_w + 26, y0 + 46);
        let (r, b) = (x1 - 10, y1 - 34);
        let (pw, ph) = ((r - l) as f64, (b - t) as f64);
        let map = |x: f64, y: f64| (l as f64 + (x - lx) / (hx - lx) * pw, t as f64 + (hy - y) / (hy - ly) * ph);
        let clip = Clip { x0: l, y0: t, x1: r, y1: b };
        for (&v, label) in yticks.iter().zip(&ylabels) {
            if v < ly || v > hy {
                continue;
            }
            let py = map(lx, v).1.floor() as i64;
            cv.fill_rect(l, py, r, py + 1, GRID_COLOR);
            cv.fill_rect(l - 5, py, l, py + 1, AXIS_COLOR);
            cv.text(l - 8 - text_width(label, 1), py - 3, label, 1, TEXT_COLOR);
        }
        for &v in &xticks {
            let px = map(v, ly).0.floor() as i64;
            let label = format_tick(v, xstep);
            cv.fill_rect(px, t, px + 1, b, GRID_COLOR);
            cv.fill_rect(px, b, px + 1, b + 5, AXIS_COLOR);
            cv.text(px - text_width(&label, 1) / 2, b + 9, &label, 1, TEXT_COLOR);
        }
        cv.rect_outline(l - 1, t - 1, r, b, AXIS_COLOR);
        cv.text(l + (r - l - text_width(&self.title, 2)) / 2, y0 + 8, &self.title, 2, TEXT_COLOR);
        cv.text(l + (r - l - text_width(&self.x_label, 1)) / 2, b + 22, &self.x_label, 1, TEXT_COLOR);
        // the y label above the axis, left-aligned with the panel (the font does not rotate)
        cv.text(x0 + 4, t - 12, &self.y_label, 1, TEXT_COLOR);

        let (w, h) = (cv.width, cv.height);
        for s in &self.series {
            let mut mask = Mask::new(w, h);
            let width = if s.style == Style::Thin { 1.0 } else { 2.0 };
            if s.style != Style::Points {
                let mut prev: Option<(f64, f64)> = None;
                for &(x, y) in &s.points {
                    if !(x.is_finite() && y.is_finite()) {
                        prev = None;
                        continue;
                    }
                    let q = map(x, y);
                    let p0 = prev.unwrap_or(q);
                    mask.segment(p0.0, p0.1, q.0, q.1, width, clip);
                    prev = Some(q);
                }
                cv.paint_mask(&mask, s.color, 1.0);
            }
            if s.style != Style::Thin {
                for &(x, y) in s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
                    let q = map(x, y);
                    cv.plus(q.0, q.1, 3, s.color, clip);
                }
            }
        }
        // legend, top right inside the plot area
        if !self.series.is_empty() {
            let lw = self.series.iter().map(|s| text_width(&s.name, 1)).max().unwrap_or(0) + 36;
            let lh = self.series.len() as i64 * 14 + 8;
            let (lx0, ly0) = (r - lw - 6, t + 6);
            cv.fill_rect(lx0, ly0, lx0 + lw, ly0 + lh, WHITE);
            cv.rect_outline(lx0, ly0, lx0 + lw - 1, ly0 + lh - 1, GRID_COLOR);
            for (k, s) in self.series.iter().enumerate() {
                let yy = ly0 + 5 + k as i64 * 14 + text_height(1) / 2;
                cv.fill_rect(lx0 + 6, yy - 1, lx0 + 26, yy + 1, s.color);
                cv.text(lx0 + 32, yy - 3, &s.name, 1, TEXT_COLOR);
            }
        }
    }
}

/// Panels side by side, each `panel_w` × `panel_h` pixels, under an optional title line; written
/// atomically as a PNG.
pub fn write_panels(
    path: &std::path::Path,
    title: &str,
    panels: &[Panel],
    panel_w: u32,
    panel_h: u32,
) -> crate::Result<()> {
    let top = if title.is_empty() { 0 } else { 30 };
    let n = panels.len().max(1) as u32;
    let mut cv = Canvas::new(panel_w * n, panel_h + top, WHITE);
    if !title.is_empty() {
        cv.text((cv.width as i64 - text_width(title, 2)) / 2, 10, title, 2, TEXT_COLOR);
    }
    for (i, p) in panels.iter().enumerate() {
        let x0 = i as i64 * panel_w as i64;
        p.draw(&mut cv, x0, top as i64, x0 + panel_w as i64, (top + panel_h) as i64);
    }
    cv.save_png(path)
}
