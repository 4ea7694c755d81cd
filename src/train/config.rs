//! The resolved configuration of a training run: every choice, defaults filled in, checked, and
//! saved as `config.json` in the run folder (a resumed run reads it back).

use crate::backend::PenaltyKind;
use crate::error::Result;
use crate::nn::arch::CriticNorm;
use crate::nn::InitRule;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where training data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetKind {
    #[serde(rename = "mnist")]
    Mnist,
    #[serde(rename = "cifar10")]
    Cifar10,
    #[serde(rename = "folder")]
    Folder,
    #[serde(rename = "8gaussians")]
    EightGaussians,
    #[serde(rename = "25gaussians")]
    TwentyFiveGaussians,
    #[serde(rename = "swissroll")]
    SwissRoll,
}

impl DatasetKind {
    pub const NAMES: &'static str = "mnist, cifar10, folder, 8gaussians, 25gaussians or swissroll";

    pub fn is_toy(self) -> bool {
        matches!(self, Self::EightGaussians | Self::TwentyFiveGaussians | Self::SwissRoll)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::Cifar10 => "cifar10",
            Self::Folder => "folder",
            Self::EightGaussians => "8gaussians",
            Self::TwentyFiveGaussians => "25gaussians",
            Self::SwissRoll => "swissroll",
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "mnist" => Self::Mnist,
            "cifar10" => Self::Cifar10,
            "folder" => Self::Folder,
            "8gaussians" => Self::EightGaussians,
            "25gaussians" => Self::TwentyFiveGaussians,
            "swissroll" => Self::SwissRoll,
            _ => return Err(format!("expected {}, got {s:?}", Self::NAMES)),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    #[serde(rename = "wgan")]
    Wgan,
    #[serde(rename = "wgan-gp")]
    WganGp,
    /// The standard GAN (Goodfellow et al. 2014), minimax: the discriminator minimises the sigmoid
    /// cross-entropy of its logits (real 1, fake 0), the generator minimises log(1 − σ(D(G(z)))).
    #[serde(rename = "gan")]
    Gan,
    /// The standard GAN with the non-saturating generator loss −log σ(D(G(z))) (Goodfellow et al.
    /// 2014, §3), the form used in practice.
    #[serde(rename = "nsgan")]
    NsGan,
}

impl Loss {
    pub const NAMES: &'static str = "wgan, wgan-gp, gan or nsgan";

    /// Whether the critic is a Wasserstein critic (WGAN, WGAN-GP) rather than a discriminator.
    pub fn is_wasserstein(self) -> bool {
        matches!(self, Loss::Wgan | Loss::WganGp)
    }

    /// For messages: "WGAN", "WGAN-GP", "GAN", "NS-GAN".
    pub fn title(self) -> &'static str {
        match self {
            Loss::Wgan => "WGAN",
            Loss::WganGp => "WGAN-GP",
            Loss::Gan => "GAN (minimax)",
            Loss::NsGan => "GAN (non-saturating)",
        }
    }
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "wgan" => Ok(Loss::Wgan),
            "wgan-gp" => Ok(Loss::WganGp),
            "gan" => Ok(Loss::Gan),
            "nsgan" => Ok(Loss::NsGan),
            _ => Err(format!("expected {}, got {s:?}", Loss::NAMES)),
        }
    }
}

/// Two-sided (‖g‖−1)² or one-sided max(0, ‖g‖−1)².
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Penalty {
    #[serde(rename = "two-sided")]
    TwoSided,
    #[serde(rename = "one-sided")]
    OneSided,
}

impl Penalty {
    pub fn kind(self) -> PenaltyKind {
        match self {
            Penalty::TwoSided => PenaltyKind::TwoSided,
            Penalty::OneSided => PenaltyKind::OneSided,
        }
    }
}

impl std::str::FromStr for Penalty {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "two-sided" => Ok(Penalty::TwoSided),
            "one-sided" => Ok(Penalty::OneSided),
            _ => Err(format!("expected two-sided or one-sided, got {s:?}")),
        }
    }
}

