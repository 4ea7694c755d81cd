use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wgan::plot::canvas::{glyph, text_width, Canvas};
use wgan::plot::{
    critic_grid_points, format_tick, image_grid, line_plot, nice_ticks, smooth, toy_figure, toy_pixel, toy_plot_range,
    CriticMap, FAKE_COLOR, LINE_PLOT_SIZE, REAL_COLOR, SERIES_COLORS, TOY_FIGURE_SIZE, TOY_PLOT_SIZE,
};
use wgan::progress::{format_bar, format_eta, format_rate, format_status, format_value, rate, Progress};
use wgan::rng::HostRng;
use wgan::toy::ToyDataset;

fn out(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wgan-plot-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn load_rgb(path: &PathBuf) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

fn pixels_of(img: &image::RgbImage, c: [u8; 3]) -> Vec<(i64, i64)> {
    img.enumerate_pixels().filter(|(_, _, p)| p.0 == c).map(|(x, y, _)| (x as i64, y as i64)).collect()
}

// ------------------------------------------------------------------------------------------ toy figure

#[test]
fn toy_figure_places_points() {
    let real: Vec<f32> = vec![0.5, 0.5, 0.5, 0.5, 1.0, -1.0];
    let fake: Vec<f32> = vec![-0.5, -0.5, f32::NAN, 0.0, 50.0, 50.0];
    let (lo, hi) = toy_plot_range(&real);
    assert_eq!((lo, hi), (-1.5, 1.5));
    let path = out("toy_points.png");
    toy_figure(&path, &real, &fake, None).unwrap();
    let img = load_rgb(&path);
    assert_eq!(img.dimensions(), TOY_FIGURE_SIZE);

    for (x, y, c) in [(0.5, 0.5, REAL_COLOR), (1.0, -1.0, REAL_COLOR), (-0.5, -0.5, FAKE_COLOR)] {
        let (px, py) = toy_pixel(x, y, lo, hi);
        assert_eq!(img.get_pixel(px as u32, py as u32).0, c, "point ({x}, {y}) at pixel ({px}, {py})");
    }
    // Every orange/green pixel in the plot area is on a marker of the right kind (the legend sits
    // above the plot area, the out-of-range fake point is clipped).
    let (_, top) = toy_pixel(0.0, hi, lo, hi);
    let near = |p: (i64, i64), pts: &[(f64, f64)]| {
        pts.iter().any(|&(x, y)| {
            let q = toy_pixel(x, y, lo, hi);
            (p.0 - q.0).abs() <= 3 && (p.1 - q.1).abs() <= 3
        })
    };
    let reals = pixels_of(&img, REAL_COLOR);
    let in_plot: Vec<_> = reals.iter().filter(|p| p.1 >= top).collect();
    assert!(in_plot.len() >= 10, "{} real pixels", in_plot.len());
    assert!(in_plot.iter().all(|&&p| near(p, &[(0.5, 0.5), (1.0, -1.0)])));
    let fakes = pixels_of(&img, FAKE_COLOR);
    assert!(fakes.iter().filter(|p| p.1 >= top).all(|&p| near(p, &[(-0.5, -0.5)])));
    // Legend markers exist above the plot.
    assert!(reals.iter().any(|p| p.1 < top) && fakes.iter().any(|p| p.1 < top));
    // Axis tick labels: dark pixels left of the plot and below it.
    let (left, bottom) = toy_pixel(lo, lo, lo, hi);
    let dark = |x: i64, y: i64| img.get_pixel(x as u32, y as u32).0.iter().all(|&v| v < 100);
    assert!((0..left - 6).any(|x| (top..bottom).any(|y| dark(x, y))));
    assert!((bottom + 6..TOY_FIGURE_SIZE.1 as i64).any(|y| (left..left + 512).any(|x| dark(x, y))));
}

#[test]
fn toy_figure_with_critic_map() {
    let (lo, hi) = (-2.0, 2.0);
    let n = 64;
    let grid = critic_grid_points(n, lo, hi);
    // A critic rising to the right: f(x, y) = x + 0.1 y.
    let values: Vec<f32> = grid.chunks_exact(2).map(|p| p[0] + 0.1 * p[1]).collect();
    let real = ToyDataset::EightGaussians.sample(&mut HostRng::new(1, 0), 256);
    let fake = vec![0.0f32, 0.0];
    let path = out("toy_critic.png");
    toy_figure(&path, &real, &fake, Some(CriticMap { values: &values, n, lo, hi })).unwrap();
    let img = load_rgb(&path);
    assert_eq!(img.dimensions(), TOY_FIGURE_SIZE);

    let at = |x: f64, y: f64| {
        let (px, py) = toy_pixel(x, y, lo, hi);
        img.get_pixel(px as u32, py as u32).0
    };
    // Background is coloured (not white), and differs between low and high critic values.
    let (left, right) = (at(-1.8, 1.6), at(1.8, 1.6));
    assert_ne!(left, [255, 255, 255]);
    assert_ne!(left, right);
    // Bands change along x but barely along y: several colour changes across a row.
    let (_, row) = toy_pixel(0.0, 1.7, lo, hi);
    let (x0, _) = toy_pixel(lo, 0.0, lo, hi);
    let mut changes = 0;
    for x in x0..x0 + TOY_PLOT_SIZE as i64 - 1 {
        if img.get_pixel(x as u32, row as u32) != img.get_pixel(x as u32 + 1, row as u32) {
            changes += 1;
        }
    }
    assert!(changes >= 6, "only {changes} colour changes across a row");
    // Real points drawn over the map, on their modes.
    let (modes, _) = ToyDataset::EightGaussians.modes().unwrap();
    let hits = modes.iter().filter(|m| {
        let (px, py) = toy_pixel(m[0], m[1], lo, hi);
        (-3..=3).any(|d| {
            img.get_pixel((px + d) as u32, py as u32).0 == REAL_COLOR
                || img.get_pixel(px as u32, (py + d) as u32).0 == REAL_COLOR
        })
    });
    assert_eq!(hits.count(), 8);
    assert_eq!(at(0.0, 0.0), FAKE_COLOR);
    // Colour bar right of the plot: top (high values) and bottom differ.
    let bx = toy_pixel(hi, 0.0, lo, hi).0 + 22;
    let (_, ty) = toy_pixel(0.0, hi, lo, hi);
    let (_, by) = toy_pixel(0.0, lo, lo, hi);
    assert_ne!(img.get_pixel(bx as u32, (ty + 3) as u32), img.get_pixel(bx as u32, (by - 3) as u32));
}

#[test]
fn toy_figure_rejects_bad_input() {
    let path = out("toy_bad.png");
    assert!(toy_figure(&path, &[0.0, 1.0, 2.0], &[], None).unwrap_err().to_string().contains("real"));
    let v = vec![0.0f32; 10];
    let e = toy_figure(&path, &[], &[], Some(CriticMap { values: &v, n: 3, lo: -1.0, hi: 1.0 })).unwrap_err();
    assert!(e.to_string().contains("critic"), "{e}");
    let v = vec![0.0f32; 9];
    assert!(toy_figure(&path, &[], &[], Some(CriticMap { values: &v, n: 3, lo: 1.0, hi: 1.0 })).is_err());
    // A constant or non-finite critic is drawn without failing.
    let v = vec![f32::NAN; 9];
    toy_figure(&path, &[], &[], Some(CriticMap { values: &v, n: 3, lo: -1.0, hi: 1.0 })).unwrap();
    let v = vec![2.0f32; 9];
    toy_figure(&path, &[], &[], Some(CriticMap { values: &v, n: 3, lo: -1.0, hi: 1.0 })).unwrap();
}

#[test]
fn plot_ranges_and_grid_order() {
    let r = |d: ToyDataset| toy_plot_range(&d.sample(&mut HostRng::new(4, 0), 5000));
    assert_eq!(r(ToyDataset::EightGaussians), (-2.0, 2.0));
    assert_eq!(r(ToyDataset::TwentyFiveGaussians), (-2.0, 2.0));
    assert_eq!(r(ToyDataset::SwissRoll), (-2.5, 2.5));
    assert_eq!(toy_plot_range(&[]), (-3.0, 3.0));
    let g = critic_grid_points(3, -1.0, 1.0);
    assert_eq!(g, vec![-1.0, -1.0, 0.0, -1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
    // Data y grows upwards in the figure.
    assert!(toy_pixel(0.0, 1.0, -2.0, 2.0).1 < toy_pixel(0.0, -1.0, -2.0, 2.0).1);
    assert!(toy_pixel(1.0, 0.0, -2.0, 2.0).0 > toy_pixel(-1.0, 0.0, -2.0, 2.0).0);
}

// ------------------------------------------------------------------------------------------ line plot

#[test]
fn line_plot_draws_series_where_expected() {
    let up: Vec<(f64, f64)> = (0..=100).map(|i| (i as f64 * 10.0, i as f64 / 100.0)).collect();
    let mut down: Vec<(f64, f64)> = (0..=100).map(|i| (i as f64 * 10.0, 1.0 - i as f64 / 100.0)).collect();
    down[50].1 = f64::NAN;
    let path = out("loss.png");
    line_plot(&path, &[("up", up), ("down", down)], "Wasserstein estimate").unwrap();
    let img = load_rgb(&path);
    assert_eq!(img.dimensions(), LINE_PLOT_SIZE);
    let w = LINE_PLOT_SIZE.0 as i64;
    // Pixels of each series colour, excluding the legend box (top right).
    let series = |c| -> Vec<(i64, i64)> { pixels_of(&img, c).into_iter().filter(|p| p.0 < w - 200).collect() };
    let mean_row = |pts: &[(i64, i64)], x0: i64, x1: i64| {
        let sel: Vec<_> = pts.iter().filter(|p| p.0 >= x0 && p.0 < x1).collect();
        assert!(sel.len() > 20, "too few pixels in [{x0}, {x1})");
        sel.iter().map(|p| p.1 as f64).sum::<f64>() / sel.len() as f64
    };
    let (a, b) = (series(SERIES_COLORS[0]), series(SERIES_COLORS[1]));
    // "up" rises (rows decrease) from left to right, "down" falls.
    assert!(mean_row(&a, 0, 250) > mean_row(&a, 400, 550) + 100.0);
    assert!(mean_row(&b, 0, 250) + 100.0 < mean_row(&b, 400, 550));
    // Title: dark pixels in the top band.
    let dark_top = (0..36u32).flat_map(|y| (0..w as u32).map(move |x| (x, y))).filter(|&(x, y)| {
        let p = img.get_pixel(x, y).0;
        p.iter().all(|&v| v < 80)
    });
    assert!(dark_top.count() > 100);
}

#[test]
fn line_plot_handles_long_empty_and_flat_series() {
    let mut rng = HostRng::new(3, 3);
    let noisy: Vec<(f64, f64)> =
        (0..5000).map(|i| (i as f64, (-(i as f64) / 1000.0).exp() + 0.1 * rng.normal())).collect();
    let path = out("loss_long.png");
    line_plot(&path, &[("W estimate".to_string(), noisy)], "long").unwrap();
    assert_eq!(load_rgb(&path).dimensions(), LINE_PLOT_SIZE);
    let empty: [(&str, Vec<(f64, f64)>); 0] = [];
    line_plot(&out("loss_empty.png"), &empty, "").unwrap();
    line_plot(&out("loss_flat.png"), &[("flat", vec![(5.0, 1.0)])], "flat").unwrap();
    line_plot(&out("loss_nan.png"), &[("nan", vec![(0.0, f64::NAN), (1.0, f64::INFINITY)])], "nan").unwrap();
}

#[test]
fn ticks_and_smoothing() {
    let (t, s) = nice_ticks(0.0, 2000.0, 8);
    assert_eq!(s, 500.0);
    assert_eq!(t.len(), 5);
    assert_eq!(nice_ticks(0.0, 2000.0, 10).1, 200.0);
    assert_eq!(t.first(), Some(&0.0));
    assert_eq!(t.last(), Some(&2000.0));
    let (t, s) = nice_ticks(-0.13, 0.42, 6);
    assert_eq!(s, 0.1);
    assert_eq!(t.len(), 6);
    assert_eq!(format_tick(t[0], s), "-0.1");
    assert_eq!(format_tick(0.30000000000000004, 0.1), "0.3");
    assert_eq!(format_tick(-1e-17, 0.1), "0");
    assert_eq!(format_tick(1500.0, 500.0), "1500");
    assert_eq!(format_tick(0.25, 0.05), "0.25");
    assert_eq!(smooth(&[1.0, 2.0, 3.0, 4.0, 5.0], 1), vec![1.5, 2.0, 3.0, 4.0, 4.5]);
    let s = smooth(&[1.0, f64::NAN, 3.0], 1);
    assert!(s[1].is_nan() && s[0] == 1.0 && s[2] == 3.0);
}

#[test]
fn font_renders_distinct_glyphs() {
    let digits: Vec<[u8; 7]> = "0123456789".chars().map(glyph).collect();
    for i in 0..10 {
        for j in i + 1..10 {
            assert_ne!(digits[i], digits[j]);
        }
    }
    assert_eq!(glyph('a'), glyph('A'));
    assert_eq!(text_width("12", 1), 11);
    let mut c = Canvas::new(20, 10, [255; 3]);
    c.text(1, 1, "1", 1, [0; 3]);
    // '1' has its stem in column 2 on all rows but the base row.
    for row in 0..6 {
        assert_eq!(c.get(3, 1 + row), Some([0; 3]));
    }
    assert_eq!(c.get(1, 1), Some([255; 3]));
}

// ------------------------------------------------------------------------------------------ image grid

#[test]
fn image_grid_rgb_layout() {
    let (n, c, h, w) = (5, 3, 4, 6);
    let mut data = vec![0.0f32; n * c * h * w];
    for k in 0..n {
        for ch in 0..c {
            for i in 0..h * w {
                // Image k, channel ch: constant −1 + 0.1·k + 0.5·ch, and the top-left pixel +1.
                data[((k * c + ch) * h * w) + i] = if i == 0 { 1.0 } else { -1.0 + 0.1 * k as f32 + 0.5 * ch as f32 };
            }
        }
    }
    let path = out("grid_rgb.png");
    image_grid(&path, &data, n, c, h, w, 2).unwrap();
    let img = load_rgb(&path);
    assert_eq!(img.dimensions(), (2 * (w as u32 + 2) + 2, 3 * (h as u32 + 2) + 2));
    let byte = |v: f32| ((v + 1.0) * 127.5).round() as u8;
    for k in 0..n {
        let (ox, oy) = (2 + (k % 2) * (w + 2), 2 + (k / 2) * (h + 2));
        assert_eq!(img.get_pixel(ox as u32, oy as u32).0, [255; 3]);
        let want: Vec<u8> = (0..3).map(|ch| byte(-1.0 + 0.1 * k as f32 + 0.5 * ch as f32)).collect();
        assert_eq!(img.get_pixel((ox + w - 1) as u32, (oy + h - 1) as u32).0.to_vec(), want, "image {k}");
        // Padding left of and above each tile is black.
        assert_eq!(img.get_pixel(ox as u32 - 1, oy as u32).0, [0; 3]);
        assert_eq!(img.get_pixel(ox as u32, oy as u32 - 2).0, [0; 3]);
    }
    // The sixth tile of the 2×3 grid is empty.
    assert_eq!(img.get_pixel((2 + w + 2 + 3) as u32, (2 + 2 * (h + 2) + 2) as u32).0, [0; 3]);
}

#[test]
fn image_grid_grey_and_errors() {
    let (n, h, w) = (3, 2, 2);
    let data: Vec<f32> = (0..n * h * w).map(|i| if i % 4 == 0 { -1.0 } else { 1.0 }).collect();
    let path = out("grid_grey.png");
    image_grid(&path, &data, n, 1, h, w, 8).unwrap();
    let img = image::open(&path).unwrap();
    assert_eq!(img.color(), image::ColorType::L8);
    let g = img.to_luma8();
    assert_eq!(g.dimensions(), (3 * 4 + 2, 4 + 2)); // cols capped at n
    assert_eq!(g.get_pixel(2, 2).0, [0]);
    assert_eq!(g.get_pixel(3, 2).0, [255]);
    assert_eq!(g.get_pixel(6 + 1, 2 + 1).0, [255]);
    assert!(image_grid(&path, &data, n, 2, h, w, 2).is_err());
    assert!(image_grid(&path, &data[1..], n, 1, h, w, 2).is_err());
    assert!(image_grid(&path, &data, n, 1, h, w, 0).is_err());
    // No temporary files left behind.
    let leftovers = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".grid_grey.png.tmp"))
        .count();
    assert_eq!(leftovers, 0);
}

// ------------------------------------------------------------------------------------------ progress

#[test]
fn progress_formatting() {
    assert_eq!(format_eta(0.0), "0s");
    assert_eq!(format_eta(42.4), "42s");
    assert_eq!(format_eta(588.0), "9m48s");
    assert_eq!(format_eta(3600.0 * 3.0 + 300.0), "3h05m");
    assert_eq!(format_eta(86_400.0 * 2.0 + 3600.0 * 4.0), "2d04h");
    assert_eq!(format_eta(f64::INFINITY), "--");
    assert_eq!(format_eta(-1.0), "--");
    assert_eq!(rate(0, 1.0), None);
    assert_eq!(rate(10, 0.0), None);
    assert_eq!(rate(32, 10.0), Some(3.2));
    assert_eq!(format_rate(Some(3.2)), "3.2 it/s");
    assert_eq!(format_rate(Some(45.4)), "45 it/s");
    assert_eq!(format_rate(Some(0.08)), "12.5 s/it");
    assert_eq!(format_rate(Some(0.5)), "2.00 s/it");
    assert_eq!(format_rate(None), "-- it/s");
    assert_eq!(format_value(0.123), "0.123");
    assert_eq!(format_value(-12.345), "-12.35");
    assert_eq!(format_value(0.0), "0");
    assert_eq!(format_value(1.5e-5), "1.500e-5");
    assert_eq!(format_bar(5, 10, 10), "[#####.....]");
    assert_eq!(format_bar(0, 10, 10), "[..........]");
    assert_eq!(format_bar(12, 10, 10), "[##########]");
    assert_eq!(format_status(120, 2000, Some(3.2), &[("W", 0.123)]), "step 120/2000  3.2 it/s  ETA 9m48s  W 0.123");
    assert_eq!(format_status(0, 10, None, &[]), "step 0/10  -- it/s  ETA --");
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);
impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn progress_log_mode_prints_every_twentieth() {
    let buf = Shared::default();
    let mut p = Progress::with_writer(100, 0, false, Box::new(buf.clone()));
    for s in 1..=100 {
        p.update(s, &[("W", 0.5)]);
    }
    p.message("checkpoint saved");
    p.finish();
    p.finish();
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    let steps = lines.iter().filter(|l| l.starts_with("step ")).count();
    assert_eq!(steps, 21, "{text}"); // step 1, then every 5 steps
    assert!(lines.iter().any(|l| l.starts_with("step 100/100") && l.ends_with("W 0.500")));
    assert!(lines.contains(&"checkpoint saved"));
    assert_eq!(lines.iter().filter(|l| l.starts_with("done: 100 steps")).count(), 1);
    assert!(!text.contains('\r'));
}

#[test]
fn progress_terminal_mode_redraws_in_place() {
    let buf = Shared::default();
    let mut p = Progress::with_writer(1000, 500, true, Box::new(buf.clone()));
    for s in 501..=1000 {
        p.update(s, &[]);
        if s == 700 {
            p.message("hello");
        }
    }
    p.finish();
    let text = buf.text();
    // Throttled: the first update and the last are drawn, fast updates in between are not.
    let draws = text.matches("\r[").count();
    assert!((2..=10).contains(&draws), "{draws} redraws: {text:?}");
    assert!(text.contains("\r\x1b[Khello\n[#####"), "{text:?}");
    assert!(text.contains("[##########] step 1000/1000"));
    assert!(text.ends_with(" it/s)\n") && text.contains("\ndone: 500 steps"), "{text:?}");
}
