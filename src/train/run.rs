//! The run loop behind `wgan train`: data, steps, and the run folder.
//!
//! RUN/config.json      the resolved configuration (read back by `--resume`)
//! RUN/metrics.jsonl    one line per generator step
//! RUN/samples/         sample grids (images) or critic-contour figures (2-D data)
//! RUN/loss.png         the Wasserstein estimate over steps
//! RUN/checkpoint/      the latest checkpoint (see `snapshot`)

use super::config::{DatasetKind, TrainConfig};
use super::gan::{Gan, StepValues, STREAM_FIXED_NOISE, STREAM_TOY_DATA};
use super::snapshot::{self, Progress};
use crate::backend::Backend;
use crate::data::{self, ImageDataset, Prefetcher};
use crate::error::{Context, Result};
use crate::fsutil::{atomic_write, ensure_writable_dir};
use crate::rng::HostRng;
use crate::toy::ToyDataset;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Points drawn from each side for the exact W1 and mode coverage of 2-D runs.
pub const EVAL_POINTS: usize = 2048;
/// Samples in a picture grid.
const GRID_SAMPLES: usize = 64;

/// Where real batches come from.
pub enum Source {
    Toy { set: ToyDataset, rng: HostRng },
    Images { data: Arc<ImageDataset>, batches: Prefetcher },
}

impl Source {
    /// Opens the data set of `cfg`, checks it against the model, and positions it at `position`.
    pub fn open(cfg: &TrainConfig, position: u64) -> Result<Source> {
        if cfg.dataset.is_toy() {
            let set: ToyDataset = cfg.dataset.name().parse()?;
            let mut rng = HostRng::new(cfg.seed, STREAM_TOY_DATA);
            rng.counter = position;
            return Ok(Source::Toy { set, rng });
        }
        let data = Arc::new(load_images(cfg)?);
        if cfg.batch_size > data.n {
            crate::bail!(
                "--batch-size {}: larger than the data set ({} images); choose at most {}",
                cfg.batch_size,
                data.n,
                data.n
            );
        }
        let sampler = data::BatchSampler::new(data.n, cfg.batch_size, cfg.seed)?;
        let batches = Prefetcher::new(data.clone(), sampler, position, 4);
        Ok(Source::Images { data, batches })
    }

    /// The next real batch as an [N, ...] tensor.
    pub fn next<B: Backend>(&mut self, be: &B, batch: usize) -> B::Tensor {
        match self {
            Source::Toy { set, rng } => be.from_f32(&set.sample(rng, batch), &[batch, 2]),
            Source::Images { data, batches } => {
                let (_, pixels) = batches.next();
                be.from_f32(&pixels, &[batch, data.channels, data.height, data.width])
            }
        }
    }

    /// The next real batch as host values (a data-parallel rank takes its slice of them).
    pub fn next_host(&mut self, batch: usize) -> Vec<f32> {
        match self {
            Source::Toy { set, rng } => set.sample(rng, batch),
            Source::Images { batches, .. } => batches.next().1,
        }
    }

    /// The shape of a batch of `batch` samples.
    pub fn batch_shape(&self, batch: usize) -> Vec<usize> {
        match self {
            Source::Toy { .. } => vec![batch, 2],
            Source::Images { data, .. } => vec![batch, data.channels, data.height, data.width],
        }
    }

    /// Writes the next real batch into `dst` (of `batch_shape(batch)`), with no device allocation.
    pub fn fill<B: Backend>(&mut self, be: &B, dst: &B::Tensor, batch: usize) {
        match self {
            Source::Toy { set, rng } => be.write_f32(dst, &set.sample(rng, batch)),
            Source::Images { batches, .. } => be.write_f32(dst, &batches.next().1),
        }
    }

    /// The image data set and its batch order, when this source streams images.
    pub fn images(&self) -> Option<(Arc<ImageDataset>, data::BatchSampler)> {
        match self {
            Source::Toy { .. } => None,
            Source::Images { data, batches } => Some((data.clone(), batches.sampler().clone())),
        }
    }

    /// The position to store in a checkpoint.
    pub fn position(&self) -> u64 {
        match self {
            Source::Toy { rng, .. } => rng.counter,
            Source::Images { batches, .. } => batches.next_index(),
        }
    }
}

