//! Checkpoints of a run: three safetensors files in one folder, written as a whole.
//!
//! - `generator.safetensors`, `critic.safetensors`: the state dicts of the matching PyTorch modules
//!   (`benches/reference/wgan_torch.py`): `main.{i}.weight`, `main.{i}.bias`, batch norm's
//!   `running_mean`, `running_var` and `num_batches_tracked`; metadata holds the run's
//!   configuration, so `wgan sample` can rebuild the generator from its file alone.
//! - `state.safetensors`: both optimizers' state (PyTorch's names: `exp_avg`, `exp_avg_sq`,
//!   `square_avg`, prefixed by the model's role), the step counters, the random draw counter and
//!   the data position: everything a resumed run needs to continue exactly.
//!
//! The folder is written under a temporary name and swapped in by renames, so an interrupted save
//! leaves the previous checkpoint whole.

use super::config::TrainConfig;
use super::gan::Gan;
use crate::backend::Backend;
use crate::checkpoint::{check_layout, read_safetensors, write_safetensors, NamedTensor};
use crate::error::{Context, Result};
use crate::nn::Model;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub const GENERATOR_FILE: &str = "generator.safetensors";
pub const CRITIC_FILE: &str = "critic.safetensors";
pub const STATE_FILE: &str = "state.safetensors";
pub const FORMAT: &str = "wgan-checkpoint-1";

/// Counters that are not tensors of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Generator steps done.
    pub step: u64,
    /// The data source's position (batches drawn, or the toy generator's counter).
    pub data_position: u64,
}

fn model_tensors<B: Backend>(be: &B, m: &Model<B>) -> Vec<NamedTensor> {
    let mut out: Vec<NamedTensor> =
        m.named_state(be).into_iter().map(|(name, shape, data)| NamedTensor::f32(name, shape, data)).collect();
    for name in m.net.batch_counters() {
        out.push(NamedTensor::i64(name, vec![], vec![m.batches_tracked.get()]));
    }
    out
}

/// The names and shapes a model's file must hold.
pub fn expected_layout<B: Backend>(m: &Model<B>) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> =
        m.net.params.iter().chain(&m.net.buffers).map(|s| (s.name.clone(), s.shape.clone())).collect();
    v.extend(m.net.batch_counters().into_iter().map(|n| (n, vec![])));
    v
}

fn metadata(cfg: &TrainConfig, role: &str, step: u64) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("format".into(), FORMAT.into());
    m.insert("role".into(), role.into());
    m.insert("step".into(), step.to_string());
    m.insert("config".into(), serde_json::to_string(cfg).expect("config serialises"));
    m
}

fn scalar(name: &str, v: u64) -> NamedTensor {
    NamedTensor::i64(name, vec![1], vec![v as i64])
}

/// Writes the checkpoint folder `dir` (e.g. RUN/checkpoint) atomically.
pub fn save<B: Backend>(dir: &Path, cfg: &TrainConfig, gan: &Gan<B>, p: Progress) -> Result<()> {
    let be = &gan.be;
    let tmp = sibling(dir, "tmp");
    let old = sibling(dir, "old");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).context(|| format!("cannot create checkpoint folder {}", tmp.display()))?;
    write_safetensors(&tmp.join(GENERATOR_FILE), &model_tensors(be, &gan.gen), &metadata(cfg, "generator", p.step))?;
    write_safetensors(&tmp.join(CRITIC_FILE), &model_tensors(be, &gan.critic), &metadata(cfg, "critic", p.step))?;
    let mut state = vec![
        scalar("step", p.step),
        scalar("draws", gan.draws),
        scalar("data_position", p.data_position),
        scalar("generator.optim_step", gan.opt_g.t),
        scalar("critic.optim_step", gan.opt_d.t),
    ];
    for (role, opt, n) in
        [("generator", &gan.opt_g, gan.gen.net.num_params()), ("critic", &gan.opt_d, gan.critic.net.num_params())]
    {
        for (name, v) in opt.state_tensors(be) {
            let len = v.len();
            debug_assert!(len == n || len == 1);
            state.push(NamedTensor::f32(format!("{role}.{name}"), vec![len], v));
        }
    }
    write_safetensors(&tmp.join(STATE_FILE), &state, &metadata(cfg, "state", p.step))?;
    // Swap: dir → old, tmp → dir, drop old. A crash in between leaves `old` or `tmp` whole, and
    // `find` looks there too.
    let _ = fs::remove_dir_all(&old);
    if dir.exists() {
        fs::rename(dir, &old).context(|| format!("cannot replace checkpoint {}", dir.display()))?;
    }
    fs::rename(&tmp, dir).context(|| format!("cannot write checkpoint {}", dir.display()))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    dir.with_file_name(format!("{name}.{tag}"))
}

/// The checkpoint folder to resume from: `dir` itself, or the previous one kept by an interrupted
/// save.
pub fn find(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), sibling(dir, "old")].into_iter().find(|d| d.join(STATE_FILE).is_file())
}