/// A named configuration (`--preset`): values for the flags it names, each of which a flag given
/// beside it still overrides. Image data only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    /// The default job as it is today: the WGAN-GP paper's Algorithm 1 (Adam 1e-4, betas (0, 0.9),
    /// λ 10, n_critic 5, batch 64) on this crate's DCGAN of width 32 with a layer-norm critic,
    /// 400 generator steps. `wgan train` with no flags trains this.
    #[serde(rename = "dcgan-w32")]
    DcganW32,
    /// The settings of the WGAN-GP paper's MNIST script (`gan_mnist.py`, MODE = 'wgan-gp'): width
    /// (DIM) 64, batch 50, latent size 128, Adam 1e-4 with betas (0.5, 0.9) for both networks, λ 10,
    /// 5 critic iterations, no normalisation in the critic, 200,000 generator steps. The networks
    /// are this crate's DCGAN-28 at that width, not the script's own (see [`Preset::note`]).
    #[serde(rename = "gan-mnist")]
    GanMnist,
}

impl Preset {
    pub const NAMES: &'static str = "dcgan-w32 or gan-mnist";

    pub fn name(self) -> &'static str {
        match self {
            Preset::DcganW32 => "dcgan-w32",
            Preset::GanMnist => "gan-mnist",
        }
    }

    /// What a user should know about the preset, printed when a run starts.
    pub fn note(self) -> Option<&'static str> {
        match self {
            Preset::DcganW32 => None,
            Preset::GanMnist => Some(
                "gan-mnist: gan_mnist.py's hyperparameters on this crate's DCGAN-28 (4×4 transposed convolutions \
                 with batch norm, tanh output, 4×4 critic convolutions); the script's own networks (a linear \
                 input layer, 5×5 kernels with biases, no batch norm, sigmoid output on [0, 1] pixels, a linear \
                 critic head) are not built here",
            ),
        }
    }

    /// Fills the options this preset sets and the user left unset.
    fn apply(self, o: &mut TrainOptions) -> Result<()> {
        let dataset = o.dataset.unwrap_or(DatasetKind::Mnist);
        if dataset.is_toy() {
            crate::bail!(
                "--preset {}: presets are image configurations, and {} is a 2-D toy data set",
                self.name(),
                dataset.name()
            );
        }
        if self == Preset::GanMnist && (dataset != DatasetKind::Mnist || o.image_size.is_some_and(|s| s != 28)) {
            crate::bail!(
                "--preset gan-mnist: gan_mnist.py's configuration is for 28×28 MNIST digits (--dataset mnist)"
            );
        }
        if let Some(l) = o.loss.filter(|&l| l != Loss::WganGp) {
            crate::bail!(
                "--preset {}: a WGAN-GP configuration, and --loss {} asks for another loss",
                self.name(),
                shown_loss(l)
            );
        }
        let (width, batch, nz, lr, betas, lambda, n_critic, norm, steps) = match self {
            Preset::DcganW32 => (32, 64, 100, 1e-4, (0.0, 0.9), 10.0, 5, CriticNorm::Layer, 400),
            Preset::GanMnist => (64, 50, 128, 1e-4, (0.5, 0.9), 10.0, 5, CriticNorm::None, 200_000),
        };
        o.loss = Some(Loss::WganGp);
        o.width.get_or_insert(width);
        o.batch_size.get_or_insert(batch);
        o.nz.get_or_insert(nz);
        o.lr.get_or_insert(lr);
        o.betas.get_or_insert(betas);
        o.lambda.get_or_insert(lambda);
        o.n_critic.get_or_insert(n_critic);
        o.critic_norm.get_or_insert(norm);
        o.steps.get_or_insert(steps);
        o.penalty.get_or_insert(Penalty::TwoSided);
        o.init.get_or_insert(InitRule::Dcgan);
        Ok(())
    }
}

