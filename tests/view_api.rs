//! `wgan view`'s HTTP API, driven over 127.0.0.1 against two small trained runs: status codes,
//! PNG decoding, the same bytes for the same seed, walks that start and end on grid samples, bad
//! input answered with a 4xx and a JSON message, paths confined to the runs folder, corrupt
//! checkpoints reported, and the page served while generation is busy.

mod view_fixture;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use view_fixture::{get, png, request, runs, start, tmp};
use wgan::plot::{GRID_PADDING, TOY_FIGURE_SIZE};

/// The side of a grid of `cols` × `rows` 28-pixel tiles.
fn grid_side(tiles: u32) -> u32 {
    tiles * (28 + GRID_PADDING as u32) + GRID_PADDING as u32
}

#[test]
fn lists_runs_and_serves_the_page() {
    let srv = start(runs());
    let a = get(srv.addr(), "/api/runs");
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json");
    let v = a.json();
    let runs = v["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mnist", "toy"]);
    let mnist = &runs[0];
    assert_eq!(mnist["dataset"], "mnist");
    assert_eq!(mnist["toy"], false);
    assert_eq!(mnist["last_step"], 3);
    assert_eq!(mnist["checkpoints"][0]["step"], 3);
    assert_eq!(mnist["samples"], serde_json::json!([1, 2, 3]));
    assert_eq!(runs[1]["toy"], true);

    let page = get(srv.addr(), "/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text().contains("<title>wgan view</title>") && page.text().contains("/page.js"));
    for (path, ty) in [("/page.js", "text/javascript"), ("/page.css", "text/css")] {
        let a = get(srv.addr(), path);
        assert_eq!(a.status, 200, "{path}");
        assert!(a.content_type.starts_with(ty), "{path}: {}", a.content_type);
        assert!(a.body.len() > 1000, "{path}");
    }

    let m = get(srv.addr(), "/api/runs/mnist/metrics").json();
    assert_eq!(m["records"].as_array().unwrap().len(), 3);
    assert!(m["records"][0]["wasserstein"].is_number());
    let after = get(srv.addr(), "/api/runs/mnist/metrics?after=1").json();
    let steps: Vec<u64> = after["records"].as_array().unwrap().iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 3]);
    let cfg = get(srv.addr(), "/api/runs/mnist/config").json();
    assert_eq!((cfg["dataset"].as_str(), cfg["width"].as_u64()), (Some("mnist"), Some(8)));
    let (w, h, _) = png(&get(srv.addr(), "/api/runs/mnist/samples/step_000002.png"));
    assert_eq!((w, h), (grid_side(8), grid_side(8)), "the run's own 64-sample grid");
    srv.stop();
}

#[test]
fn same_seed_same_bytes_and_the_picture_of_wgan_sample() {
    let srv = start(runs());
    let url = "/api/runs/mnist/sample.png?seed=7&n=16";
    let a = get(srv.addr(), url);
    let (w, h, px) = png(&a);
    assert_eq!((w, h), (grid_side(4), grid_side(4)));
    assert!(px.iter().any(|&p| p != px[0]), "a blank grid");
    assert_eq!(get(srv.addr(), url).body, a.body, "same seed, same bytes");
    assert_eq!(get(srv.addr(), "/api/runs/mnist/sample.png?n=16&seed=7&step=3").body, a.body, "step=3 is the latest");
    assert_ne!(get(srv.addr(), "/api/runs/mnist/sample.png?seed=8&n=16").body, a.body, "another seed");
    let (w, h, _) = png(&get(srv.addr(), "/api/runs/mnist/sample.png?seed=7&n=10"));
    assert_eq!((w, h), (grid_side(4), grid_side(3)), "10 samples in rows of 4");

    // The same picture as `wgan sample` draws from the same seed.
    let out = tmp("cli-sample").join("grid.png");
    let run = runs().join("mnist");
    let o = Command::new(env!("CARGO_BIN_EXE_wgan"))
        .args(["sample", "--device", "cpu", "--n", "16", "--seed", "7", "--from"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), a.body, "wgan view and wgan sample disagree for seed 7");

    // Toy data: the figure, real and generated points over the critic's surface.
    let t = get(srv.addr(), "/api/runs/toy/sample.png?seed=1&n=256");
    let (w, h, px) = png(&t);
    assert_eq!((w, h), TOY_FIGURE_SIZE);
    assert!(coloured(&px) > 0.5, "the critic's contour bands are missing");
    assert_eq!(get(srv.addr(), "/api/runs/toy/sample.png?seed=1&n=256").body, t.body);
    srv.stop();
}

