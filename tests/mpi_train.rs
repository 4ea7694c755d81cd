//! Data-parallel training under mpirun (issue 27, src/dist/): `mpirun -np N wgan train` computes
//! the single-process run with the same global batch.
//!
//! Each test launches the built binary under `mpirun --oversubscribe` (as root with OpenMPI's
//! OMPI_ALLOW_RUN_AS_ROOT variables) and compares checkpoints. They need a binary built with
//! `--features mpi` and OpenMPI's `mpirun` (scripts/install-mpi); without them they skip with a
//! note, or fail under WGAN_REQUIRE_MPI=1 (scripts/test sets it).
//!
//! Tolerance. The ranks add up the same terms as one process, in another order: each rank's
//! weight gradient sums its rows, and the ranks' sums are averaged. So a gradient differs from the
//! single process's by f32 rounding, a few units of u = 2⁻²⁴ relative. Adam's and RMSProp's steps
//! are normalised (of size ≈ lr, whatever the gradient's scale), so such a difference changes an
//! update by ≲ u·lr, and rounding the weight after the update adds ≤ u/2·|w|. Over S updates the
//! differences add up to ≲ S·2u·max(|w|, 1); the test allows twice that, 4u·S·max(1, max |w|),
//! per tensor, with S the run's optimizer updates, 20 × (n_critic + 1) = 120 here (3·10⁻⁵ for
//! weights of size 1). Measured: ≤ 6·10⁻⁷. Without the gradient average the ranks step on their
//! own half-batches, and the weights move apart by ~lr per update (10⁻⁴ to 10⁻³ after 20 steps):
//! `without_the_gradient_average_the_runs_differ` checks that these tests catch it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use wgan::checkpoint::{read_safetensors, TensorData};

const WGAN: &str = env!("CARGO_BIN_EXE_wgan");
const STEPS: u64 = 20;