fn shown_loss(l: Loss) -> &'static str {
    match l {
        Loss::Wgan => "wgan",
        Loss::WganGp => "wgan-gp",
        Loss::Gan => "gan",
        Loss::NsGan => "nsgan",
    }
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "dcgan-w32" => Ok(Preset::DcganW32),
            "gan-mnist" => Ok(Preset::GanMnist),
            _ => Err(format!("expected {}, got {s:?}", Preset::NAMES)),
        }
    }
}

/// Everything a run needs, resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetKind,
    /// `None` with `mnist`: the embedded 10,000 digits.
    pub data: Option<PathBuf>,
    pub loss: Loss,
    pub penalty: Penalty,
    pub lambda: f64,
    pub n_critic: usize,
    pub clip: f64,
    pub lr: f64,
    pub betas: (f64, f64),
    pub batch_size: usize,
    pub steps: u64,
    /// Image side (image datasets); 2-D points for toy data.
    pub image_size: usize,
    /// Image channels (1 for MNIST, 3 for CIFAR-10, chosen for folders).
    pub channels: usize,
    pub width: usize,
    pub nz: usize,
    /// `none` on toy data: the toy MLP critic has no normalisation.
    pub critic_norm: CriticNorm,
    /// How the networks' parameters start (`crate::nn::InitRule`). Configurations written before
    /// this field existed ran with `dcgan`, the serde default.
    #[serde(default)]
    pub init: InitRule,
    pub wgan_schedule: bool,
    pub seed: u64,
    pub device: String,
    /// Matrix-product and convolution precision on CUDA devices (`--precision`; the CPU ignores it).
    /// Configurations written before it existed read as the default, tf32.
    #[serde(default)]
    pub precision: crate::backend::Precision,
    pub out: PathBuf,
    pub sample_every: u64,
    pub checkpoint_every: u64,
    /// Points of training time, in seconds, at which a copy of the checkpoint is kept in
    /// `RUN/checkpoints/t{S}s/` (`--snapshot-at`; [`snapshot_name`]). Training time is the sum of
    /// the generator steps' own durations (metrics.jsonl's `seconds`): sample pictures, FID probes
    /// and checkpoints are not counted. Sorted, without repeats.
    #[serde(default)]
    pub snapshot_at: Vec<f64>,
    /// Stop once the training time reaches this many seconds (`--time-limit`), or at `steps`,
    /// whichever comes first.
    #[serde(default)]
    pub time_limit: Option<f64>,
    /// The `--preset` the run started from, if any (its values are in the fields above).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// The crate version that wrote this configuration.
    pub version: String,
    /// Capture the training step into CUDA graphs and replay them (`--graph on|off`, default on;
    /// no effect on the CPU). Results are bit-identical either way.
    #[serde(default = "graph_default")]
    pub graph: bool,
    /// Print launches, allocations and host time per step (`--profile` or `WGAN_PROFILE=1`).
    #[serde(skip)]
    pub profile: bool,
    /// How a data-parallel run (`mpirun -np N wgan train`, `crate::dist`) was launched; absent in
    /// one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<Distributed>,
}

/// The ranks of a data-parallel run, as config.json records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distributed {
    pub world_size: usize,
    /// Rows of the global batch (`batch_size`) each rank trains on.
    pub rank_batch: usize,
    /// Per rank, in rank order: "host: device".
    pub devices: Vec<String>,
    /// Gradients and statistics summed in rank order (`--deterministic-reduce`).
    pub deterministic_reduce: bool,
    /// Gradients averaged in buckets during the backward pass (`--overlap-reduce`).
    #[serde(default)]
    pub overlap_reduce: bool,
}

/// The run folder when `--out` is not given (a fresh run and `--resume` alike).
pub const DEFAULT_OUT: &str = "runs/latest";

fn graph_default() -> bool {
    true
}