/// Real batches for the step: image data sets on the device when they fit, else from `Source`.
enum Feed<B: Backend> {
    Host(Source),
    Device(data::DeviceImages<B>, Vec<usize>),
}

impl<B: Backend> Feed<B> {
    fn open(be: &B, source: Source, position: u64) -> Self {
        let Some((ds, sampler)) = source.images() else { return Feed::Host(source) };
        match data::DeviceImages::open(be, &ds, sampler, position, |m| eprintln!("{m}")) {
            // The host source (and its prefetching thread) is no longer needed.
            Some(d) => Feed::Device(d, vec![ds.channels, ds.height, ds.width]),
            None => Feed::Host(source),
        }
    }
    fn batch_shape(&self, batch: usize) -> Vec<usize> {
        match self {
            Feed::Host(s) => s.batch_shape(batch),
            Feed::Device(_, chw) => [&[batch][..], chw].concat(),
        }
    }
    fn fill(&mut self, be: &B, dst: &B::Tensor, batch: usize) {
        match self {
            Feed::Host(s) => s.fill(be, dst, batch),
            Feed::Device(d, _) => d.fill(be, dst),
        }
    }
    fn position(&self) -> u64 {
        match self {
            Feed::Host(s) => s.position(),
            Feed::Device(d, _) => d.next_index(),
        }
    }
}

/// Loads an image data set and brings it to the model's channels and size.
pub fn load_images(cfg: &TrainConfig) -> Result<ImageDataset> {
    let ds = match (cfg.dataset, &cfg.data) {
        (DatasetKind::Mnist, None) => data::embedded_mnist(),
        (DatasetKind::Mnist, Some(p)) => data::read_idx_images(p)?,
        (DatasetKind::Cifar10, Some(p)) => data::read_cifar10(p)?,
        (DatasetKind::Folder, Some(p)) => data::read_image_folder(p, cfg.image_size, cfg.channels)?,
        (d, None) => crate::bail!("--dataset {} needs --data PATH", d.name()),
        (d, Some(_)) => crate::bail!("--dataset {} is not an image data set", d.name()),
    };
    let ds = if ds.channels != cfg.channels { data::convert_channels(&ds, cfg.channels)? } else { ds };
    if ds.height != cfg.image_size || ds.width != cfg.image_size {
        data::resize_dataset(&ds, cfg.image_size)
    } else {
        Ok(ds)
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub out: PathBuf,
    pub steps: u64,
    pub last: Option<StepValues>,
    pub seconds: f64,
    /// Exact W1 and modes captured of 2-D runs at the end.
    pub w1: Option<f64>,
    pub modes: Option<(usize, usize)>,
}

/// How `train` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume,
}

/// Trains `cfg` on `be`, writing the run folder `cfg.out`.
pub fn train<B: Backend>(be: B, cfg: &TrainConfig, start: Start) -> Result<RunSummary> {
    train_ranks(be, cfg, start, None)
}