/// The fraction of pixels that are not white: most of a toy figure over the critic's surface,
/// little without it.
fn coloured(px: &[u8]) -> f64 {
    px.chunks(3).filter(|p| p != &[255, 255, 255]).count() as f64 / (px.len() / 3) as f64
}

/// Tile `k` (of a grid `cols` wide) of an RGB picture `w` wide.
fn tile(px: &[u8], w: u32, cols: usize, k: usize) -> Vec<u8> {
    let (p, s) = (GRID_PADDING, 28usize);
    let (x0, y0) = (p + (k % cols) * (s + p), p + (k / cols) * (s + p));
    (0..s).flat_map(|y| px[((y0 + y) * w as usize + x0) * 3..((y0 + y) * w as usize + x0 + s) * 3].to_vec()).collect()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y)).max().unwrap()
}

#[test]
fn walks_start_and_end_on_grid_samples() {
    let srv = start(runs());
    let (gw, _, grid) = png(&get(srv.addr(), "/api/runs/mnist/sample.png?seed=3&n=16"));
    let a = get(srv.addr(), "/api/runs/mnist/walk.png?a=3:0&b=3:5&steps=6&mode=both");
    let (w, h, px) = png(&a);
    assert_eq!((w, h), (grid_side(6), grid_side(2)), "two rows (straight, spherical) of 6 frames");
    for (frame, sample) in [(0, 0), (5, 5), (6, 0), (11, 5)] {
        // Generated in batches of other sizes: equal up to one grey level.
        let d = max_diff(&tile(&px, w, 6, frame), &tile(&grid, gw, 4, sample));
        assert!(d <= 1, "frame {frame} differs from grid sample {sample} by {d} grey levels");
    }
    assert!(max_diff(&tile(&px, w, 6, 2), &tile(&px, w, 6, 0)) > 1, "the walk does not move");
    assert_eq!(get(srv.addr(), "/api/runs/mnist/walk.png?a=3:0&b=3:5&steps=6&mode=both").body, a.body);
    let (w, h, _) = png(&get(srv.addr(), "/api/runs/mnist/walk.png?a=1&b=2&steps=4&mode=slerp"));
    assert_eq!((w, h), (grid_side(4), grid_side(1)));
    let (w, h, _) = png(&get(srv.addr(), "/api/runs/toy/walk.png?a=1&b=2"));
    assert_eq!((w, h), TOY_FIGURE_SIZE);
    srv.stop();
}

