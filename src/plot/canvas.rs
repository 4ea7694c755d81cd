//! A small RGB raster with anti-aliased strokes, markers, a built-in 5×7 bitmap font and atomic PNG
//! output. No font files or drawing libraries are needed.

use crate::error::{Context, Result};
use crate::fsutil::atomic_write;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::path::Path;

pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];

/// Encodes 8-bit pixels as PNG and writes them atomically. `channels` is 1 (grey) or 3 (RGB).
pub fn write_png(path: &Path, width: u32, height: u32, channels: u8, pixels: &[u8]) -> Result<()> {
    let buf = encode_png(width, height, channels, pixels).context(|| format!("cannot encode {}", path.display()))?;
    atomic_write(path, &buf)
}

/// Encodes 8-bit pixels as PNG bytes (the same bytes for the same pixels). `channels` is 1 (grey)
/// or 3 (RGB).
pub fn encode_png(width: u32, height: u32, channels: u8, pixels: &[u8]) -> Result<Vec<u8>> {
    let color = if channels == 1 { ExtendedColorType::L8 } else { ExtendedColorType::Rgb8 };
    let mut buf = Vec::new();
    PngEncoder::new(&mut buf).write_image(pixels, width, height, color).context(|| "PNG encoder")?;
    Ok(buf)
}

/// An RGB image being drawn, origin at the top left.
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub px: Vec<Rgb>,
}

/// A clip rectangle in pixels: x in [x0, x1), y in [y0, y1).
#[derive(Clone, Copy, Debug)]
pub struct Clip {
    pub x0: i64,
    pub y0: i64,
    pub x1: i64,
    pub y1: i64,
}

impl Canvas {
    pub fn new(width: u32, height: u32, bg: Rgb) -> Self {
        Canvas { width, height, px: vec![bg; (width as usize) * (height as usize)] }
    }

    pub fn full_clip(&self) -> Clip {
        Clip { x0: 0, y0: 0, x1: self.width as i64, y1: self.height as i64 }
    }

    #[inline]
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            None
        } else {
            Some(self.px[y as usize * self.width as usize + x as usize])
        }
    }

    #[inline]
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && x < self.width as i64 && y < self.height as i64 {
            self.px[y as usize * self.width as usize + x as usize] = c;
        }
    }

    /// Mixes `c` over the pixel with opacity `a` in [0, 1].
    #[inline]
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb, a: f64) {
        if let Some(old) = self.get(x, y) {
            self.set(x, y, mix(old, c, a));
        }
    }

    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.max(0)..y1.min(self.height as i64) {
            for x in x0.max(0)..x1.min(self.width as i64) {
                self.set(x, y, c);
            }
        }
    }

    /// A one-pixel rectangle outline, corners included.
    pub fn rect_outline(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        self.fill_rect(x0, y0, x1 + 1, y0 + 1, c);
        self.fill_rect(x0, y1, x1 + 1, y1 + 1, c);
        self.fill_rect(x0, y0, x0 + 1, y1 + 1, c);
        self.fill_rect(x1, y0, x1 + 1, y1 + 1, c);
    }

    /// A `+` marker of half-size `arm` centred on the pixel containing (x, y), opaque.
    pub fn plus(&mut self, x: f64, y: f64, arm: i64, c: Rgb, clip: Clip) {
        let (cx, cy) = (x.floor() as i64, y.floor() as i64);
        for d in -arm..=arm {
            for (px, py) in [(cx + d, cy), (cx, cy + d)] {
                if px >= clip.x0 && px < clip.x1 && py >= clip.y0 && py < clip.y1 {
                    self.set(px, py, c);
                }
            }
        }
    }

    /// Composites a coverage mask in `c` with overall opacity `alpha`.
    pub fn paint_mask(&mut self, mask: &Mask, c: Rgb, alpha: f64) {
        for (i, &m) in mask.a.iter().enumerate() {
            if m > 0.0 {
                let p = &mut self.px[i];
                *p = mix(*p, c, alpha * m as f64);
            }
        }
    }

    /// Text in the built-in 5×7 font, each font pixel drawn as a `scale`×`scale` block, top-left at (x, y).
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        let mut cx = x;
        for ch in s.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let (px, py) = (cx + col * scale, y + row as i64 * scale);
                        self.fill_rect(px, py, px + scale, py + scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
    }

    /// Writes the canvas as an RGB PNG, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let bytes: Vec<u8> = self.px.iter().flat_map(|p| p.iter().copied()).collect();
        write_png(path, self.width, self.height, 3, &bytes)
    }

    /// The canvas as RGB PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let bytes: Vec<u8> = self.px.iter().flat_map(|p| p.iter().copied()).collect();
        encode_png(self.width, self.height, 3, &bytes)
    }
}

/// Width in pixels of `s` in the built-in font at `scale`.
pub fn text_width(s: &str, scale: i64) -> i64 {
    let n = s.chars().count() as i64;
    if n == 0 {
        0
    } else {
        (6 * n - 1) * scale
    }
}

/// Height in pixels of a line of text at `scale`.
pub fn text_height(scale: i64) -> i64 {
    7 * scale
}

/// Linear mix of two colours: a = 0 gives `a0`, a = 1 gives `b`.
#[inline]
pub fn mix(a0: Rgb, b: Rgb, a: f64) -> Rgb {
    let a = a.clamp(0.0, 1.0);
    let f = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * a).round() as u8;
    [f(a0[0], b[0]), f(a0[1], b[1]), f(a0[2], b[2])]
}

/// Per-pixel coverage in [0, 1], combined by maximum so that overlapping strokes of one polyline
/// do not darken at their joints.
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub a: Vec<f32>,
}

impl Mask {
    pub fn new(width: u32, height: u32) -> Self {
        Mask { width, height, a: vec![0.0; width as usize * height as usize] }
    }

    /// An anti-aliased segment of the given width (pixels), clipped to `clip`. Pixel (i, j) covers
    /// [i, i+1) × [j, j+1); coverage falls off linearly over one pixel at the stroke edge.
    pub fn segment(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64, clip: Clip) {
        let r = width / 2.0;
        let pad = r + 1.0;
        let bx0 = ((x0.min(x1) - pad).floor() as i64).max(clip.x0).max(0);
        let bx1 = ((x0.max(x1) + pad).ceil() as i64).min(clip.x1).min(self.width as i64);
        let by0 = ((y0.min(y1) - pad).floor() as i64).max(clip.y0).max(0);
        let by1 = ((y0.max(y1) + pad).ceil() as i64).min(clip.y1).min(self.height as i64);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        for py in by0..by1 {
            for px in bx0..bx1 {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                let t = if len2 > 0.0 { (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
                let (qx, qy) = (x0 + t * dx - cx, y0 + t * dy - cy);
                let d = (qx * qx + qy * qy).sqrt();
                let cov = (r + 0.5 - d).clamp(0.0, 1.0) as f32;
                if cov > 0.0 {
                    let i = py as usize * self.width as usize + px as usize;
                    if cov > self.a[i] {
                        self.a[i] = cov;
                    }
                }
            }
        }
    }
}

/// The 5×7 glyph of `ch`: seven rows, bit 4 is the leftmost column. Lower-case letters use the
/// capitals; characters without a glyph are drawn as `?`.
pub fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        '*' => [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '|' => [0x04; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}
