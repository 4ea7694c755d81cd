//! Command-line interface (clap). Parsing and dispatch only: the work is in the library.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use wgan::backend::Backend;
use wgan::device::{self, Device, DeviceChoice};
use wgan::nn::arch::CriticNorm;
use wgan::train::run::{self, Start};
use wgan::train::{DatasetKind, Loss, Penalty, TrainConfig, TrainOptions};
use wgan::{Context, Result};

#[derive(Parser)]
#[command(
    name = "wgan",
    version,
    about = "WGAN and WGAN-GP training on hand-written CUDA kernels, with a CPU reference backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a WGAN or WGAN-GP (with no arguments: WGAN-GP on the embedded MNIST digits).
    Train(TrainArgs),
    /// Draw samples from a trained generator into a PNG grid (or a CSV of points for 2-D data).
    Sample(SampleArgs),
    /// Show the devices, the CUDA driver and NVRTC versions, and the kernel cache.
    Info,
    /// Image metrics of a run's samples (IS, Mode Score, FID, KID, 1-NN, class coverage) beside
    /// their real-vs-real floors; writes RUN/eval.json.
    #[command(long_about = EVAL_HELP)]
    Eval(EvalArgs),
    /// Serve a local web page: sample a run's generator, walk its latent space, watch its curves.
    View(ViewArgs),
}

const EVAL_HELP: &str =
    "Image metrics of a run's samples, each beside its real-vs-real floor: Inception Score, Mode Score, \
FID, KID (cubic-kernel MMD², mean ± std over 100 subsets), 1-NN two-sample accuracy and class coverage (classes \
with >= 2 % of the samples, and the class histogram's KL to the real one). Prints a table and writes RUN/eval.json.

Feature space: for MNIST runs, a small classifier trained by this project and embedded in the binary \
(its penultimate 32 features for FID, KID and 1-NN; its class posteriors for the scores), against held-out \
digits; 32/64-pixel MNIST runs are resized to 28x28. For other images pass --features NET.safetensors: \
tensors layers.{i}.weight / layers.{i}.bias (i = 0, 1, ...; 4-D weights [Cout,Cin,K,K] are convolutions, 2-D \
[Out,In] linear layers over the flattened activation), ReLU between layers, metadata input=\"C,H,W\" and \
layers.{i}.stride / layers.{i}.padding; the last layer gives class logits, its input the features. The real \
sets are then two disjoint random subsets of the run's data.";

