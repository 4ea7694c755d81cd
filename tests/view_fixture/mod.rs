//! Shared by the `wgan view` tests: a folder of two small trained runs, a server on a free port of
//! 127.0.0.1, and a raw HTTP/1.1 client (so `../` reaches the server as sent).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use wgan::backend::cpu::Cpu;
use wgan::train::run::Source;
use wgan::train::snapshot::{self, Progress};
use wgan::train::{DatasetKind, TrainOptions};
use wgan::view::{ViewOptions, ViewServer};

pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-view-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A folder with `mnist` (3 steps of `wgan train` at width 8) and `toy` (3 steps of 8 gaussians,
/// trained through the library: `wgan train` on toy data spends half a minute on its exact-W1
/// evaluations), made once per test binary.
/// `WGAN_VIEW_RUNS=FOLDER` uses that folder instead (it must hold an MNIST run named `mnist`), e.g.
/// to take docs/view.png of a longer run.
pub fn runs() -> &'static Path {
    static RUNS: OnceLock<PathBuf> = OnceLock::new();
    RUNS.get_or_init(|| {
        if let Some(d) = std::env::var_os("WGAN_VIEW_RUNS") {
            return PathBuf::from(d);
        }
        let d = tmp("runs");
        let out = Command::new(env!("CARGO_BIN_EXE_wgan"))
            .args([
                "train",
                "--dataset",
                "mnist",
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--width",
                "8",
                "--n-critic",
                "2",
            ])
            .args(["--device", "cpu", "--sample-every", "1", "--seed", "3", "--out"])
            .arg(d.join("mnist"))
            .output()
            .expect("run wgan train");
        assert!(out.status.success(), "wgan train failed: {}", String::from_utf8_lossy(&out.stderr));
        toy_run(&d.join("toy"), 3);
        d
    })
}

/// A toy run folder as `wgan train` writes it (config.json, metrics.jsonl, checkpoint/), trained
/// `steps` generator steps on the CPU.
pub fn toy_run(out: &Path, steps: u64) {
    let cfg = TrainOptions {
        dataset: Some(DatasetKind::EightGaussians),
        batch_size: Some(32),
        width: Some(32),
        n_critic: Some(2),
        steps: Some(steps),
        seed: Some(5),
        device: Some("cpu".into()),
        out: Some(out.to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    std::fs::create_dir_all(out).unwrap();
    let be = Cpu::<f32>::new();
    let mut gan = cfg.build(be.clone()).unwrap();
    let mut source = Source::open(&cfg, 0).unwrap();
    let mut lines = String::new();
    for step in 1..=steps {
        let v = gan.train_step(|| source.next(&be, cfg.batch_size)).read(&be);
        lines += &format!(
            "{{\"step\":{step},\"critic_loss\":{},\"wasserstein\":{},\"gen_loss\":{}}}\n",
            v.critic_loss, v.wdist, v.gen_loss
        );
    }
    std::fs::write(out.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::fs::write(out.join("metrics.jsonl"), lines).unwrap();
    snapshot::save(&out.join("checkpoint"), &cfg, &gan, Progress { step: steps, data_position: source.position() })
        .unwrap();
}

pub fn start(from: &Path) -> ViewServer {
    let opts = ViewOptions { from: from.to_path_buf(), host: [127, 0, 0, 1].into(), port: 0, device: "cpu".into() };
    ViewServer::start(&opts).expect("start the server")
}

/// An HTTP answer: status, content type, body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error message: {}", self.text())).to_string()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD target` over a new connection, sent byte for byte as given.
pub fn request(addr: SocketAddr, method: &str, target: &str) -> Answer {
    assert!(addr.ip().is_loopback(), "tests talk to 127.0.0.1 only");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(s, "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
        })
    };
    if header("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    Answer { status, content_type: header("Content-Type").unwrap_or_default(), body }
}

pub fn get(addr: SocketAddr, target: &str) -> Answer {
    request(addr, "GET", target)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let n =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).split(';').next().unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// Decodes a PNG answer: (width, height, pixels as RGB8).
pub fn png(a: &Answer) -> (u32, u32, Vec<u8>) {
    assert_eq!(a.status, 200, "expected a PNG, got {}: {}", a.status, a.text());
    assert_eq!(a.content_type, "image/png");
    let img = image::load_from_memory_with_format(&a.body, image::ImageFormat::Png).expect("a valid PNG").to_rgb8();
    (img.width(), img.height(), img.into_raw())
}