/// What the command line may set; `None` takes the default for the dataset and loss.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub dataset: Option<DatasetKind>,
    pub data: Option<PathBuf>,
    pub loss: Option<Loss>,
    pub penalty: Option<Penalty>,
    pub lambda: Option<f64>,
    pub n_critic: Option<usize>,
    pub clip: Option<f64>,
    pub lr: Option<f64>,
    pub betas: Option<(f64, f64)>,
    pub batch_size: Option<usize>,
    pub steps: Option<u64>,
    pub image_size: Option<usize>,
    pub channels: Option<usize>,
    pub width: Option<usize>,
    pub nz: Option<usize>,
    pub critic_norm: Option<CriticNorm>,
    pub init: Option<InitRule>,
    pub wgan_schedule: bool,
    pub seed: Option<u64>,
    pub device: Option<String>,
    pub precision: Option<crate::backend::Precision>,
    pub out: Option<PathBuf>,
    pub sample_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    /// `--snapshot-at`: seconds of training time.
    pub snapshot_at: Vec<f64>,
    /// `--time-limit`: seconds of training time.
    pub time_limit: Option<f64>,
    /// `--graph on|off` (None: on).
    pub graph: Option<bool>,
    /// `--preset`: named values for the options left unset.
    pub preset: Option<Preset>,
    pub profile: bool,
}