#[derive(Args)]
struct EvalArgs {
    /// A run folder, a checkpoint folder or a generator.safetensors file.
    #[arg(long)]
    from: PathBuf,
    /// Number of samples (the MNIST reference and floor sets have 1,000 each).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// A feature network in the layout above (default: the embedded MNIST classifier, MNIST runs only).
    #[arg(long)]
    features: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto | cpu | cuda | cuda:N | emulated
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Args)]
struct TrainArgs {
    /// A named configuration; flags given beside it override its values. dcgan-w32: the default job
    /// (the WGAN-GP paper's Algorithm 1 on a width-32 DCGAN, 400 steps); gan-mnist: the WGAN-GP paper's
    /// MNIST script's settings (width 64, batch 50, nz 128, Adam 1e-4 betas 0.5,0.9, no critic norm,
    /// 200,000 steps) on this crate's DCGAN-28.
    #[arg(long)]
    preset: Option<wgan::train::config::Preset>,
    /// mnist | cifar10 | folder | 8gaussians | 25gaussians | swissroll
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// An IDX file (mnist), the CIFAR-10 binary folder (cifar10) or an image folder (folder).
    #[arg(long)]
    data: Option<PathBuf>,
    /// wgan (weight clipping) | wgan-gp (gradient penalty) | gan (standard GAN, minimax) | nsgan
    /// (standard GAN, non-saturating generator loss)
    #[arg(long)]
    loss: Option<Loss>,
    /// two-sided | one-sided
    #[arg(long)]
    penalty: Option<Penalty>,
    /// Gradient-penalty weight λ (default 10; 0.1 on toy data, as gan_toy.py).
    #[arg(long, allow_negative_numbers = true)]
    lambda: Option<f64>,
    /// Critic iterations per generator step (default 5).
    #[arg(long)]
    n_critic: Option<usize>,
    /// Weight-clipping bound c for --loss wgan (default 0.01).
    #[arg(long, allow_negative_numbers = true)]
    clip: Option<f64>,
    /// Learning rate (default 1e-4 for wgan-gp with Adam, 5e-5 for wgan with RMSProp).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Adam betas as B1,B2 (default 0,0.9; 0.5,0.9 on toy data).
    #[arg(long, value_parser = parse_betas)]
    betas: Option<(f64, f64)>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Generator steps to train for (the total, when resuming).
    #[arg(long)]
    steps: Option<u64>,
    /// Image side: 28, 32 or 64.
    #[arg(long)]
    image_size: Option<usize>,
    /// Image channels for folder data: 1 (grey) or 3 (RGB).
    #[arg(long)]
    channels: Option<usize>,
    /// DCGAN base channel width (default 32); on toy data, the MLPs' hidden units (default 512).
    #[arg(long)]
    width: Option<usize>,
    /// Latent size (default 100; 2 on toy data).
    #[arg(long)]
    nz: Option<usize>,
    /// none | layer (default layer for wgan-gp, none for wgan)
    #[arg(long)]
    critic_norm: Option<CriticNorm>,
    /// Initialisation: pytorch (PyTorch's nn.Linear/Conv defaults, U(±1/√fan_in) weights and
    /// biases; default on toy data) | dcgan (N(0, 0.02) weights, zero biases; default on images)
    #[arg(long)]
    init: Option<wgan::nn::InitRule>,
    /// WGAN's schedule: 100 critic iterations for the first 25 generator steps and every 500th.
    #[arg(long)]
    wgan_schedule: bool,
    #[arg(long)]
    seed: Option<u64>,
    /// auto | cpu | cuda | cuda:N | emulated (the CUDA kernels on a CPU emulator: slow, for testing)
    #[arg(long)]
    device: Option<String>,
    /// Matrix products and convolutions on CUDA: f32 (exact reference kernels), tf32 (default,
    /// as PyTorch's convolutions) or bf16 (tensor-core operands rounded; f32 accumulation and
    /// storage). The CPU backend ignores it.
    #[arg(long)]
    precision: Option<wgan::backend::Precision>,
    /// Run folder (default runs/latest).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out (default runs/latest) from its checkpoint. Configuration flags may be
    /// repeated with the values the run recorded; only --steps, --time-limit, --snapshot-at, --device,
    /// --precision, --sample-every and --checkpoint-every may change.
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    sample_every: Option<u64>,
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Keep a copy of the checkpoint in RUN/checkpoints/t{S}s/ when the training time reaches each of
    /// these times (90, 90s, 1.5m, 1h; comma-separated). Training time is the steps' own time,
    /// without sample pictures, FID probes and checkpoints.
    #[arg(long, value_parser = parse_times)]
    snapshot_at: Option<Times>,
    /// Stop once the training time reaches this (90, 90s, 1.5m, 1h), or at --steps, whichever comes
    /// first.
    #[arg(long, value_parser = wgan::train::config::parse_seconds)]
    time_limit: Option<f64>,
    /// on | off: capture the step into CUDA graphs and replay them (CUDA devices; default on).
    #[arg(long, value_parser = parse_on_off)]
    graph: Option<bool>,
    /// Print kernel launches, allocations and host time per step (also WGAN_PROFILE=1).
    #[arg(long)]
    profile: bool,
    /// Threads of the CPU backend in this process (default: every core; under mpirun, the
    /// machine's cores divided among its ranks).
    #[arg(long)]
    threads: Option<usize>,
    /// on | off: under mpirun, add up gradients and batch statistics in rank order, so that a rerun
    /// with the same number of ranks is bitwise identical (default on); off: MPI_Allreduce's order.
    #[arg(long, value_parser = parse_on_off)]
    deterministic_reduce: Option<bool>,
    /// on | off: under mpirun, average gradients in 1 MiB buckets on a communication thread while
    /// the backward pass goes on (default off: on the CPU it pays only where each rank has a core
    /// to spare). Bitwise the same result either way.
    #[arg(long, value_parser = parse_on_off)]
    overlap_reduce: Option<bool>,
}