/// `train` as one rank of a data-parallel run when `comm` is given (`crate::dist`): every rank
/// trains on its slice of each global batch, and rank 0 alone writes the run folder.
pub fn train_ranks<B: Backend>(
    be: B,
    cfg: &TrainConfig,
    start: Start,
    comm: Option<Arc<crate::dist::Comm>>,
) -> Result<RunSummary> {
    let shard = comm.map(|c| crate::dist::Shard::new(c, cfg.batch_size)).transpose()?;
    // Rank 0 (or the one process) writes files, pictures and messages.
    let lead = shard.as_ref().map_or(true, |d| d.rank == 0);
    let out = cfg.out.clone();
    let ckpt_dir = out.join("checkpoint");
    if start == Start::Fresh && snapshot::find(&ckpt_dir).is_some() {
        crate::bail!(
            "--out {}: this folder already holds a run; pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    if lead {
        ensure_writable_dir(&out)?;
    }
    be.set_precision(cfg.precision);
    let mut gan = cfg.build(be.clone())?;
    gan.dist = shard.clone();
    let mut progress = Progress { step: 0, data_position: 0 };
    if start == Start::Resume {
        let dir = snapshot::find(&ckpt_dir)
            .ok_or_else(|| crate::Error(format!("--resume: no checkpoint in {}", ckpt_dir.display())))?;
        progress = snapshot::load(&dir, &mut gan)?;
    }
    if let Some(d) = &shard {
        // Every rank starts from the same state (a fresh seed, or the same checkpoint).
        check_ranks_agree(d, &gan, "at the start")?;
    }
    let source = Source::open(cfg, progress.data_position)?;
    // A data-parallel rank reads the global batch on the host and takes its slice.
    let mut feed = if shard.is_some() { Feed::Host(source) } else { Feed::open(&be, source, progress.data_position) };
    let samples_dir = out.join("samples");
    let metrics_path = out.join("metrics.jsonl");
    if lead {
        std::fs::create_dir_all(&samples_dir).context(|| format!("cannot create {}", samples_dir.display()))?;
        atomic_write(
            &out.join("config.json"),
            serde_json::to_string_pretty(cfg).expect("config serialises").as_bytes(),
        )?;
    }
    let mut history = read_history(&metrics_path, progress.step)?;
    // Training time so far (a resumed run goes on counting), and the snapshots still to keep.
    let mut train_secs = read_train_seconds(&metrics_path, progress.step);
    let mut snapshots: Vec<f64> = cfg.snapshot_at.iter().copied().filter(|&p| p > train_secs).collect();
    let mut fid_history = crate::eval::probe::read_fid_history(&metrics_path, progress.step);
    let mut metrics = if lead { Some(open_metrics(&metrics_path, &history)?) } else { None };
    // MNIST runs: IS, FID and class coverage at each sample step (src/eval/probe.rs).
    // WGAN_SKIP_EVAL=1 (tests of the training itself): no exact W1, mode coverage or FID probe.
    let skip_eval = std::env::var("WGAN_SKIP_EVAL").is_ok_and(|v| v == "1");
    let probe = if lead && !skip_eval {
        crate::eval::probe::Probe::for_run(cfg.dataset == DatasetKind::Mnist, cfg.channels, cfg.image_size)?
    } else {
        None
    };

    let fixed_noise =
        be.randn(&[if cfg.dataset.is_toy() { 512 } else { GRID_SAMPLES }, cfg.nz], cfg.seed, STREAM_FIXED_NOISE);
    let mut bar = if lead {
        crate::progress::Progress::new(cfg.steps, progress.step)
    } else {
        crate::progress::Progress::with_writer(cfg.steps, progress.step, false, Box::new(std::io::sink()))
    };
    let t0 = Instant::now();
    let mut last = None;
    let mut done = progress.step;
    let abort_after: Option<u64> = std::env::var("WGAN_ABORT_AFTER_STEP").ok().and_then(|v| v.parse().ok());
    // Under mpirun the test hook kills one rank only (WGAN_ABORT_RANK, default every rank).
    let abort_here = std::env::var("WGAN_ABORT_RANK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(true, |r| shard.as_ref().map_or(0, |d| d.rank) == r);
    let comm_before = |d: &Option<crate::dist::Shard>| d.as_ref().map(|d| d.comm.spent().0);
    for step in progress.step + 1..=cfg.steps {
        if cfg.time_limit.is_some_and(|limit| train_secs >= limit) {
            bar.message(&format!("time limit: the run already has {train_secs:.1} s of training"));
            break;
        }
        let ts = Instant::now();
        let comm0 = comm_before(&shard);
        let (stats, prof) = match &shard {
            None => {
                let shape = feed.batch_shape(cfg.batch_size);
                gan.train_step_profiled(&shape, |be, dst| feed.fill(be, dst, cfg.batch_size))
            }
            Some(d) => {
                let shape = feed.batch_shape(d.local_batch);
                let Feed::Host(source) = &mut feed else { unreachable!("data-parallel ranks read on the host") };
                gan.train_step_profiled(&shape, |be, dst| {
                    be.write_f32(dst, d.slice_host(&source.next_host(cfg.batch_size)))
                })
            }
        };
        be.check()?;
        if cfg.profile && lead {
            bar.message(&profile_line(step, &prof, stats.critic_iters));
        }
        let mut v = stats.read(&be);
        let mut secs = ts.elapsed().as_secs_f64();
        if let Some(d) = &shard {
            // The global batch's losses (the mean of the ranks' means), and one step time for all
            // ranks, so that every rank makes the same decisions (a NaN, the time limit).
            let mut x = [v.critic_loss, v.wdist, v.penalty.unwrap_or(0.0), v.gen_loss, secs];
            d.mean_scalars(&mut x);
            v = StepValues { critic_loss: x[0], wdist: x[1], penalty: v.penalty.map(|_| x[2]), gen_loss: x[3] };
            secs = x[4];
        }
        let comm_secs = comm_before(&shard).zip(comm0).map(|(a, b)| a - b);
        train_secs += secs;
        if let Some(what) = non_finite(&v) {
            bar.finish();
            let kept = match snapshot::find(&ckpt_dir) {
                Some(d) => format!("the last good checkpoint is kept in {}", d.display()),
                None => "no checkpoint had been written yet".to_string(),
            };
            crate::bail!("step {step}: the {what} became {}; stopping ({kept}). Try a lower --lr.", describe(&v, what));
        }
        let mut line = serde_json::json!({
            "step": step,
            "critic_loss": v.critic_loss,
            "wasserstein": v.wdist,
            "penalty": v.penalty,
            "gen_loss": v.gen_loss,
            "critic_iters": stats.critic_iters,
            "seconds": secs,
            "samples_per_sec": (cfg.batch_size * stats.critic_iters) as f64 / secs.max(1e-9),
        });
        if let (Some(d), Some(c)) = (&shard, comm_secs) {
            line["world_size"] = d.size.into();
            line["comm_seconds"] = c.into();
        }
        let time_up = cfg.time_limit.is_some_and(|limit| train_secs >= limit);
        let last_step = step == cfg.steps || time_up;
        if (step % cfg.sample_every == 0 || last_step) && lead {
            let ev = write_samples(&gan, cfg, &fixed_noise, &samples_dir, step, !skip_eval)?;
            if let Some((w1, captured, total)) = ev {
                line["w1"] = w1.into();
                line["modes_captured"] = captured.into();
                line["modes_total"] = total.into();
                bar.message(&format!("step {step}: exact W1 {w1:.4}, modes {captured}/{total}"));
            }
            if let Some(p) = &probe {
                let sc = p.measure(&be, &gan.gen, cfg.nz, cfg.seed);
                crate::eval::probe::record(&mut line, &sc);
                fid_history.push((step, sc.fid));
                bar.message(&format!(
                    "step {step}: IS {:.2}, FID {:.2}, classes {}/10",
                    sc.inception_score, sc.fid, sc.classes_covered
                ));
            }
        }
        if let Some(metrics) = metrics.as_mut() {
            writeln!(metrics, "{line}")
                .and_then(|_| metrics.flush())
                .context(|| format!("cannot write {}", metrics_path.display()))?;
        }
        history.push((step, v.wdist));
        // MNIST runs: the FID of the latest sample step (also after a resume, from metrics.jsonl).
        let mut fields = vec![("W", v.wdist), ("loss_D", v.critic_loss), ("loss_G", v.gen_loss)];
        if let Some(&(_, fid)) = fid_history.last() {
            fields.push(("FID", fid));
        }
        bar.update(step, &fields);
        if step % cfg.checkpoint_every == 0 || last_step {
            if let Some(d) = &shard {
                check_ranks_agree(d, &gan, &format!("at step {step}"))?;
            }
            if lead {
                snapshot::save(&ckpt_dir, cfg, &gan, Progress { step, data_position: feed.position() })?;
            }
        }
        while snapshots.first().is_some_and(|&p| train_secs >= p) {
            let dir = out.join("checkpoints").join(super::config::snapshot_name(snapshots.remove(0)));
            if let Some(d) = &shard {
                check_ranks_agree(d, &gan, &format!("at step {step}"))?;
            }
            if lead {
                snapshot::save(&dir, cfg, &gan, Progress { step, data_position: feed.position() })?;
                bar.message(&format!("kept {} (step {step}, {train_secs:.1} s of training)", dir.display()));
            }
        }
        if (step % cfg.sample_every == 0 || last_step) && lead {
            if fid_history.is_empty() {
                write_loss_plot(&out.join("loss.png"), &history)?;
            } else {
                crate::eval::probe::loss_and_fid_plot(&out.join("loss.png"), &history, &fid_history)?;
            }
        }
        last = Some(v);
        done = step;
        if abort_after == Some(step) && abort_here {
            // Test hook: die like a killed process, without any cleanup.
            std::process::abort();
        }
        if time_up && step < cfg.steps {
            bar.message(&format!("time limit: {train_secs:.1} s of training reached at step {step}"));
            break;
        }
    }
    bar.finish();
    let (w1, modes) = if cfg.dataset.is_toy() && lead && !skip_eval { final_eval(&gan, cfg)? } else { (None, None) };
    Ok(RunSummary { out, steps: done, last, seconds: t0.elapsed().as_secs_f64(), w1, modes })
}

/// Fails, on every rank alike, unless every rank holds the state rank 0 holds (a hash of all
/// that a checkpoint stores): the ranks of a data-parallel run must stay identical.
fn check_ranks_agree<B: Backend>(d: &crate::dist::Shard, gan: &Gan<B>, when: &str) -> Result<()> {
    // WGAN_DIST_SKIP_STATE_CHECK=1: tests only, to show that the weight comparison of
    // tests/mpi_train.rs alone catches a run without gradient reduction.
    if std::env::var("WGAN_DIST_SKIP_STATE_CHECK").is_ok_and(|v| v == "1") {
        return Ok(());
    }
    match d.comm.agree(gan.state_hash()) {
        Ok(()) => Ok(()),
        Err(ranks) => crate::bail!(
            "{when}: the model and optimizer state of rank(s) {ranks:?} differ from rank 0's; the ranks of a \
             data-parallel run must hold identical state (were the gradients not averaged?); nothing was saved"
        ),
    }
}

/// `--profile`: what one step issued to the device and the host time it took.
fn profile_line(step: u64, p: &super::StepProfile, critic_iters: usize) -> String {
    let host_ms = p.host_seconds * 1e3;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let memory = match p.memory {
        Some(m) => {
            let graphs = if m.graph_live_peak == m.graph_reserved {
                format!("{:.2} MiB", mib(m.graph_reserved))
            } else {
                format!("{:.2}-{:.2} MiB", mib(m.graph_live_peak), mib(m.graph_reserved))
            };
            format!(
                "; device memory {:.2} MiB: pool {:.2} MiB (peak {:.2} MiB, {:.2} MiB in use), graphs {graphs}",
                mib(m.footprint()),
                mib(m.pool_reserved),
                mib(m.pool_peak),
                mib(m.pool_used),
            )
        }
        None => String::new(),
    };
    let line = match p.counts {
        Some(c) => format!(
            "profile step {step}: {} kernel launches, {} graph launches ({} kernels replayed, {} captured), {} copies, \
             {} allocations ({} bytes), {} critic iterations, host {host_ms:.2} ms",
            c.launches,
            c.graph_launches,
            c.replayed_kernels,
            c.captured_launches,
            c.copies,
            c.allocs,
            c.alloc_bytes,
            critic_iters
        ),
        None => format!("profile step {step}: {critic_iters} critic iterations, host {host_ms:.2} ms (no launch counts on this device)"),
    };
    line + &memory
}

fn non_finite(v: &StepValues) -> Option<&'static str> {
    if !v.critic_loss.is_finite() {
        Some("critic loss")
    } else if !v.gen_loss.is_finite() {
        Some("generator loss")
    } else {
        None
    }
}

fn describe(v: &StepValues, what: &str) -> String {
    let x = if what == "critic loss" { v.critic_loss } else { v.gen_loss };
    if x.is_nan() {
        "NaN".into()
    } else {
        format!("{x}")
    }
}

/// (step, Wasserstein estimate) of the steps already in metrics.jsonl up to `upto`.
fn read_history(path: &Path, upto: u64) -> Result<Vec<(u64, f64)>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(vec![]) };
    let mut h = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let (Some(s), Some(w)) = (v["step"].as_u64(), v["wasserstein"].as_f64()) {
            if s <= upto {
                h.push((s, w));
            }
        }
    }
    Ok(h)
}

