//! The runs `wgan view` shows, found on disk on every request (so runs started later appear).
//!
//! Confinement: a request names a run by a single folder name, which is looked up among the
//! entries listed from the runs folder; a sample picture by a `step_N.png` name looked up in that
//! run's `samples/`. Nothing from a request is ever joined to a path unchecked, so `../`, absolute
//! paths and encoded slashes name nothing and are refused.

use super::ApiError;
use crate::train::snapshot::{self, GENERATOR_FILE};
use serde_json::{json, Value};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A run whose metrics.jsonl changed this recently is shown as training.
pub const LIVE_WITHIN: Duration = Duration::from_secs(30);
/// A safetensors header larger than this is not read for listing (the checkpoint still loads, or fails, on use).
const MAX_HEADER_PEEK: u64 = 16 << 20;

/// The folder `wgan view` serves: one run, or a folder of runs.
#[derive(Clone, Debug)]
pub struct RunSet {
    root: PathBuf,
    /// Set when `root` is itself a run: its name, the only one served.
    single: Option<String>,
}

/// Whether `dir` looks like a `wgan train` output folder.
pub fn is_run(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        || dir.join("metrics.jsonl").is_file()
        || dir.join("checkpoint").is_dir()
        || dir.join("checkpoint.old").is_dir()
}

impl RunSet {
    pub fn open(from: &Path) -> crate::Result<RunSet> {
        if !from.exists() {
            crate::bail!(
                "--from {}: no such folder (train a run first with `wgan train`, or pass --from RUN_OR_RUNS_FOLDER)",
                from.display()
            );
        }
        if !from.is_dir() {
            crate::bail!("--from {}: expected a run folder or a folder of runs, got a file", from.display());
        }
        let root = from.canonicalize().unwrap_or_else(|_| from.to_path_buf());
        let single = if is_run(&root) {
            Some(root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into()))
        } else {
            None
        };
        Ok(RunSet { root, single })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The runs' names, sorted.
    pub fn names(&self) -> Vec<String> {
        if let Some(name) = &self.single {
            return vec![name.clone()];
        }
        let mut v: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                (!name.starts_with('.') && is_run(&e.path())).then_some(name)
            })
            .collect();
        v.sort();
        v
    }

    /// The folder of run `name`: 400 for anything that is not a plain folder name, 404 for a name
    /// that is not one of [`RunSet::names`].
    pub fn resolve(&self, name: &str) -> Result<PathBuf, ApiError> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains(['/', '\\', '\0'])
            || name.starts_with('.')
            || Path::new(name).is_absolute()
        {
            return Err(ApiError::bad_request(format!(
                "run {name:?}: expected the name of a run folder (no slashes, no leading dot)"
            )));
        }
        if !self.names().iter().any(|n| n == name) {
            return Err(ApiError::not_found(format!("no run named {name:?} (GET /api/runs lists them)")));
        }
        Ok(match &self.single {
            Some(_) => self.root.clone(),
            None => self.root.join(name),
        })
    }
}

/// A checkpoint folder of a run.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    /// Its path inside the run, e.g. `checkpoint` or `checkpoints/step_400`.
    pub name: String,
    /// The generator step it was saved at (from the file's metadata).
    pub step: Option<u64>,
    /// Why its generator file cannot be read, if it cannot.
    pub error: Option<String>,
}

/// The run's checkpoints: `checkpoint/` (or the `checkpoint.old/` an interrupted save keeps), and
/// any copies kept as `checkpoints/NAME/`, in step order.
pub fn checkpoints(run: &Path) -> Vec<Checkpoint> {
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    let main = run.join("checkpoint");
    if let Some(d) = snapshot::find(&main) {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        dirs.push((d, name));
    } else if main.join(GENERATOR_FILE).exists() {
        dirs.push((main, "checkpoint".into()));
    }
    let mut kept: Vec<(PathBuf, String)> = fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let p = e.path();
            (!name.starts_with('.') && p.join(GENERATOR_FILE).exists()).then(|| (p, format!("checkpoints/{name}")))
        })
        .collect();
    kept.sort();
    dirs.extend(kept);
    let mut v: Vec<Checkpoint> = dirs
        .into_iter()
        .map(|(dir, name)| match checkpoint_step(&dir.join(GENERATOR_FILE)) {
            Ok(step) => Checkpoint { dir, name, step: Some(step), error: None },
            Err(e) => Checkpoint { dir, name, step: None, error: Some(e) },
        })
        .collect();
    v.sort_by_key(|c| c.step.unwrap_or(0));
    v
}

/// The step in a generator file's metadata, reading only its header.
fn checkpoint_step(file: &Path) -> Result<u64, String> {
    let corrupt = |why: &str| format!("{}: unreadable checkpoint ({why})", file.display());
    let mut f = fs::File::open(file).map_err(|e| corrupt(&e.to_string()))?;
    let size = f.metadata().map_err(|e| corrupt(&e.to_string()))?.len();
    let mut len8 = [0u8; 8];
    f.read_exact(&mut len8).map_err(|_| corrupt("shorter than a safetensors header"))?;
    let n = u64::from_le_bytes(len8);
    if n > size - 8 || n > MAX_HEADER_PEEK {
        return Err(corrupt("header length past the end of the file: half-written or not safetensors"));
    }
    let mut head = vec![0u8; n as usize];
    f.read_exact(&mut head).map_err(|e| corrupt(&e.to_string()))?;
    let v: Value = serde_json::from_slice(&head).map_err(|_| corrupt("header is not JSON"))?;
    v["__metadata__"]["step"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("no step in its metadata: not a wgan checkpoint"))
}