#[test]
fn bad_requests_get_a_4xx_and_a_message() {
    let srv = start(runs());
    let cases: &[(&str, u16, &str)] = &[
        ("/api/runs/mnist/sample.png?n=0", 400, "n=0"),
        ("/api/runs/mnist/sample.png?n=1025", 400, "n=1025"),
        ("/api/runs/mnist/sample.png?step=-1", 400, "negative"),
        ("/api/runs/mnist/sample.png?seed=abc", 400, "seed"),
        ("/api/runs/mnist/sample.png?seed=-3", 400, "seed"),
        ("/api/runs/mnist/sample.png?seed=1&seed=2", 400, "more than once"),
        ("/api/runs/mnist/sample.png?sede=1", 400, "unknown parameter"),
        ("/api/runs/mnist/sample.png?step=999", 404, "no checkpoint at step 999"),
        ("/api/runs/mnist/walk.png?steps=1", 400, "steps=1"),
        ("/api/runs/mnist/walk.png?steps=65", 400, "steps=65"),
        ("/api/runs/mnist/walk.png?mode=curvy", 400, "mode"),
        ("/api/runs/mnist/walk.png?a=1:5000", 400, "index"),
        ("/api/runs/mnist/walk.png?a=x:1", 400, "a="),
        ("/api/runs/mnist/metrics?after=-1", 400, "after"),
        ("/api/runs/mnist/config?x=1", 400, "no parameters"),
        ("/api/runs/nope/sample.png", 404, "no run named"),
        ("/api/runs/mnist/nothing", 404, "no such API"),
        ("/api/runs/mnist/samples/step_000999.png", 404, "no sample picture"),
        ("/api/nothing", 404, "no such"),
        ("/api/runs/mnist/sample.png?n=%zz", 400, "%-escape"),
    ];
    for &(url, status, needle) in cases {
        let a = get(srv.addr(), url);
        assert_eq!(a.status, status, "{url}: {}", a.text());
        assert_eq!(a.content_type, "application/json", "{url}");
        let msg = a.error();
        assert!(msg.contains(needle), "{url}: message {msg:?} lacks {needle:?}");
    }
    let a = request(srv.addr(), "POST", "/api/runs");
    assert_eq!(a.status, 405, "{}", a.text());
    assert!(a.error().contains("only GET"));
    // Still serving.
    assert_eq!(get(srv.addr(), "/api/runs").status, 200);
    assert_eq!(get(srv.addr(), "/api/runs/mnist/sample.png?n=4").status, 200);
    srv.stop();
}

#[test]
fn paths_stay_inside_the_runs_folder() {
    // A secret beside the runs folder, and a runs folder holding one run.
    let d = tmp("confine");
    std::fs::write(d.join("secret.txt"), "SECRET-CONTENTS").unwrap();
    let inner = d.join("runs");
    std::fs::create_dir_all(&inner).unwrap();
    copy_dir(&runs().join("mnist"), &inner.join("mnist"));
    std::fs::write(inner.join("mnist").join("secret.png"), "SECRET-CONTENTS").unwrap();
    let srv = start(&inner);
    for url in [
        "/api/runs/../secret.txt",
        "/api/runs/../../secret.txt/config",
        "/api/runs/..%2Fsecret.txt/config",
        "/api/runs/%2E%2E/config",
        "/api/runs/%2Fetc%2Fpasswd/config",
        "/api/runs/%2Fetc/metrics",
        "/api/runs/.hidden/config",
        "/api/runs/mnist/samples/..%2Fsecret.png",
        "/api/runs/mnist/samples/../secret.png",
        "/api/runs/mnist/samples/%2Fetc%2Fpasswd",
        "/api/runs/mnist/samples/..%2F..%2Fsecret.txt",
        "/../secret.txt",
        "/api/runs/mnist/samples/step_000001.png%00.txt",
    ] {
        let a = get(srv.addr(), url);
        assert!((400..500).contains(&a.status), "{url}: {} {}", a.status, a.text());
        assert!(!a.text().contains("SECRET"), "{url} leaked a file outside the runs");
        a.error();
    }
    // A run folder served on its own: only that run.
    let single = start(&inner.join("mnist"));
    let v = get(single.addr(), "/api/runs").json();
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["runs"][0]["name"], "mnist");
    assert_eq!(get(single.addr(), "/api/runs/mnist/config").status, 200);
    assert_eq!(get(single.addr(), "/api/runs/toy/config").status, 404);
    single.stop();
    srv.stop();
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn corrupt_checkpoints_are_reported_not_fatal() {
    let d = tmp("corrupt");
    let gen = "checkpoint/generator.safetensors";
    // Half-written: the header is whole, the tensors cut short.
    copy_dir(&runs().join("mnist"), &d.join("half"));
    let f = d.join("half").join(gen);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    // Garbage from the first byte.
    copy_dir(&runs().join("mnist"), &d.join("garbage"));
    std::fs::write(d.join("garbage").join(gen), vec![0xffu8; 4096]).unwrap();
    // A half-written line at the end of metrics.jsonl, as while training writes it.
    copy_dir(&runs().join("mnist"), &d.join("good"));
    let mut m = std::fs::read_to_string(d.join("good/metrics.jsonl")).unwrap();
    m += "{\"step\":4,\"critic_lo";
    std::fs::write(d.join("good/metrics.jsonl"), m).unwrap();

    // A toy run without its critic: the figure without the surface.
    copy_dir(&runs().join("toy"), &d.join("nocritic"));
    std::fs::remove_file(d.join("nocritic/checkpoint/critic.safetensors")).unwrap();

    let srv = start(&d);
    let (_, _, px) = png(&get(srv.addr(), "/api/runs/nocritic/sample.png?n=64"));
    assert!(coloured(&px) < 0.2, "a surface drawn without a critic");
    let v = get(srv.addr(), "/api/runs").json();
    let garbage = v["runs"].as_array().unwrap().iter().find(|r| r["name"] == "garbage").unwrap().clone();
    assert!(garbage["checkpoints"][0]["error"].as_str().unwrap().contains("unreadable checkpoint"), "{garbage}");
    for (run, needle) in [("half", "generator.safetensors"), ("garbage", "unreadable checkpoint")] {
        let a = get(srv.addr(), &format!("/api/runs/{run}/sample.png?n=4"));
        assert_eq!(a.status, 422, "{run}: {}", a.text());
        assert!(a.error().contains(needle), "{run}: {}", a.error());
        let a = get(srv.addr(), &format!("/api/runs/{run}/walk.png"));
        assert_eq!(a.status, 422, "{run}: {}", a.text());
    }
    let m = get(srv.addr(), "/api/runs/good/metrics").json();
    assert_eq!((m["records"].as_array().unwrap().len(), m["skipped"].as_u64()), (3, Some(1)));
    assert_eq!(get(srv.addr(), "/api/runs/good/sample.png?n=4").status, 200, "the server keeps serving");
    srv.stop();
}