/// Whether mpirun and an MPI-enabled binary are here; panics under WGAN_REQUIRE_MPI=1 if not.
fn mpi_ready() -> bool {
    let required = std::env::var("WGAN_REQUIRE_MPI").is_ok_and(|v| v == "1");
    let mpirun = Command::new("mpirun").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    let info = Command::new(WGAN).arg("info").output().expect("wgan info runs");
    let built = String::from_utf8_lossy(&info.stdout).contains("MPI yes");
    match (mpirun, built) {
        (true, true) => true,
        _ => {
            let why = if !mpirun {
                "mpirun not found (scripts/install-mpi installs OpenMPI)"
            } else {
                "the wgan binary was built without --features mpi"
            };
            assert!(!required, "WGAN_REQUIRE_MPI=1 but {why}");
            eprintln!("skipping: {why}");
            false
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgan-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs `cmd`, killing it after `limit` (a hung collective must fail the test, not CI).
fn run_with_limit(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("timed out after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The training flags of a test run (small: seconds per run).
fn flags(kind: &str, out: &Path) -> Vec<String> {
    let model: &[&str] = match kind {
        "8g-gp" => &["--dataset", "8gaussians", "--loss", "wgan-gp", "--width", "64"],
        "8g-wgan" => &["--dataset", "8gaussians", "--loss", "wgan", "--width", "64"],
        // DCGAN-28: batch norm in the generator (synchronised across ranks), layer norm in the critic.
        "dcgan28" => &["--dataset", "mnist", "--loss", "wgan-gp", "--width", "8"],
        _ => unreachable!(),
    };
    let common = ["--batch-size", "16", "--device", "cpu", "--threads", "1", "--sample-every", "1000"];
    let mut v: Vec<String> = ["train"].iter().chain(model).chain(&common).map(|s| s.to_string()).collect();
    v.extend(["--steps".into(), STEPS.to_string(), "--out".into(), out.display().to_string()]);
    v
}

/// `wgan ARGS` in one process.
fn single(args: &[String]) -> Output {
    let mut c = Command::new(WGAN);
    c.args(args).env("WGAN_SKIP_EVAL", "1");
    run_with_limit(c, Duration::from_secs(120))
}

/// `mpirun -np N wgan ARGS`, with `env` set on every rank.
fn mpi(np: usize, args: &[String], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c.args(["--oversubscribe", "-np", &np.to_string(), "-x", "WGAN_SKIP_EVAL=1"]);
    for (k, v) in env {
        c.args(["-x", &format!("{k}={v}")]);
    }
    c.arg(WGAN).args(args);
    run_with_limit(c, Duration::from_secs(180))
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Every tensor of a checkpoint folder's three files, by "file/name".
fn tensors(run: &Path) -> BTreeMap<String, TensorData> {
    let mut m = BTreeMap::new();
    for f in ["generator", "critic", "state"] {
        let path = run.join("checkpoint").join(format!("{f}.safetensors"));
        let (ts, _) = read_safetensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for t in ts {
            m.insert(format!("{f}/{}", t.name), t.data);
        }
    }
    m
}

/// Compares the weights, running statistics and counters of run `b` with run `a` (the
/// reference): counters exactly, generator and critic tensors within the tolerance above
/// (`tol_units` = 4·S; 0 asks for bitwise equality of everything, optimizer state included).
fn compare(a: &Path, b: &Path, tol_units: f64) -> Result<(), String> {
    let (ta, tb) = (tensors(a), tensors(b));
    let u = f32::EPSILON as f64 / 2.0;
    let mut worst = (0.0f64, String::new());
    for (name, x) in &ta {
        let y = tb.get(name).ok_or_else(|| format!("{name} missing in {}", b.display()))?;
        match (x, y) {
            (TensorData::I64(x), TensorData::I64(y)) if x != y => return Err(format!("{name}: {x:?} vs {y:?}")),
            (TensorData::F32(x), TensorData::F32(y)) => {
                if tol_units == 0.0 {
                    if x.iter().zip(y).any(|(p, q)| p.to_bits() != q.to_bits()) {
                        return Err(format!("{name} is not bitwise identical"));
                    }
                    continue;
                }
                if name.starts_with("state/") {
                    continue; // optimizer moments: compared through the weights they produce
                }
                let scale = x.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
                let tol = tol_units * u * scale;
                // NaN-propagating maximum (f64::max would skip a NaN).
                let d = x.iter().zip(y).map(|(p, q)| (*p as f64 - *q as f64).abs()).fold(0.0, |m: f64, v| {
                    if m.is_nan() || v.is_nan() {
                        f64::NAN
                    } else {
                        m.max(v)
                    }
                });
                if d > worst.0 {
                    worst = (d, name.clone());
                }
                if d.is_nan() || d > tol {
                    return Err(format!("{name}: differs by {d:.3e}, more than the tolerance {tol:.3e}"));
                }
            }
            (TensorData::I64(_), TensorData::I64(_)) => {}
            _ => return Err(format!("{name}: different types")),
        }
    }
    eprintln!("{} vs {}: largest difference {:.3e} ({})", a.display(), b.display(), worst.0, worst.1);
    Ok(())
}

/// 4u·S with S = 20 × (n_critic + 1) optimizer updates (see the top of the file).
fn tol(n_critic: u64) -> f64 {
    4.0 * (STEPS * (n_critic + 1)) as f64
}

fn set(f: &mut [String], flag: &str, value: &str) {
    let i = f.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag}"));
    f[i + 1] = value.into();
}

fn matches_one_process(kind: &str) {
    if !mpi_ready() {
        return;
    }
    let one = tmp(&format!("{kind}-1"));
    ok(&single(&flags(kind, &one)), "the single-process run");
    for np in [2, 4] {
        let many = tmp(&format!("{kind}-{np}"));
        ok(&mpi(np, &flags(kind, &many), &[]), &format!("mpirun -np {np}"));
        if let Err(e) = compare(&one, &many, tol(5)) {
            panic!("{kind}: mpirun -np {np} differs from one process: {e}");
        }
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(many.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["distributed"]["world_size"], np);
        assert_eq!(cfg["distributed"]["rank_batch"], 16 / np);
        assert_eq!(cfg["distributed"]["devices"].as_array().map(Vec::len), Some(np));
        let _ = std::fs::remove_dir_all(&many);
    }
    let _ = std::fs::remove_dir_all(&one);
}

#[test]
fn eight_gaussians_wgan_gp_matches_one_process() {
    matches_one_process("8g-gp");
}

#[test]
fn eight_gaussians_wgan_matches_one_process() {
    matches_one_process("8g-wgan");
}

/// DCGAN-28 on MNIST: the generator's batch norm takes its statistics over every rank's rows.
#[test]
fn dcgan28_with_synchronised_batch_norm_matches_one_process() {
    matches_one_process("dcgan28");
}

/// With the gradient average switched off (a hidden test switch), each rank steps on its own
/// slice: the checkpoint-time state check stops the run, and with that check off too, the weight
/// comparison above fails.
#[test]
fn without_the_gradient_average_the_runs_differ() {
    if !mpi_ready() {
        return;
    }
    for kind in ["8g-gp", "8g-wgan", "dcgan28"] {
        let one = tmp(&format!("off-{kind}-1"));
        ok(&single(&flags(kind, &one)), "the single-process run");
        let off = tmp(&format!("off-{kind}-2"));
        let o = mpi(2, &flags(kind, &off), &[("WGAN_DIST_SKIP_GRAD_REDUCE", "1")]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{kind}: a run without the gradient average passed the state check");
        assert!(err.contains("differ from rank 0's"), "{kind}: unexpected failure: {err}");
        let _ = std::fs::remove_dir_all(&off);
        let o = mpi(2, &flags(kind, &off), &[("WGAN_DIST_SKIP_GRAD_REDUCE", "1"), ("WGAN_DIST_SKIP_STATE_CHECK", "1")]);
        ok(&o, "the run without the average or the state check");
        let r = compare(&one, &off, tol(5));
        assert!(r.is_err(), "{kind}: the comparison did not catch a run without the gradient average");
        eprintln!("{kind} without the average: {}", r.unwrap_err());
        let _ = std::fs::remove_dir_all(&one);
        let _ = std::fs::remove_dir_all(&off);
    }
}

/// Deterministic reduction (the default): two identical `mpirun -np 2` runs write bitwise-identical
/// checkpoints, and so does a run whose rank 1 is killed mid-run and which is then resumed. The
/// kill stops every rank and leaves the last checkpoint whole.
#[test]
fn reruns_and_a_killed_and_resumed_run_are_bitwise_identical() {
    if !mpi_ready() {
        return;
    }
    let (a, b, k) = (tmp("det-a"), tmp("det-b"), tmp("det-k"));
    let with_ckpt = |out: &Path| {
        let mut f = flags("dcgan28", out);
        f.extend(["--checkpoint-every".into(), "5".into()]);
        f
    };
    ok(&mpi(2, &with_ckpt(&a), &[]), "run a");
    ok(&mpi(2, &with_ckpt(&b), &[]), "run b");
    compare(&a, &b, 0.0).unwrap_or_else(|e| panic!("two identical runs differ: {e}"));
    // Rank 1 dies (SIGABRT, no cleanup) after step 12; rank 0 is waiting in a collective.
    let t0 = Instant::now();
    let o = mpi(2, &with_ckpt(&k), &[("WGAN_ABORT_AFTER_STEP", "12"), ("WGAN_ABORT_RANK", "1")]);
    assert!(!o.status.success(), "mpirun succeeded although rank 1 was killed");
    assert!(t0.elapsed() < Duration::from_secs(60), "the surviving rank did not stop promptly");
    let state = read_safetensors(&k.join("checkpoint/state.safetensors")).expect("the last checkpoint is whole").0;
    let step = state.iter().find(|t| t.name == "step").and_then(|t| t.as_i64()).map(|v| v[0]);
    assert_eq!(step, Some(10), "the checkpoint of step 10 is the one kept");
    let mut resume = with_ckpt(&k);
    resume.push("--resume".into());
    ok(&mpi(2, &resume, &[]), "the resumed run");
    compare(&a, &k, 0.0).unwrap_or_else(|e| panic!("the killed and resumed run differs: {e}"));
    for d in [a, b, k] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A run checkpointed by 2 ranks resumes on 4 (and on 1): the checkpoint holds no per-rank state,
/// so training goes on, equal to the uninterrupted run within the tolerance, with a note.
#[test]
fn a_run_resumes_with_another_number_of_ranks() {
    if !mpi_ready() {
        return;
    }
    let one = tmp("ws-1");
    ok(&single(&flags("8g-gp", &one)), "the single-process run");
    let r = tmp("ws-r");
    let mut first = flags("8g-gp", &r);
    set(&mut first, "--steps", "10");
    ok(&mpi(2, &first, &[]), "the first 10 steps on 2 ranks");
    let mut rest = flags("8g-gp", &r);
    rest.push("--resume".into());
    let o = mpi(4, &rest, &[]);
    ok(&o, "the resumed run on 4 ranks");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resuming a run of 2 rank(s) with 4"), "no note: {err}");
    compare(&one, &r, tol(5)).unwrap_or_else(|e| panic!("resumed on 4 ranks: {e}"));
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&r);
}

/// Bad input that every rank meets (a global batch that does not divide among the ranks) stops
/// every rank with one message, naming the flag and what it must be.
#[test]
fn a_bad_input_stops_every_rank_with_one_message() {
    if !mpi_ready() {
        return;
    }
    let out = tmp("bad");
    let mut f = flags("8g-gp", &out);
    set(&mut f, "--batch-size", "15");
    let o = mpi(2, &f, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line: {err}");
    assert!(lines[0].contains("--batch-size 15") && lines[0].contains("multiple of 2"), "{}", lines[0]);
    assert!(!out.join("checkpoint").exists(), "a failed run left a checkpoint");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--device emulated` under mpirun: the CUDA backend's code path (its kernels on the host
/// emulator) with the collectives over MPI on host memory, DCGAN-28 with synchronised batch norm;
/// 2 ranks equal one emulated process. Everything but the NCCL call itself runs here.
#[test]
fn the_cuda_backend_on_the_emulator_trains_data_parallel() {
    if !mpi_ready() {
        return;
    }
    let steps = 2;
    let args = |out: &Path| {
        let mut f = flags("dcgan28", out);
        set(&mut f, "--device", "emulated");
        set(&mut f, "--width", "4");
        set(&mut f, "--batch-size", "8");
        set(&mut f, "--steps", &steps.to_string());
        f
    };
    let (one, two) = (tmp("emu-1"), tmp("emu-2"));
    let o = single(&args(&one));
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        let required = std::env::var("WGAN_REQUIRE_EMULATOR").is_ok_and(|v| v == "1");
        assert!(!required && err.contains("--device emulated"), "the emulated run failed: {err}");
        eprintln!("skipping: no host emulator here ({err})");
        return;
    }
    let o = mpi(2, &args(&two), &[]);
    ok(&o, "mpirun -np 2 --device emulated");
    assert!(String::from_utf8_lossy(&o.stderr).contains("CUDA graphs are off under mpirun"));
    compare(&one, &two, 4.0 * (steps * 6) as f64).unwrap_or_else(|e| panic!("emulated, 2 ranks: {e}"));
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&two);
}

/// `--deterministic-reduce off` (MPI_Allreduce's order and f32 sums) also computes the
/// single-process run, within the same tolerance, and records the mode in config.json.
#[test]
fn the_library_order_reduction_matches_too() {
    if !mpi_ready() {
        return;
    }
    let (one, two) = (tmp("lib-1"), tmp("lib-2"));
    ok(&single(&flags("8g-gp", &one)), "the single-process run");
    let mut f = flags("8g-gp", &two);
    f.extend(["--deterministic-reduce".into(), "off".into()]);
    ok(&mpi(2, &f, &[]), "mpirun -np 2 --deterministic-reduce off");
    compare(&one, &two, tol(5)).unwrap_or_else(|e| panic!("--deterministic-reduce off: {e}"));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["distributed"]["deterministic_reduce"], false);
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&two);
}

/// `--overlap-reduce on`: gradients averaged in buckets (here of 4,096 values, so each network has
/// several) on a communication thread during the backward pass, batch norm's collectives running
/// beside them: bitwise the checkpoint of the reduction after the pass.
#[test]
fn the_overlapped_reduction_changes_no_bit() {
    if !mpi_ready() {
        return;
    }
    for kind in ["dcgan28", "8g-wgan"] {
        let (after, during) = (tmp(&format!("ov-{kind}-after")), tmp(&format!("ov-{kind}-during")));
        ok(&mpi(2, &flags(kind, &after), &[]), "the reduction after the pass");
        let mut f = flags(kind, &during);
        f.extend(["--overlap-reduce".into(), "on".into()]);
        ok(&mpi(2, &f, &[("WGAN_DIST_BUCKET_ELEMS", "4096")]), "--overlap-reduce on");
        compare(&after, &during, 0.0).unwrap_or_else(|e| panic!("{kind}: the overlapped reduction differs: {e}"));
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(during.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["distributed"]["overlap_reduce"], true);
        let _ = std::fs::remove_dir_all(&after);
        let _ = std::fs::remove_dir_all(&during);
    }
}