/// `--snapshot-at`'s list (one clap value, not several).
#[derive(Clone, Debug)]
struct Times(Vec<f64>);

fn parse_times(s: &str) -> std::result::Result<Times, String> {
    wgan::train::config::parse_seconds_list(s).map(Times)
}

fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

#[derive(Args)]
struct SampleArgs {
    /// A run folder, a checkpoint folder or a generator.safetensors file.
    #[arg(long)]
    from: PathBuf,
    /// Number of samples.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Output: a .png grid; a folder (DIR/) of numbered PNG files; a .npy array in [-1, 1] of shape
    /// [N, C, H, W]; for 2-D data a .png figure, a .csv of `x,y` lines or a .npy of shape [N, 2].
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto | cpu | cuda | cuda:N | emulated (the CUDA kernels on a CPU emulator: slow, for testing)
    #[arg(long, default_value = "auto")]
    device: String,
}

#[derive(Args)]
struct ViewArgs {
    /// A run folder, or a folder of runs.
    #[arg(long, default_value = "runs")]
    from: PathBuf,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8008)]
    port: u16,
    /// Address to listen on; anything but 127.0.0.1 or ::1 lets other machines in (no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Where samples are drawn: auto | cpu | cuda | cuda:N | emulated
    #[arg(long, default_value = "auto")]
    device: String,
}

fn parse_betas(s: &str) -> std::result::Result<(f64, f64), String> {
    let parts: Vec<&str> = s.split(',').collect();
    match parts.as_slice() {
        [a, b] => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(format!("expected two numbers B1,B2, got {s:?}")),
        },
        _ => Err(format!("expected two numbers B1,B2, got {s:?}")),
    }
}

pub fn run() -> Result<()> {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // Under mpirun every rank meets the same bad flag: rank 0 reports it, and its exit ends
        // the others before they do (src/dist/mod.rs, `fail`).
        if e.use_stderr() && wgan::dist::launched_by_mpi().is_some() && wgan::dist::env_rank() != Some(0) {
            std::thread::sleep(std::time::Duration::from_millis(2000));
        }
        e.exit()
    });
    match cli.command {
        Command::Train(a) => train(a),
        Command::Sample(a) => sample(a),
        Command::Info => info(),
        Command::Eval(a) => eval(a),
        Command::View(a) => view(a),
    }
}

