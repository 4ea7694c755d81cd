//! The generation worker of `wgan view`: one thread owns the device and draws every grid and walk,
//! one request at a time, behind a short queue.
//!
//! Bounds: at most [`MAX_SAMPLES`] samples a grid and [`MAX_WALK_STEPS`] frames a walk, generated
//! in chunks of [`CHUNK`] (so memory stays that of a 64-sample batch), and a request stops with a
//! 503 once it has run [`TIME_LIMIT`]. Determinism: noise is drawn by the backend's counter-based
//! generator from the seed (the stream `wgan sample` uses), and the same request gives the same
//! PNG bytes; a grid of at most 64 images is the picture `wgan sample --seed S --n N` writes.
//! Generators are cached by checkpoint file (path, size, modification time), so a checkpoint
//! rewritten by a training run is read again.

use super::{ApiError, MAX_QUEUED};
use crate::backend::Backend;
use crate::device::{self, Device, DeviceChoice};
use crate::nn::{BatchNormMode, Model};
use crate::plot::{self, CriticMap};
use crate::tape::Tape;
use crate::train::gan::{sample_with, STREAM_FIXED_NOISE};
use crate::train::snapshot::{self, CRITIC_FILE, GENERATOR_FILE};
use crate::train::TrainConfig;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

/// Most samples in one grid.
pub const MAX_SAMPLES: usize = 1024;
/// Most frames in one walk.
pub const MAX_WALK_STEPS: usize = 64;
/// Samples generated per forward pass.
pub const CHUNK: usize = 64;
/// A request that has run this long stops with a 503.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);
/// The noise stream of `wgan sample` (and so of `wgan view`'s grids and walks).
pub const SAMPLE_STREAM: u64 = STREAM_FIXED_NOISE + 100;
/// Side of the grid on which a toy critic's surface is evaluated (as in the run's own figures).
const CRITIC_GRID: usize = 64;
/// Real points drawn under a toy walk.
const TOY_WALK_REAL: usize = 512;
/// Generators (and critics) kept loaded.
const CACHE: usize = 4;

/// A latent point: sample `index` of the grid drawn with `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latent {
    pub seed: u64,
    pub index: usize,
}

/// Straight (lerp), spherical (slerp) or both interpolations, one row each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkMode {
    Lerp,
    Slerp,
    Both,
}

#[derive(Clone, Debug)]
pub enum Task {
    Grid { seed: u64, n: usize },
    Walk { a: Latent, b: Latent, steps: usize, mode: WalkMode },
}

struct Job {
    checkpoint: PathBuf,
    task: Task,
    reply: mpsc::Sender<Result<Vec<u8>, ApiError>>,
}

/// A handle on the worker thread.
pub struct Generator {
    tx: SyncSender<Job>,
    device: String,
}

impl Generator {
    /// Opens `device` on a new worker thread.
    pub fn start(device: &str) -> crate::Result<Generator> {
        let choice: DeviceChoice = device.parse().map_err(|e| crate::Error(format!("--device: {e}")))?;
        let (tx, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED);
        let (ready_tx, ready_rx) = mpsc::channel::<crate::Result<String>>();
        std::thread::Builder::new()
            .name("wgan-view-generator".into())
            .spawn(move || match device::open(choice, |msg| eprintln!("{msg}")) {
                Ok(dev) => {
                    let _ = ready_tx.send(Ok(dev.name()));
                    match dev {
                        Device::Cpu(be) => worker(be, rx),
                        Device::Cuda(be) => worker(be, rx),
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| crate::Error(format!("cannot start the generation thread: {e}")))?;
        let device = ready_rx.recv().map_err(|_| crate::Error("the generation thread failed to start".into()))??;
        Ok(Generator { tx, device })
    }

    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// Runs `task` on the checkpoint folder `checkpoint` and returns the PNG; 503 when the queue is
    /// full.
    pub fn run(&self, checkpoint: &Path, task: Task) -> Result<Vec<u8>, ApiError> {
        let (reply, rx) = mpsc::channel();
        let job = Job { checkpoint: checkpoint.to_path_buf(), task, reply };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    503,
                    format!("busy: {MAX_QUEUED} generation requests are already waiting; try again shortly"),
                ))
            }
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::new(500, "the generation thread has stopped")),
        }
        // The worker answers every job (with an error past the time limit); the margin covers the
        // jobs queued ahead of this one.
        rx.recv_timeout(TIME_LIMIT * (MAX_QUEUED as u32 + 2))
            .unwrap_or_else(|_| Err(ApiError::new(503, "generation did not finish in time")))
    }
}

/// A loaded checkpoint.
struct Loaded<B: Backend> {
    key: (PathBuf, u64, Option<SystemTime>),
    cfg: TrainConfig,
    gen: Model<B>,
    /// Toy runs only: the critic, for its surface (None if its file is missing or unreadable).
    critic: Option<Model<B>>,
}

