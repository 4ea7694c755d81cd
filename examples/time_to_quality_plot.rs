//! The figure of `benches/time_to_quality.py`: sample quality over training time, one curve per
//! trainer and seed, from the CSV the script writes.
//!
//! ```sh
//! cargo run --release --example time_to_quality_plot -- CURVE.csv CURVE.png
//! ```
//!
//! The CSV has a header line naming at least the columns `impl`, `seed`, `seconds` and `fid`
//! (in any order); an optional `floor_fid` column (the real-vs-real FID at the same sample size)
//! is drawn as a thin line.

use std::collections::BTreeMap;
use wgan::plot::figure::{write_panels, Panel, Series, Style};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [csv, png] = args.as_slice() else {
        return Err("usage: time_to_quality_plot CURVE.csv CURVE.png".into());
    };
    let text = std::fs::read_to_string(csv).map_err(|e| format!("{csv}: {e}"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> =
        lines.next().ok_or(format!("{csv}: empty file, expected a header line"))?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let need = |name: &str| col(name).ok_or(format!("{csv}: no column {name:?} in the header {header:?}"));
    let (ci, cs, ct, cf) = (need("impl")?, need("seed")?, need("seconds")?, need("fid")?);
    let cfloor = col("floor_fid");
    let mut curves: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let mut floors = Vec::new();
    for (i, l) in lines.enumerate() {
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let num = |c: usize, what: &str| -> Result<f64, String> {
            f.get(c).and_then(|v| v.parse::<f64>().ok()).ok_or(format!(
                "{csv}: line {}: expected a number for {what}, got {:?}",
                i + 2,
                f.get(c)
            ))
        };
        let key = (f.get(ci).copied().unwrap_or("").to_string(), f.get(cs).copied().unwrap_or("").to_string());
        curves.entry(key).or_default().push((num(ct, "seconds")? / 60.0, num(cf, "fid")?));
        if let Some(c) = cfloor {
            floors.push(num(c, "floor_fid")?);
        }
    }
    if curves.is_empty() {
        return Err(format!("{csv}: no data lines"));
    }
    let impls: Vec<String> = {
        let mut v: Vec<String> = curves.keys().map(|k| k.0.clone()).collect();
        v.dedup();
        v
    };
    let mut series = Vec::new();
    for ((imp, seed), mut pts) in curves {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let colour = impls.iter().position(|i| *i == imp).unwrap_or(0);
        series.push(Series::new(format!("{imp} seed {seed}"), pts, colour, Style::Line));
    }
    if !floors.is_empty() {
        floors.sort_by(f64::total_cmp);
        let floor = floors[floors.len() / 2];
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        series.push(Series::new(
            format!("real vs real ({floor:.1})"),
            vec![(lo.min(0.0), floor), (hi, floor)],
            impls.len(),
            Style::Thin,
        ));
    }
    let panel = Panel {
        title: "FID (embedded MNIST classifier) over training time".into(),
        x_label: "minutes of training".into(),
        y_label: "FID".into(),
        y_range: None,
        series,
    };
    write_panels(std::path::Path::new(png), "", &[panel], 800, 480).map_err(|e| e.to_string())?;
    eprintln!("wrote {png}");
    Ok(())
}