impl TrainOptions {
    /// Fills in defaults and checks every value.
    ///
    /// Defaults follow the papers: WGAN-GP Adam(1e-4, betas (0, 0.9)), λ = 10; WGAN RMSProp 5e-5,
    /// clip 0.01; n_critic 5. The toy data sets follow the WGAN-GP paper's gan_toy.py instead
    /// (λ = 0.1, betas (0.5, 0.9), batch 256), the configuration its toy figures come from.
    pub fn resolve(mut self) -> Result<TrainConfig> {
        if let Some(p) = self.preset {
            p.apply(&mut self)?;
        }
        let dataset = self.dataset.unwrap_or(DatasetKind::Mnist);
        let loss = self.loss.unwrap_or(Loss::WganGp);
        let toy = dataset.is_toy();
        let lambda = self.lambda.unwrap_or(if toy { 0.1 } else { 10.0 });
        // The standard GAN (gan, nsgan): on toy data gan_toy.py's Adam (1e-4, betas (0.5, 0.9)), so
        // that only the loss differs from the toy WGAN-GP; on images the DCGAN paper's Adam (2e-4,
        // betas (0.5, 0.999)). One discriminator step per generator step, as the standard GAN
        // alternates (and as the WGAN-GP code's `dcgan` mode sets CRITIC_ITERS = 1).
        let gan = !loss.is_wasserstein();
        let betas = self.betas.unwrap_or(match () {
            _ if toy => (0.5, 0.9),
            _ if gan => (0.5, 0.999),
            _ => (0.0, 0.9),
        });
        let lr = self.lr.unwrap_or(match loss {
            Loss::WganGp => 1e-4,
            Loss::Wgan => 5e-5,
            Loss::Gan | Loss::NsGan => {
                if toy {
                    1e-4
                } else {
                    2e-4
                }
            }
        });
        let clip = self.clip.unwrap_or(0.01);
        let n_critic = self.n_critic.unwrap_or(if gan { 1 } else { 5 });
        let batch_size = self.batch_size.unwrap_or(if toy { 256 } else { 64 });
        let steps = self.steps.unwrap_or(if toy { 1000 } else { 400 });
        let channels = self.channels.unwrap_or(match dataset {
            DatasetKind::Mnist => 1,
            DatasetKind::Cifar10 | DatasetKind::Folder => 3,
            _ => 1,
        });
        let image_size = self.image_size.unwrap_or(match dataset {
            DatasetKind::Mnist => 28,
            _ => {
                if toy {
                    2
                } else {
                    32
                }
            }
        });
        let width = self.width.unwrap_or(if toy { crate::nn::arch::TOY_DIM } else { 32 });
        let nz = self.nz.unwrap_or(if toy { crate::nn::arch::TOY_NZ } else { 100 });
        // The toy critic is a plain MLP: it has no normalisation to choose.
        if toy && self.critic_norm == Some(CriticNorm::Layer) {
            crate::bail!("--critic-norm layer: the {} toy critic is an MLP without normalisation", dataset.name());
        }
        let critic_norm = self.critic_norm.unwrap_or(match loss {
            _ if toy => CriticNorm::None,
            Loss::WganGp | Loss::Gan | Loss::NsGan => CriticNorm::Layer,
            Loss::Wgan => CriticNorm::None,
        });
        // Per layer kind (src/nn/mod.rs, InitRule): PyTorch's defaults for the toy MLPs, DCGAN's for
        // the convolutional models.
        let init = self.init.unwrap_or(if toy { InitRule::Pytorch } else { InitRule::Dcgan });
        let cfg = TrainConfig {
            dataset,
            data: self.data,
            loss,
            penalty: self.penalty.unwrap_or(Penalty::TwoSided),
            lambda,
            n_critic,
            clip,
            lr,
            betas,
            batch_size,
            steps,
            image_size,
            channels,
            width,
            nz,
            critic_norm,
            init,
            wgan_schedule: self.wgan_schedule,
            seed: self.seed.unwrap_or(0),
            device: self.device.unwrap_or_else(|| "auto".into()),
            precision: self.precision.unwrap_or_default(),
            out: self.out.unwrap_or_else(|| PathBuf::from(DEFAULT_OUT)),
            sample_every: self.sample_every.unwrap_or(if toy { 250 } else { 50 }),
            checkpoint_every: self.checkpoint_every.unwrap_or(if toy { 500 } else { 100 }),
            snapshot_at: sorted_times(self.snapshot_at),
            time_limit: self.time_limit,
            preset: self.preset,
            version: env!("CARGO_PKG_VERSION").to_string(),
            graph: self.graph.unwrap_or(true),
            profile: self.profile || profile_from_env(),
            distributed: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Times sorted, each once.
pub fn sorted_times(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// A time as `--snapshot-at` and `--time-limit` take it: `90` or `90s` (seconds), `1.5m`
/// (minutes), `1h` (hours); positive and finite.
pub fn parse_seconds(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let (num, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * scale),
        _ => Err(format!("expected a positive time such as 90, 90s, 1.5m or 1h, got {text:?}")),
    }
}

/// Comma-separated times (`1m,2m,5m`), as `--snapshot-at` takes them.
pub fn parse_seconds_list(text: &str) -> std::result::Result<Vec<f64>, String> {
    text.split(',').map(parse_seconds).collect()
}

/// The folder name, under `RUN/checkpoints/`, of the snapshot kept at `seconds` of training time:
/// `t60s`, `t1.5s`.
pub fn snapshot_name(seconds: f64) -> String {
    format!("t{seconds}s")
}

/// `WGAN_PROFILE=1` asks for `--profile`.
pub fn profile_from_env() -> bool {
    std::env::var("WGAN_PROFILE").is_ok_and(|v| v == "1")
}

impl TrainConfig {
    /// Checks every value, naming the flag at fault and what it must be.
    pub fn validate(&self) -> Result<()> {
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        if !finite_pos(self.lr) {
            crate::bail!("--lr {}: the learning rate must be a positive number", self.lr);
        }
        if self.n_critic == 0 {
            crate::bail!("--n-critic 0: the critic must train at least once per generator step");
        }
        if self.loss == Loss::Wgan && !finite_pos(self.clip) {
            crate::bail!("--clip {}: the weight clipping bound must be a positive number", self.clip);
        }
        if self.loss == Loss::WganGp && !(self.lambda.is_finite() && self.lambda >= 0.0) {
            crate::bail!("--lambda {}: the penalty weight must be a number ≥ 0", self.lambda);
        }
        let (b1, b2) = self.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            crate::bail!("--betas {b1},{b2}: each beta must be in [0, 1)");
        }
        if self.batch_size == 0 {
            crate::bail!("--batch-size 0: expected at least 1");
        }
        if self.steps == 0 {
            crate::bail!("--steps 0: expected at least 1 generator step");
        }
        if self.nz == 0 {
            crate::bail!("--nz 0: the latent size must be at least 1");
        }
        if let Some(bad) = self.snapshot_at.iter().find(|&&v| !(v.is_finite() && v > 0.0)) {
            crate::bail!("--snapshot-at {bad}: expected positive times of training (seconds)");
        }
        if let Some(t) = self.time_limit.filter(|&v| !(v.is_finite() && v > 0.0)) {
            crate::bail!("--time-limit {t}: expected a positive time of training (seconds)");
        }
        if self.sample_every == 0 || self.checkpoint_every == 0 {
            crate::bail!("--sample-every and --checkpoint-every must be at least 1");
        }
        if self.width == 0 || self.width > 1024 {
            crate::bail!(
                "--width {}: expected a width between 1 and 1024 (DCGAN base channels, or the toy MLPs' hidden units)",
                self.width
            );
        }
        if self.dataset.is_toy() {
            if self.data.is_some() {
                crate::bail!("--data: the {} toy data set is generated, it reads no file", self.dataset.name());
            }
        } else {
            if ![28, 32, 64].contains(&self.image_size) {
                crate::bail!("--image-size {}: the DCGAN models make 28, 32 or 64 pixel images", self.image_size);
            }
            if ![1, 3].contains(&self.channels) {
                crate::bail!("--channels {}: expected 1 (grey) or 3 (RGB)", self.channels);
            }
            if matches!(self.dataset, DatasetKind::Cifar10 | DatasetKind::Folder) && self.data.is_none() {
                crate::bail!("--dataset {} needs --data PATH (the data set's folder)", self.dataset.name());
            }
        }
        Ok(())
    }
}

impl TrainConfig {
    /// The generator and critic networks this configuration trains.
    pub fn networks(&self) -> Result<(crate::nn::Net, crate::nn::Net)> {
        use crate::nn::arch;
        if self.dataset.is_toy() {
            Ok((
                arch::toy_generator_with(self.nz, self.width).with_init(self.init),
                arch::toy_critic_with(self.width).with_init(self.init),
            ))
        } else {
            Ok((
                arch::dcgan_generator(self.image_size, self.channels, self.width, self.nz)?.with_init(self.init),
                arch::dcgan_critic(self.image_size, self.channels, self.width, self.critic_norm)?.with_init(self.init),
            ))
        }
    }

    /// The optimizers of the generator and the critic.
    pub fn optimizers(&self) -> (super::OptimKind, super::OptimKind) {
        use super::optim::{OptimKind, OPTIM_EPS, RMSPROP_ALPHA};
        match self.loss {
            Loss::WganGp | Loss::Gan | Loss::NsGan => {
                let k = OptimKind::Adam { lr: self.lr, beta1: self.betas.0, beta2: self.betas.1, eps: OPTIM_EPS };
                (k, k)
            }
            Loss::Wgan => {
                let g = OptimKind::RmsProp { lr: self.lr, alpha: RMSPROP_ALPHA, eps: OPTIM_EPS, clip: None };
                let d = OptimKind::RmsProp { lr: self.lr, alpha: RMSPROP_ALPHA, eps: OPTIM_EPS, clip: Some(self.clip) };
                (g, d)
            }
        }
    }

    /// What one training step needs to know.
    pub fn step_config(&self) -> super::StepConfig {
        use super::LossKind;
        super::StepConfig {
            loss: match self.loss {
                Loss::WganGp => LossKind::WganGp { lambda: self.lambda, penalty: self.penalty.kind() },
                Loss::Wgan => LossKind::Wgan { clip: self.clip },
                Loss::Gan => LossKind::Gan { non_saturating: false },
                Loss::NsGan => LossKind::Gan { non_saturating: true },
            },
            n_critic: self.n_critic,
            wgan_schedule: self.wgan_schedule,
            batch: self.batch_size,
            nz: self.nz,
            seed: self.seed,
        }
    }

    /// A fresh generator–critic pair on `be`.
    pub fn build<B: crate::backend::Backend>(&self, be: B) -> Result<super::Gan<B>> {
        let (g, d) = self.networks()?;
        let (og, od) = self.optimizers();
        let mut gan = super::Gan::new(be, self.step_config(), g, d, og, od);
        gan.graph = self.graph;
        Ok(gan)
    }
}
