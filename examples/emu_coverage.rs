//! Which kernels ran on the host emulator with every check on: compares the coverage file written
//! under `WGAN_EMU_CHECK=all WGAN_EMU_COVERAGE=FILE` with the kernels of every module, prints the
//! coverage per file and the kernels never checked, and exits 1 if any is missing.
//!
//!     cargo run --release --example emu_coverage -- target/emu-coverage.txt

use std::collections::{BTreeMap, HashSet};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "target/emu-coverage.txt".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "error: coverage file {path}: {e} (run the tests with WGAN_EMU_CHECK=all WGAN_EMU_COVERAGE={path})"
            );
            std::process::exit(2);
        }
    };
    let seen: HashSet<(String, String)> =
        text.lines().filter_map(|l| l.split_once(' ').map(|(f, k)| (f.to_string(), k.trim().to_string()))).collect();
    let all = match wgan::backend::cuda::emu::kernel_inventory() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut by_file: BTreeMap<&str, (usize, usize, Vec<&str>)> = BTreeMap::new();
    for (f, k) in &all {
        let e = by_file.entry(f).or_default();
        e.1 += 1;
        if seen.contains(&(f.clone(), k.clone())) {
            e.0 += 1;
        } else {
            e.2.push(k);
        }
    }
    println!("kernels run under WGAN_EMU_CHECK=all ({path}):");
    for (f, (c, n, missing)) in &by_file {
        println!(
            "  kernels/{f:<16} {c:>3} of {n:>3}{}",
            if missing.is_empty() { String::new() } else { format!("   missing: {}", missing.join(", ")) }
        );
    }
    let covered = by_file.values().map(|v| v.0).sum::<usize>();
    println!(
        "coverage: {covered} of {} kernels ({:.0} %)",
        all.len(),
        100.0 * covered as f64 / all.len().max(1) as f64
    );
    if covered < all.len() {
        std::process::exit(1);
    }
}