fn eval(a: EvalArgs) -> Result<()> {
    let o = wgan::eval::command::EvalOptions { from: a.from, n: a.n, features: a.features, seed: a.seed };
    let (report, path) = match open_device(&a.device)? {
        Device::Cpu(be) => wgan::eval::command::eval_run(&be, &o)?,
        Device::Cuda(be) => wgan::eval::command::eval_run(&be, &o)?,
    };
    print!("{}", wgan::eval::command::table(&report));
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn open_device(name: &str) -> Result<Device> {
    let choice: DeviceChoice = name.parse().map_err(|e| wgan::Error(format!("--device: {e}")))?;
    device::open(choice, |msg| eprintln!("{msg}"))
}

fn train(a: TrainArgs) -> Result<()> {
    let explicit_precision = a.precision.is_some();
    let (threads, deterministic, overlap) =
        (a.threads, a.deterministic_reduce.unwrap_or(true), a.overlap_reduce.unwrap_or(false));
    if threads == Some(0) {
        return Err(wgan::Error("--threads 0: expected at least 1 thread".into()));
    }
    let (mut cfg, start) = if a.resume { resume_config(a)? } else { (fresh_config(a)?, Start::Fresh) };
    // Under mpirun: this rank's place in the world (src/dist/); None in one process.
    let comm = wgan::dist::init(deterministic, overlap)?;
    let lead = comm.as_ref().map_or(true, |c| c.rank() == 0);
    set_threads(threads, comm.as_deref())?;
    if let Some(note) = cfg.preset.and_then(|p| p.note()).filter(|_| lead) {
        eprintln!("note: {note}");
    }
    let dev = match &comm {
        Some(c) => open_rank_device(&cfg.device, c)?,
        None => open_device(&cfg.device)?,
    };
    // config.json records the precision the run's matrix products really use.
    match &dev {
        Device::Cpu(_) => {
            if explicit_precision && cfg.precision != wgan::backend::Precision::F32 {
                eprintln!(
                    "note: --precision {} applies to CUDA devices; the CPU backend computes in f32",
                    cfg.precision
                );
            }
            cfg.precision = wgan::backend::Precision::F32;
        }
        Device::Cuda(be) => {
            let (p, notice) =
                wgan::backend::precision::resolve(cfg.precision, explicit_precision, be.sm()).map_err(wgan::Error)?;
            if let Some(n) = notice {
                eprintln!("{n}");
            }
            cfg.precision = p;
        }
    }
    // GPUs under mpirun: the gradients' all-reduce through NCCL on the training stream.
    #[cfg(feature = "nccl")]
    if let (Some(c), Device::Cuda(be)) = (&comm, &dev) {
        if wgan::backend::cuda::collective::attach(be, c)? && lead {
            eprintln!("gradients averaged with NCCL on the training stream; batch-norm statistics over MPI");
        }
    }
    let recorded = cfg.distributed.take();
    if let Some(c) = &comm {
        cfg.distributed = Some(distributed_record(c, &cfg, &dev, recorded.as_ref(), start)?);
        if matches!(dev, Device::Cuda(_)) && cfg.graph && lead {
            eprintln!(
                "note: CUDA graphs are off under mpirun: the step's gradient and batch-norm collectives run on the \
                 host between kernels, where a replayed graph would skip them"
            );
        }
    } else if let (Some(r), Start::Resume) = (&recorded, start) {
        eprintln!(
            "note: resuming a run of {} ranks in one process: the checkpoint holds no per-rank state, so training \
             continues from it; it is bitwise the run it would have been only with the same number of ranks",
            r.world_size
        );
    }
    let limit = cfg.time_limit.map(|t| format!(" (or {t} s of training)")).unwrap_or_default();
    if lead {
        eprintln!(
            "training {} on {} ({}), {} generator steps{limit}, device {}, output {}",
            cfg.loss.title(),
            cfg.dataset.name(),
            if cfg.data.is_none() && cfg.dataset == DatasetKind::Mnist {
                "embedded 10,000 digits".to_string()
            } else {
                cfg.data.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "generated".into())
            },
            cfg.steps,
            dev.name(),
            cfg.out.display()
        );
    }
    let summary = match dev {
        Device::Cpu(be) => run::train_ranks(be, &cfg, start, comm.clone())?,
        Device::Cuda(be) => run::train_ranks(be, &cfg, start, comm.clone())?,
    };
    if !lead {
        return Ok(());
    }
    let mut msg = format!("done: {} steps in {:.1} s", summary.steps, summary.seconds);
    if let Some(c) = &comm {
        let (secs, calls) = c.spent();
        msg += &format!(
            " on {} ranks ({:.3} s per step communicating on rank 0, {calls} collectives)",
            c.size(),
            secs / summary.steps.max(1) as f64
        );
    }
    if let Some(v) = summary.last {
        msg += &format!("; Wasserstein estimate {:.4}", v.wdist);
    }
    if let Some(w1) = summary.w1 {
        msg += &format!("; exact W1 {w1:.4} ({} vs {} points)", run::EVAL_POINTS, run::EVAL_POINTS);
    }
    if let Some((c, t)) = summary.modes {
        msg += &format!("; modes captured {c}/{t}");
    }
    eprintln!("{msg}\noutputs in {}", summary.out.display());
    Ok(())
}

/// The CPU backend's threads: `--threads`, or under mpirun the machine's cores divided among the
/// ranks on it (so that N ranks do not oversubscribe the cores).
fn set_threads(threads: Option<usize>, comm: Option<&wgan::dist::Comm>) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = match (threads, comm) {
        (Some(n), _) => n,
        (None, Some(c)) => (cores / c.local_size()).max(1),
        (None, None) => return Ok(()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| wgan::Error(format!("--threads {n}: cannot start the thread pool: {e}")))
}