fn load_model<B: Backend>(be: &B, m: &mut Model<B>, path: &Path) -> Result<BTreeMap<String, String>> {
    let (tensors, meta) = read_safetensors(path)?;
    check_layout(&tensors, &expected_layout(m), path)?;
    let by_name: BTreeMap<&str, &NamedTensor> = tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let gather = |slots: &[crate::nn::Slot], total: usize| -> Result<Vec<f32>> {
        let mut v = vec![0f32; total];
        for s in slots {
            let t = by_name[s.name.as_str()];
            let data = t.as_f32().ok_or_else(|| crate::Error(format!("{}: {} must be F32", path.display(), s.name)))?;
            v[s.offset..s.offset + s.len()].copy_from_slice(data);
        }
        Ok(v)
    };
    let params = gather(&m.net.params, m.net.num_params())?;
    let buffers = gather(&m.net.buffers, m.net.num_buffers())?;
    let mut tracked = 0;
    if let Some(name) = m.net.batch_counters().first() {
        let t = by_name[name.as_str()];
        tracked = t
            .as_i64()
            .and_then(|v| v.first().copied())
            .ok_or_else(|| crate::Error(format!("{}: {name} must be one I64 value", path.display())))?;
    }
    *m = Model::from_host(be, m.net.clone(), &params, &buffers, tracked);
    Ok(meta)
}

/// Loads the checkpoint folder `dir` into `gan` (whose architecture must match) and returns the
/// counters to continue from.
pub fn load<B: Backend>(dir: &Path, gan: &mut Gan<B>) -> Result<Progress> {
    let be = gan.be.clone();
    load_model(&be, &mut gan.gen, &dir.join(GENERATOR_FILE))?;
    load_model(&be, &mut gan.critic, &dir.join(CRITIC_FILE))?;
    let path = dir.join(STATE_FILE);
    let (tensors, _) = read_safetensors(&path)?;
    let by_name: BTreeMap<String, NamedTensor> = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let int = |name: &str| -> Result<u64> {
        by_name
            .get(name)
            .and_then(|t| t.as_i64())
            .and_then(|v| v.first().copied())
            .filter(|&v| v >= 0)
            .map(|v| v as u64)
            .ok_or_else(|| crate::Error(format!("{}: missing or invalid counter {name:?}", path.display())))
    };
    let floats = |name: String| -> Result<Vec<f32>> {
        by_name
            .get(&name)
            .and_then(|t| t.as_f32())
            .map(|v| v.to_vec())
            .ok_or_else(|| crate::Error(format!("{}: missing optimizer state {name:?}", path.display())))
    };
    let (tg, td) = (int("generator.optim_step")?, int("critic.optim_step")?);
    gan.opt_g.load_state(&be, tg, |n| floats(format!("generator.{n}"))).context(|| path.display().to_string())?;
    gan.opt_d.load_state(&be, td, |n| floats(format!("critic.{n}"))).context(|| path.display().to_string())?;
    gan.draws = int("draws")?;
    let step = int("step")?;
    gan.gen_steps = step;
    Ok(Progress { step, data_position: int("data_position")? })
}

/// The configuration stored in a checkpoint file's metadata.
pub fn config_of(path: &Path) -> Result<TrainConfig> {
    let (_, meta) = read_safetensors(path)?;
    let json = meta.get("config").ok_or_else(|| {
        crate::Error(format!("{}: not a wgan checkpoint (no configuration in its metadata)", path.display()))
    })?;
    serde_json::from_str(json).context(|| format!("{}: unreadable configuration in metadata", path.display()))
}

/// Reads a generator from a run folder, a checkpoint folder or a generator file.
pub fn load_generator<B: Backend>(be: &B, from: &Path) -> Result<(TrainConfig, Model<B>)> {
    let file = if from.is_file() {
        from.to_path_buf()
    } else if from.join(GENERATOR_FILE).is_file() {
        from.join(GENERATOR_FILE)
    } else if let Some(d) = find(&from.join("checkpoint")) {
        d.join(GENERATOR_FILE)
    } else if from.exists() {
        crate::bail!("{}: no checkpoint found (expected a run folder with checkpoint/{GENERATOR_FILE}, a checkpoint folder, or a {GENERATOR_FILE} file)", from.display())
    } else {
        crate::bail!("{}: no such file or folder", from.display())
    };
    let cfg = config_of(&file)?;
    let (gnet, _) = cfg.networks()?;
    let mut m = Model::new(be, gnet, 0, 0);
    load_model(be, &mut m, &file)?;
    Ok((cfg, m))
}

/// Reads the critic of a checkpoint folder (for pictures of its surface, e.g. `wgan view`).
pub fn load_critic<B: Backend>(be: &B, dir: &Path) -> Result<(TrainConfig, Model<B>)> {
    let file = dir.join(CRITIC_FILE);
    let cfg = config_of(&file)?;
    let (_, cnet) = cfg.networks()?;
    let mut m = Model::new(be, cnet, 0, 0);
    load_model(be, &mut m, &file)?;
    Ok((cfg, m))
}