fn file_key(file: &Path) -> (PathBuf, u64, Option<SystemTime>) {
    let m = std::fs::metadata(file).ok();
    (file.to_path_buf(), m.as_ref().map_or(0, |m| m.len()), m.and_then(|m| m.modified().ok()))
}

fn worker<B: Backend>(be: B, rx: Receiver<Job>) {
    let mut cache: Vec<Loaded<B>> = Vec::new();
    while let Ok(job) = rx.recv() {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let i = load(&be, &mut cache, &job.checkpoint)?;
            let m = &cache[i];
            let deadline = Instant::now() + TIME_LIMIT;
            let png = match job.task {
                Task::Grid { seed, n } => grid(&be, m, seed, n, deadline),
                Task::Walk { a, b, steps, mode } => walk(&be, m, a, b, steps, mode, deadline),
            }?;
            be.check().map_err(|e| ApiError::new(500, format!("device error: {e}")))?;
            Ok(png)
        }));
        let out = out.unwrap_or_else(|_| {
            cache.clear();
            Err(ApiError::new(500, "internal error while generating (see the server's log)"))
        });
        let _ = job.reply.send(out);
    }
}

/// The index in `cache` of the checkpoint in `dir`, loading it if needed. A checkpoint that cannot
/// be read (corrupt, half-written, another architecture) is a 422 naming the file and the fault.
fn load<B: Backend>(be: &B, cache: &mut Vec<Loaded<B>>, dir: &Path) -> Result<usize, ApiError> {
    let key = file_key(&dir.join(GENERATOR_FILE));
    if let Some(i) = cache.iter().position(|l| l.key == key) {
        return Ok(i);
    }
    let unreadable = |e: crate::Error| ApiError::new(422, format!("cannot use this checkpoint: {e}"));
    let (cfg, gen) = snapshot::load_generator(be, dir).map_err(unreadable)?;
    let critic = if cfg.dataset.is_toy() && dir.join(CRITIC_FILE).is_file() {
        snapshot::load_critic(be, dir).ok().map(|(_, c)| c)
    } else {
        None
    };
    if cache.len() >= CACHE {
        cache.remove(0);
    }
    cache.push(Loaded { key, cfg, gen, critic });
    Ok(cache.len() - 1)
}

fn too_slow() -> ApiError {
    ApiError::new(503, format!("generation took longer than {} s; ask for fewer samples", TIME_LIMIT.as_secs()))
}

/// G(z) for `z` (rows of `nz`), in chunks of [`CHUNK`], as host floats.
fn generate<B: Backend>(be: &B, gen: &Model<B>, z: &[f32], nz: usize, deadline: Instant) -> Result<Vec<f32>, ApiError> {
    let mut out = Vec::new();
    for chunk in z.chunks(CHUNK * nz) {
        if Instant::now() > deadline {
            return Err(too_slow());
        }
        let zt = be.from_f32(chunk, &[chunk.len() / nz, nz]);
        out.extend(be.to_f32(&sample_with(be, gen, &zt)));
    }
    Ok(out)
}

/// The noise of grid `seed` up to sample `n` (n × nz, row-major).
fn noise<B: Backend>(be: &B, seed: u64, n: usize, nz: usize) -> Vec<f32> {
    be.to_f32(&be.randn(&[n, nz], seed, SAMPLE_STREAM))
}

fn grid<B: Backend>(be: &B, m: &Loaded<B>, seed: u64, n: usize, deadline: Instant) -> Result<Vec<u8>, ApiError> {
    let cfg = &m.cfg;
    let x = generate(be, &m.gen, &noise(be, seed, n, cfg.nz), cfg.nz, deadline)?;
    if cfg.dataset.is_toy() {
        let real = toy_real(cfg, seed, n)?;
        return toy_png(be, m, &real, &x);
    }
    let s = cfg.image_size;
    let cols = (n as f64).sqrt().ceil() as usize;
    plot::image_grid_png(&x, n, cfg.channels, s, s, cols).map_err(internal)
}