/// Under mpirun, one device per rank: `cuda` and `auto` take GPU `local rank` of the machine
/// (`auto` falling back to the CPU); `cpu`, `emulated` and `cuda:N` are taken as given.
fn open_rank_device(name: &str, c: &wgan::dist::Comm) -> Result<Device> {
    let lr = c.local_rank();
    match name {
        "cuda" => open_device(&format!("cuda:{lr}")),
        "auto" => match wgan::backend::cuda::Cuda::new(lr) {
            Ok(be) => Ok(Device::Cuda(be)),
            Err(e) => {
                if c.rank() == 0 {
                    eprintln!("note: no usable CUDA GPU {lr} ({e}); training on the CPU");
                }
                Ok(Device::Cpu(wgan::backend::cpu::Cpu::new()))
            }
        },
        _ => open_device(name),
    }
}

/// What config.json records of a data-parallel run: the world, each rank's rows and device. A run
/// resumed with another number of ranks goes on from its checkpoint (which holds no per-rank state),
/// with a note that bitwise equality with the uninterrupted run needs the same number of ranks.
fn distributed_record(
    c: &wgan::dist::Comm,
    cfg: &TrainConfig,
    dev: &Device,
    recorded: Option<&wgan::train::config::Distributed>,
    start: Start,
) -> Result<wgan::train::config::Distributed> {
    let size = c.size();
    if cfg.batch_size % size != 0 {
        return Err(wgan::Error(format!(
            "--batch-size {}: the global batch must divide evenly among the {size} ranks (each takes an equal \
             contiguous slice); choose a multiple of {size}",
            cfg.batch_size
        )));
    }
    let mut devices = Vec::with_capacity(size);
    for r in 0..size {
        let mut b = if r == c.rank() { format!("{}: {}", c.host(), dev.name()).into_bytes() } else { vec![] };
        c.broadcast_bytes(r, &mut b);
        devices.push(String::from_utf8_lossy(&b).into_owned());
    }
    let old = match (recorded, start) {
        (Some(r), Start::Resume) => r.world_size,
        (None, Start::Resume) => 1,
        _ => size,
    };
    if old != size && c.rank() == 0 {
        eprintln!(
            "note: resuming a run of {old} rank(s) with {size}: the checkpoint holds no per-rank state, so training \
             continues from it; it is bitwise the run it would have been only with the same number of ranks"
        );
    }
    Ok(wgan::train::config::Distributed {
        world_size: size,
        rank_batch: cfg.batch_size / size,
        devices,
        deterministic_reduce: c.deterministic,
        overlap_reduce: c.overlap,
    })
}

fn fresh_config(a: TrainArgs) -> Result<TrainConfig> {
    TrainOptions {
        dataset: a.dataset,
        data: a.data,
        loss: a.loss,
        penalty: a.penalty,
        lambda: a.lambda,
        n_critic: a.n_critic,
        clip: a.clip,
        lr: a.lr,
        betas: a.betas,
        batch_size: a.batch_size,
        steps: a.steps,
        image_size: a.image_size,
        channels: a.channels,
        width: a.width,
        nz: a.nz,
        critic_norm: a.critic_norm,
        init: a.init,
        wgan_schedule: a.wgan_schedule,
        seed: a.seed,
        device: a.device,
        precision: a.precision,
        out: a.out,
        sample_every: a.sample_every,
        checkpoint_every: a.checkpoint_every,
        snapshot_at: a.snapshot_at.map(|t| t.0).unwrap_or_default(),
        time_limit: a.time_limit,
        graph: a.graph,
        preset: a.preset,
        profile: a.profile,
    }
    .resolve()
}