/// Training time of the steps in metrics.jsonl up to `upto`: the sum of their `seconds`.
fn read_train_seconds(path: &Path, upto: u64) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else { return 0.0 };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["step"].as_u64().is_some_and(|s| s <= upto))
        .filter_map(|v| v["seconds"].as_f64())
        .sum()
}

/// Opens metrics.jsonl for appending; on resume, first drops lines past the checkpoint (steps the
/// interrupted run did after its last checkpoint are done again).
fn open_metrics(path: &Path, kept: &[(u64, f64)]) -> Result<std::fs::File> {
    let keep_upto = kept.last().map(|k| k.0).unwrap_or(0);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept_text: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= keep_upto)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    atomic_write(path, kept_text.as_bytes())?;
    std::fs::OpenOptions::new().append(true).open(path).context(|| format!("cannot open {}", path.display()))
}

fn write_loss_plot(path: &Path, history: &[(u64, f64)]) -> Result<()> {
    let pts: Vec<(f64, f64)> = history.iter().map(|&(s, w)| (s as f64, w)).collect();
    crate::plot::line_plot(path, &[("Wasserstein estimate", pts)], "Wasserstein estimate (critic) over generator steps")
}

/// Writes the pictures of `step`; for 2-D data also returns (exact W1, modes captured, modes).
fn write_samples<B: Backend>(
    gan: &Gan<B>,
    cfg: &TrainConfig,
    fixed_noise: &B::Tensor,
    dir: &Path,
    step: u64,
    evaluate: bool,
) -> Result<Option<(f64, usize, usize)>> {
    let be = &gan.be;
    let path = dir.join(format!("step_{step:06}.png"));
    let fake = be.to_f32(&gan.sample(fixed_noise));
    if !cfg.dataset.is_toy() {
        let (c, s) = (cfg.channels, cfg.image_size);
        crate::plot::image_grid(&path, &fake, fake.len() / (c * s * s), c, s, s, 8)?;
        return Ok(None);
    }
    let set: ToyDataset = cfg.dataset.name().parse()?;
    let mut rng = HostRng::new(cfg.seed ^ 0x9e37_79b9, STREAM_TOY_DATA + 1);
    let real = set.sample(&mut rng, fake.len() / 2);
    let (lo, hi) = crate::plot::toy_plot_range(&real);
    const GRID: usize = 64;
    let pts = crate::plot::critic_grid_points(GRID, lo, hi);
    let d = be.to_f32(&gan.critic_values(&be.from_f32(&pts, &[GRID * GRID, 2])));
    crate::plot::toy_figure(&path, &real, &fake, Some(crate::plot::CriticMap { values: &d, n: GRID, lo, hi }))?;
    if !evaluate {
        return Ok(None);
    }
    let (w1, captured, total) = evaluate_toy(gan, cfg, step)?;
    Ok(Some((w1, captured, total)))
}

