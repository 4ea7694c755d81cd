//! `wgan view`: a local web page to sample a trained generator again and again, walk between two
//! latent points, and watch a run's curves and samples while it trains.
//!
//! One page (plain HTML, CSS and JavaScript in this folder, embedded in the binary with
//! `include_str!`, no build step; the charts are inline SVG drawn by `page.js`) talks to a small
//! HTTP API ([`api`]) over the runs of one folder ([`runs`]). Pictures come from the same code as
//! `wgan sample` and the run folder's figures (`crate::plot`), drawn by one generation worker
//! ([`generate`]).
//!
//! Why `tiny_http` (synchronous, a fixed pool of threads) is enough: the server is meant for one
//! person on localhost (or through an SSH tunnel). Every request but generation answers from a few
//! small files in microseconds; generation is bounded (at most 1024 samples, in chunks of 64, under
//! a time limit) and runs on one worker thread that owns the device, behind a short queue that
//! answers 503 when full. So at most [`MAX_QUEUED`] + 1 of the [`THREADS`] request threads ever wait
//! on generation, and the page's other requests (metrics, sample files, the page itself) are always
//! served. An async runtime (tokio + axum) would add about a hundred crates and minutes of compile
//! time for no gain at this load.

pub mod api;
pub mod generate;
pub mod runs;

use crate::error::Result;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Request threads.
pub const THREADS: usize = 8;
/// Generation requests that may wait behind the one in progress before the server answers 503.
pub const MAX_QUEUED: usize = 4;

/// An answer of the API: an HTTP status and a message for the page (sent as `{"error": ...}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
}

/// What `wgan view` serves, and where.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    /// A run folder, or a folder of run folders.
    pub from: PathBuf,
    pub host: IpAddr,
    /// 0 takes any free port.
    pub port: u16,
    /// `auto | cpu | cuda | cuda:N | emulated`: where samples are drawn.
    pub device: String,
}

/// A running server: request threads and the generation worker.
pub struct ViewServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    app: Arc<api::App>,
}

impl ViewServer {
    /// Opens the runs folder and the device, binds the port, and starts serving.
    pub fn start(opts: &ViewOptions) -> Result<ViewServer> {
        let runs = runs::RunSet::open(&opts.from)?;
        let gen = generate::Generator::start(&opts.device)?;
        let app = Arc::new(api::App::new(runs, gen));
        let bind = SocketAddr::new(opts.host, opts.port);
        let server = tiny_http::Server::http(bind).map_err(|e| {
            crate::Error(format!("--port {}: cannot listen on {bind}: {e} (--port 0 takes any free port)", opts.port))
        })?;
        let addr = server.server_addr().to_ip().ok_or_else(|| crate::Error("the server has no IP address".into()))?;
        let server = Arc::new(server);
        let threads = (0..THREADS)
            .map(|i| {
                let (server, app) = (server.clone(), app.clone());
                std::thread::Builder::new()
                    .name(format!("wgan-view-{i}"))
                    .spawn(move || serve(&server, &app))
                    .expect("spawn a request thread")
            })
            .collect();
        Ok(ViewServer { addr, server, threads, app })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address, e.g. `http://127.0.0.1:8008/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// What the server shows: the runs folder and the device name.
    pub fn describe(&self) -> (PathBuf, String) {
        (self.app.runs.root().to_path_buf(), self.app.gen.device_name().to_string())
    }

    /// Serves until the process ends.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Stops the request threads (the generation worker ends with the last reference to it).
    pub fn stop(self) {
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One request thread: answers requests until the server is unblocked. A panic in a handler is
/// caught and answered with a 500; the thread keeps serving.
fn serve(server: &tiny_http::Server, app: &api::App) {
    let log = std::env::var_os("WGAN_VIEW_LOG").is_some();
    while let Ok(req) = server.recv() {
        let method = req.method().as_str().to_string();
        let url = req.url().to_string();
        let t = std::time::Instant::now();
        if log {
            eprintln!("wgan view: {method} {url}");
        }
        let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.handle(&method, &url)))
            .unwrap_or_else(|_| api::Reply::error(&ApiError::new(500, "internal error (see the server's log)")));
        let status = reply.status;
        let mut resp = tiny_http::Response::from_data(reply.body).with_status_code(status);
        // One request per connection: with keep-alive, an answer written behind a slow one on the
        // same connection was at times never seen by Chromium (about one page load in ten).
        for (k, v) in [("Content-Type", reply.content_type), ("Cache-Control", "no-store"), ("Connection", "close")] {
            resp.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header"));
        }
        // A client that went away is not the server's problem.
        let sent = req.respond(resp);
        if log {
            eprintln!("wgan view: {method} {url} -> {status} in {:.0?} {sent:?}", t.elapsed());
        }
    }
}