fn resume_config(a: TrainArgs) -> Result<(TrainConfig, Start)> {
    // The same folder a fresh run writes by default, so that `wgan train --resume` continues
    // `wgan train`.
    let out = a.out.unwrap_or_else(|| PathBuf::from(wgan::train::config::DEFAULT_OUT));
    let path = out.join("config.json");
    let text = std::fs::read_to_string(&path).context(|| format!("--resume: cannot read {}", path.display()))?;
    let mut cfg: TrainConfig = serde_json::from_str(&text)
        .context(|| format!("--resume: {} is not a wgan run configuration", path.display()))?;
    // The configuration flags may be repeated (the same command again with --resume added), but
    // not changed.
    let same = SameAs { path: &path };
    same.check("--preset", a.preset.map(Some), &cfg.preset)?;
    same.check("--dataset", a.dataset, &cfg.dataset)?;
    same.check_data(a.data.as_deref(), cfg.data.as_deref())?;
    same.check("--loss", a.loss, &cfg.loss)?;
    same.check("--penalty", a.penalty, &cfg.penalty)?;
    same.check("--lambda", a.lambda, &cfg.lambda)?;
    same.check("--n-critic", a.n_critic, &cfg.n_critic)?;
    same.check("--clip", a.clip, &cfg.clip)?;
    same.check("--lr", a.lr, &cfg.lr)?;
    same.check("--betas", a.betas, &cfg.betas)?;
    same.check("--batch-size", a.batch_size, &cfg.batch_size)?;
    same.check("--image-size", a.image_size, &cfg.image_size)?;
    same.check("--channels", a.channels, &cfg.channels)?;
    same.check("--width", a.width, &cfg.width)?;
    same.check("--nz", a.nz, &cfg.nz)?;
    same.check("--critic-norm", a.critic_norm, &cfg.critic_norm)?;
    same.check("--init", a.init, &cfg.init)?;
    same.check("--wgan-schedule", a.wgan_schedule.then_some(true), &cfg.wgan_schedule)?;
    same.check("--seed", a.seed, &cfg.seed)?;
    cfg.out = out;
    if let Some(s) = a.steps {
        cfg.steps = s;
    }
    if let Some(d) = a.device {
        cfg.device = d;
    }
    if let Some(p) = a.precision {
        cfg.precision = p;
    }
    if let Some(s) = a.sample_every {
        cfg.sample_every = s;
    }
    if let Some(s) = a.checkpoint_every {
        cfg.checkpoint_every = s;
    }
    if let Some(Times(v)) = a.snapshot_at {
        cfg.snapshot_at = wgan::train::config::sorted_times(v);
    }
    if let Some(t) = a.time_limit {
        cfg.time_limit = Some(t);
    }
    if let Some(g) = a.graph {
        cfg.graph = g;
    }
    cfg.profile = a.profile || wgan::train::config::profile_from_env();
    cfg.version = env!("CARGO_PKG_VERSION").to_string();
    cfg.validate()?;
    Ok((cfg, Start::Resume))
}

/// Compares a configuration flag given with `--resume` to the value the run recorded.
struct SameAs<'a> {
    path: &'a std::path::Path,
}

impl SameAs<'_> {
    const MAY_CHANGE: &'static str =
        "only --steps, --time-limit, --snapshot-at, --device, --precision, --sample-every and --checkpoint-every may change";

    /// Accepts `given` when it is absent or equal to `recorded`; refuses a change, naming the flag,
    /// the new value and the recorded one.
    fn check<T: PartialEq + serde::Serialize>(&self, flag: &str, given: Option<T>, recorded: &T) -> Result<()> {
        match given {
            Some(v) if v != *recorded => self.refuse(flag, &shown(&v), &shown(recorded)),
            _ => Ok(()),
        }
    }

    /// `--data`: the same path, or another spelling of it (relative, through a link).
    fn check_data(&self, given: Option<&std::path::Path>, recorded: Option<&std::path::Path>) -> Result<()> {
        let Some(g) = given else { return Ok(()) };
        let same = recorded
            .is_some_and(|r| r == g || matches!((r.canonicalize(), g.canonicalize()), (Ok(a), Ok(b)) if a == b));
        if same {
            return Ok(());
        }
        let old = recorded.map(|r| r.display().to_string());
        let old = old.as_deref().unwrap_or("no --data (the embedded digits)");
        self.refuse("--data", &g.display().to_string(), old)
    }

    fn refuse(&self, flag: &str, new: &str, old: &str) -> Result<()> {
        let old = if old.starts_with("no ") { old.to_string() } else { format!("{flag} {old}") };
        wgan::bail!(
            "{flag} {new}: a resumed run keeps its configuration, and {} records {old}; {}",
            self.path.display(),
            Self::MAY_CHANGE
        )
    }
}

/// A configuration value as it is written on the command line: `wgan-gp`, `0.0001`, `0.5,0.9`.
fn shown<T: serde::Serialize>(v: &T) -> String {
    fn text(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
            serde_json::Value::Bool(b) => (if *b { "on" } else { "off" }).to_string(),
            serde_json::Value::Null => "(none)".to_string(),
            // 0 and 10 rather than serde_json's 0.0 and 10.0.
            serde_json::Value::Number(n) if n.is_f64() => format!("{}", n.as_f64().unwrap_or(f64::NAN)),
            other => other.to_string(),
        }
    }
    text(&serde_json::to_value(v).expect("configuration values serialise"))
}