/// Exact W1 between EVAL_POINTS generated and real points, and the modes captured.
pub fn evaluate_toy<B: Backend>(gan: &Gan<B>, cfg: &TrainConfig, salt: u64) -> Result<(f64, usize, usize)> {
    let be = &gan.be;
    let set: ToyDataset = cfg.dataset.name().parse()?;
    let z = be.randn(&[EVAL_POINTS, cfg.nz], cfg.seed ^ 0x5a5a, salt);
    let fake = be.to_f32(&gan.sample(&z));
    let mut rng = HostRng::new(cfg.seed ^ 0xa5a5, salt);
    let real = set.sample(&mut rng, EVAL_POINTS);
    let w1 = crate::metrics::wasserstein1_exact_f32(&fake, &real);
    let (captured, total) = match set.modes() {
        Some((modes, sigma)) => {
            let c = crate::metrics::mode_coverage(&fake, &modes, sigma);
            (c.modes_captured, c.n_modes)
        }
        None => (0, 0),
    };
    Ok((w1, captured, total))
}

fn final_eval<B: Backend>(gan: &Gan<B>, cfg: &TrainConfig) -> Result<(Option<f64>, Option<(usize, usize)>)> {
    let (w1, c, t) = evaluate_toy(gan, cfg, u64::MAX)?;
    Ok((Some(w1), if t > 0 { Some((c, t)) } else { None }))
}