fn walk<B: Backend>(
    be: &B,
    m: &Loaded<B>,
    a: Latent,
    b: Latent,
    steps: usize,
    mode: WalkMode,
    deadline: Instant,
) -> Result<Vec<u8>, ApiError> {
    let nz = m.cfg.nz;
    let point = |l: Latent| noise(be, l.seed, l.index + 1, nz)[l.index * nz..].to_vec();
    let (za, zb) = (point(a), point(b));
    let modes: &[bool] = match mode {
        WalkMode::Lerp => &[false],
        WalkMode::Slerp => &[true],
        WalkMode::Both => &[false, true],
    };
    let mut z = Vec::with_capacity(modes.len() * steps * nz);
    for &spherical in modes {
        for k in 0..steps {
            let t = if steps > 1 { k as f64 / (steps - 1) as f64 } else { 0.0 };
            z.extend(interpolate(&za, &zb, t, spherical));
        }
    }
    let x = generate(be, &m.gen, &z, nz, deadline)?;
    let cfg = &m.cfg;
    if cfg.dataset.is_toy() {
        let real = toy_real(cfg, a.seed, TOY_WALK_REAL)?;
        return toy_png(be, m, &real, &x);
    }
    let s = cfg.image_size;
    plot::image_grid_png(&x, modes.len() * steps, cfg.channels, s, s, steps).map_err(internal)
}

/// The point a fraction `t` of the way from `a` to `b`: along the straight line, or along the great
/// circle (slerp, with the norm interpolated linearly; the straight line when a and b are parallel).
pub fn interpolate(a: &[f32], b: &[f32], t: f64, spherical: bool) -> Vec<f32> {
    let lerp = |x: f64, y: f64| x + (y - x) * t;
    if spherical {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let (na, nb) = (norm(a), norm(b));
        if na > 0.0 && nb > 0.0 {
            let omega = (dot / (na * nb)).clamp(-1.0, 1.0).acos();
            let so = omega.sin();
            if so > 1e-6 {
                let (wa, wb) = (((1.0 - t) * omega).sin() / so, (t * omega).sin() / so);
                // Directions on the unit sphere, scaled by the interpolated norm.
                let r = lerp(na, nb);
                return a
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| (r * (wa * x as f64 / na + wb * y as f64 / nb)) as f32)
                    .collect();
            }
        }
    }
    a.iter().zip(b).map(|(&x, &y)| lerp(x as f64, y as f64) as f32).collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
}

/// Real points of a toy run's data set, drawn from `seed` as `wgan sample` does.
fn toy_real(cfg: &TrainConfig, seed: u64, n: usize) -> Result<Vec<f32>, ApiError> {
    let set: crate::toy::ToyDataset = cfg.dataset.name().parse().map_err(internal)?;
    Ok(set.sample(&mut crate::rng::HostRng::new(seed, 7), n))
}

/// The toy figure: real and generated points over the critic's surface, recomputed from the
/// checkpoint's critic when it has one.
fn toy_png<B: Backend>(be: &B, m: &Loaded<B>, real: &[f32], fake: &[f32]) -> Result<Vec<u8>, ApiError> {
    let Some(critic) = &m.critic else {
        return plot::toy_figure_png(real, fake, None).map_err(internal);
    };
    let (lo, hi) = plot::toy_plot_range(real);
    let pts = plot::critic_grid_points(CRITIC_GRID, lo, hi);
    let values = be.to_f32(&critic_values(be, critic, &be.from_f32(&pts, &[CRITIC_GRID * CRITIC_GRID, 2])));
    let map = CriticMap { values: &values, n: CRITIC_GRID, lo, hi };
    plot::toy_figure_png(real, fake, Some(map)).map_err(internal)
}

/// D(x) without recording a graph (as `Gan::critic_values`, for a critic loaded on its own).
fn critic_values<B: Backend>(be: &B, critic: &Model<B>, x: &B::Tensor) -> B::Tensor {
    let mut t = Tape::new(be.clone());
    t.set_grad_enabled(false);
    let xv = t.constant(x.clone());
    let p = critic.param_consts(&mut t);
    let d = critic.net.forward(&mut t, &p, xv, BatchNormMode::Train(None));
    t.value(d).clone()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(500, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn norm(v: &[f32]) -> f64 {
        super::norm(v)
    }

    #[test]
    fn interpolation_ends_and_norms() {
        let (a, b) = ([1.0f32, 0.0, 0.0], [0.0f32, 2.0, 0.0]);
        for spherical in [false, true] {
            assert_eq!(interpolate(&a, &b, 0.0, spherical), a);
            let end = interpolate(&a, &b, 1.0, spherical);
            assert!(end.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{end:?}");
        }
        assert_eq!(interpolate(&a, &b, 0.5, false), [0.5, 1.0, 0.0]);
        // Spherical: the direction halfway round the quarter circle, the norm halfway between.
        let m = interpolate(&a, &b, 0.5, true);
        assert!((norm(&m) - 1.5).abs() < 1e-6, "{m:?}");
        assert!((m[0] as f64 - 1.5 * 0.5f64.sqrt()).abs() < 1e-6 && (m[1] - m[0]).abs() < 1e-6, "{m:?}");
        // Parallel ends: the straight line.
        assert_eq!(interpolate(&a, &[2.0, 0.0, 0.0], 0.5, true), [1.5, 0.0, 0.0]);
    }
}