fn sample(a: SampleArgs) -> Result<()> {
    if a.n == 0 {
        wgan::bail!("--n 0: expected at least one sample");
    }
    if let Some(kind) = wgan::eval::export::BulkOut::of(&a.out) {
        let parent = a.out.components().as_path().parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent.filter(|p| !p.is_dir()) {
            wgan::bail!("--out {}: the folder {} does not exist", a.out.display(), parent.display());
        }
        let out = a.out.components().as_path().to_path_buf();
        match open_device(&a.device)? {
            Device::Cpu(be) => wgan::eval::export::sample_bulk(&be, &a.from, a.n, &out, a.seed, kind)?,
            Device::Cuda(be) => wgan::eval::export::sample_bulk(&be, &a.from, a.n, &out, a.seed, kind)?,
        }
        eprintln!("wrote {} samples to {}", a.n, a.out.display());
        return Ok(());
    }
    let ext = a.out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if ext != "png" && ext != "csv" {
        wgan::bail!("--out {}: expected a .png or .csv file name, a .npy name, or a folder (DIR/)", a.out.display());
    }
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            wgan::bail!("--out {}: the folder {} does not exist", a.out.display(), parent.display());
        }
    }
    match open_device(&a.device)? {
        Device::Cpu(be) => sample_on(be, &a, &ext),
        Device::Cuda(be) => sample_on(be, &a, &ext),
    }
}

fn sample_on<B: Backend>(be: B, a: &SampleArgs, ext: &str) -> Result<()> {
    let (cfg, gen) = wgan::train::snapshot::load_generator(&be, &a.from)?;
    if ext == "csv" && !cfg.dataset.is_toy() {
        wgan::bail!(
            "--out {}: CSV output is for 2-D data, and this generator makes {}×{} images; use a .png name",
            a.out.display(),
            cfg.image_size,
            cfg.image_size
        );
    }
    let z = be.randn(&[a.n, cfg.nz], a.seed, wgan::train::gan::STREAM_FIXED_NOISE + 100);
    let x = be.to_f32(&wgan::train::gan::sample_with(&be, &gen, &z));
    if cfg.dataset.is_toy() {
        if ext == "csv" {
            let mut s = String::with_capacity(a.n * 24);
            for p in x.chunks(2) {
                s += &format!("{},{}\n", p[0], p[1]);
            }
            wgan::fsutil::atomic_write(&a.out, s.as_bytes())?;
        } else {
            let set: wgan::toy::ToyDataset = cfg.dataset.name().parse()?;
            let real = set.sample(&mut wgan::rng::HostRng::new(a.seed, 7), a.n);
            wgan::plot::toy_figure(&a.out, &real, &x, None)?;
        }
    } else {
        let (c, s) = (cfg.channels, cfg.image_size);
        let cols = (a.n as f64).sqrt().ceil() as usize;
        wgan::plot::image_grid(&a.out, &x, a.n, c, s, s, cols)?;
    }
    eprintln!("wrote {} samples to {}", a.n, a.out.display());
    Ok(())
}

fn view(a: ViewArgs) -> Result<()> {
    if !a.host.is_loopback() {
        eprintln!(
            "warning: --host {}: the page and its API are open to other machines, without authentication",
            a.host
        );
    }
    let opts = wgan::view::ViewOptions { from: a.from, host: a.host, port: a.port, device: a.device };
    let server = wgan::view::ViewServer::start(&opts)?;
    let (root, device) = server.describe();
    println!("wgan view: runs in {}, samples on {device}", root.display());
    println!("open {}   (Ctrl-C to stop)", server.url());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.wait();
    Ok(())
}

fn info() -> Result<()> {
    println!("wgan {}", env!("CARGO_PKG_VERSION"));
    println!("cpu: {}", wgan::backend::cpu::Cpu::<f32>::new().name());
    println!("{}", wgan::backend::cuda::system_report());
    println!("{}", wgan::dist::info_line());
    Ok(())
}