/// The checkpoint to draw from: the one saved at `step`, or the latest readable one.
pub fn choose_checkpoint(run_name: &str, run: &Path, step: Option<u64>) -> Result<Checkpoint, ApiError> {
    let all = checkpoints(run);
    let steps = || {
        let s: Vec<String> = all.iter().filter_map(|c| c.step).map(|s| s.to_string()).collect();
        if s.is_empty() {
            "none".to_string()
        } else {
            s.join(", ")
        }
    };
    match step {
        Some(k) => all.iter().find(|c| c.step == Some(k)).cloned().ok_or_else(|| {
            ApiError::not_found(format!("run {run_name:?} has no checkpoint at step {k} (checkpoints at: {})", steps()))
        }),
        None => {
            if let Some(c) = all.iter().rev().find(|c| c.error.is_none()) {
                Ok(c.clone())
            } else if let Some(c) = all.first() {
                Err(ApiError::new(422, c.error.clone().unwrap_or_default()))
            } else {
                Err(ApiError::not_found(format!("run {run_name:?} has no checkpoint yet")))
            }
        }
    }
}

/// The steps of the pictures in `samples/` (`step_NNNNNN.png`), sorted.
pub fn sample_steps(run: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(run.join("samples"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| sample_file_step(e.file_name().to_str()?))
        .collect();
    v.sort_unstable();
    v
}

/// The step of a sample picture's file name, `step_N.png` with N in digits.
pub fn sample_file_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step_")?.strip_suffix(".png")?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The bytes of sample picture `name` of a run: 400 for a name that is not `step_N.png`, 404 when
/// there is none.
pub fn sample_file(run_name: &str, run: &Path, name: &str) -> Result<Vec<u8>, ApiError> {
    if sample_file_step(name).is_none() {
        return Err(ApiError::bad_request(format!("sample picture {name:?}: expected a name like step_000100.png")));
    }
    fs::read(run.join("samples").join(name))
        .map_err(|_| ApiError::not_found(format!("run {run_name:?} has no sample picture {name:?}")))
}

/// The records of metrics.jsonl with a step after `after`, and how many lines could not be read
/// (a line being written as we read is skipped, and read on the next poll).
pub fn metrics(run: &Path, after: Option<u64>) -> (Vec<Value>, usize) {
    let Ok(text) = fs::read_to_string(run.join("metrics.jsonl")) else { return (vec![], 0) };
    let mut skipped = 0;
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(r) if r.is_object() => {
                if after.map_or(true, |a| r["step"].as_u64().is_some_and(|s| s > a)) {
                    v.push(r);
                }
            }
            _ => skipped += 1,
        }
    }
    (v, skipped)
}

/// The run's configuration: config.json, or else the one in its checkpoint's metadata.
pub fn config(run_name: &str, run: &Path) -> Result<Value, ApiError> {
    if let Ok(text) = fs::read_to_string(run.join("config.json")) {
        return serde_json::from_str(&text)
            .map_err(|e| ApiError::new(422, format!("run {run_name:?}: config.json is not valid JSON ({e})")));
    }
    let c = choose_checkpoint(run_name, run, None)?;
    let cfg = snapshot::config_of(&c.dir.join(GENERATOR_FILE)).map_err(|e| ApiError::new(422, e.0))?;
    Ok(serde_json::to_value(cfg).expect("config serialises"))
}

/// What the page's run list shows of a run.
pub fn summary(name: &str, run: &Path) -> Value {
    let cfg = config(name, run).ok();
    let (records, _) = metrics(run, None);
    let last_step = records.iter().filter_map(|r| r["step"].as_u64()).max();
    let live = fs::metadata(run.join("metrics.jsonl"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < LIVE_WITHIN);
    let cks: Vec<Value> = checkpoints(run)
        .iter()
        .map(|c| json!({"name": c.name, "step": c.step, "error": c.error, "critic": c.dir.join(snapshot::CRITIC_FILE).is_file()}))
        .collect();
    let get = |k: &str| cfg.as_ref().map(|c| c[k].clone()).unwrap_or(Value::Null);
    json!({
        "name": name,
        "dataset": get("dataset"),
        "loss": get("loss"),
        "toy": cfg.as_ref().and_then(|c| c["dataset"].as_str()).map(is_toy_name),
        "image_size": get("image_size"),
        "channels": get("channels"),
        "nz": get("nz"),
        "steps": get("steps"),
        "last_step": last_step,
        "live": live,
        "checkpoints": cks,
        "samples": sample_steps(run),
    })
}

fn is_toy_name(dataset: &str) -> bool {
    dataset.parse::<crate::train::DatasetKind>().map(|d| d.is_toy()).unwrap_or(false)
}