#[test]
fn generation_does_not_block_the_page() {
    let srv = start(runs());
    let addr = srv.addr();
    // Many large grids at once: each is drawn or refused with a 503, never anything else.
    let heavy: Vec<_> = (0..10)
        .map(|i| std::thread::spawn(move || get(addr, &format!("/api/runs/mnist/sample.png?n=1024&seed={i}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    for url in ["/api/runs", "/", "/api/runs/mnist/metrics", "/api/runs/toy/config"] {
        assert_eq!(get(addr, url).status, 200, "{url}");
    }
    let light = t.elapsed();
    let mut codes = Vec::new();
    for h in heavy {
        let a = h.join().unwrap();
        if a.status == 503 {
            assert!(a.error().contains("busy"), "{}", a.error());
        } else {
            let (w, h, _) = png(&a);
            assert_eq!((w, h), (grid_side(32), grid_side(32)));
        }
        codes.push(a.status);
    }
    assert!(codes.contains(&200), "{codes:?}");
    assert!(light < Duration::from_secs(5), "page requests took {light:?} while generating");
    eprintln!("page requests during generation: {light:?}; grid answers {codes:?}");
    srv.stop();
}

#[test]
fn the_command_serves_and_reports_bad_folders() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgan"))
        .args(["view", "--port", "0", "--device", "cpu", "--from"])
        .arg(runs())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("wgan view printed its address").unwrap();
        if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")) {
            break u.to_string();
        }
    };
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let a = get(addr, "/api/runs");
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["runs"].as_array().unwrap().len(), 2);

    let o = Command::new(env!("CARGO_BIN_EXE_wgan")).args(["view", "--from", "/nonexistent/runs"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--from /nonexistent/runs") && !err.contains("panicked"), "{err}");
}
