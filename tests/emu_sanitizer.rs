//! The host emulator as a compute-sanitizer (`WGAN_EMU_CHECK`, issue 24): small broken kernels, one
//! or more per class of bug, each beside its fixed twin. Every broken kernel must be reported with
//! its class (race, init, sync, align, async) and every fixed one must run clean and compute the
//! right result. The kernels are in tests/sanitizer/*.cu.
//!
//! Also: adversarial schedules (`WGAN_EMU_SCHEDULE`) turn an order-dependent bug into different
//! results, and a seed replays the same order.

use wgan::backend::cuda::emu::{Arg, DevBuf, SourceRunner};
use wgan::backend::cuda::{Checks, EmuOptions, Schedule};

const SRC: &str = include_str!("sanitizer/broken.cu");

fn runner(checks: Checks, schedule: Schedule) -> Option<SourceRunner> {
    match SourceRunner::new(EmuOptions { checks, schedule, ..Default::default() }) {
        Ok(r) => Some(r),
        Err(e) if std::env::var("WGAN_REQUIRE_EMULATOR").as_deref() == Ok("1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn checked() -> Option<SourceRunner> {
    runner(Checks::ALL, Schedule::Forward)
}

/// Launches `kernel` of broken.cu on one block of `threads` threads (grid `blocks`).
fn launch(r: &SourceRunner, kernel: &str, blocks: u32, threads: u32, args: &[Arg]) -> Result<(), String> {
    r.launch("sanitizer_broken.cu", SRC, kernel, (blocks, 1, 1), (threads, 1, 1), args).map_err(|e| e.to_string())
}

/// The launch must fail with a finding of class `class` naming a source line of broken.cu.
fn expect_finding(res: Result<(), String>, class: &str, kernel: &str) {
    let e = res.expect_err(&format!("{kernel}: the bug must be reported"));
    assert!(e.contains(&format!(": {class}: ")), "{kernel}: expected a `{class}` finding, got: {e}");
    assert!(e.contains(kernel), "{kernel}: the report must name the kernel: {e}");
    assert!(e.contains("broken.cu:") || e.contains("mma.cuh:"), "{kernel}: the report must name a source line: {e}");
}

fn out(r: &SourceRunner, n: usize) -> DevBuf {
    r.alloc(n)
}

#[test]
fn block_race_from_a_missing_barrier() {
    let Some(r) = checked() else { return };
    let o = out(&r, 64);
    expect_finding(launch(&r, "block_race", 1, 64, &[Arg::Buf(&o)]), "race", "block_race");
    let o = out(&r, 64);
    launch(&r, "block_race_fixed", 1, 64, &[Arg::Buf(&o)]).unwrap();
    let want: Vec<f32> = (0..64).map(|t| ((t + 32) % 64) as f32).collect();
    assert_eq!(r.read(&o), want);
}

#[test]
fn warp_race_from_a_missing_syncwarp() {
    let Some(r) = checked() else { return };
    let o = out(&r, 32);
    let e = launch(&r, "warp_race", 1, 32, &[Arg::Buf(&o)]);
    expect_finding(e.clone(), "race", "warp_race");
    assert!(e.unwrap_err().contains("lockstep"), "a race between lanes of one warp says why");
    let o = out(&r, 32);
    launch(&r, "warp_race_fixed", 1, 32, &[Arg::Buf(&o)]).unwrap();
    let want: Vec<f32> = (0..32).map(|t| (t ^ 1) as f32).collect();
    assert_eq!(r.read(&o), want);
}

#[test]
fn uninitialised_shared_memory() {
    let Some(r) = checked() else { return };
    let o = out(&r, 32);
    expect_finding(launch(&r, "uninit_shared", 1, 32, &[Arg::Buf(&o)]), "init", "uninit_shared");
    let o = out(&r, 32);
    launch(&r, "uninit_shared_fixed", 1, 32, &[Arg::Buf(&o)]).unwrap();
    assert_eq!(r.read(&o), vec![2.0; 32]);
}

#[test]
fn uninitialised_shared_memory_of_an_earlier_block() {
    // Block 1 reads what block 0 left in shared memory: on a GPU that is another block's (or
    // nobody's) data; the emulator reuses the array, so only the check can tell.
    let Some(r) = checked() else { return };
    let o = out(&r, 64);
    expect_finding(launch(&r, "stale_shared", 2, 32, &[Arg::Buf(&o)]), "init", "stale_shared");
}

#[test]
fn uninitialised_device_buffer() {
    let Some(r) = checked() else { return };
    let o = out(&r, 40);
    let never_written = r.alloc(40);
    let e = launch(&r, "copy_n", 1, 64, &[Arg::Buf(&o), Arg::Buf(&never_written), Arg::I64(40)]);
    expect_finding(e, "init", "copy_n");
    let data: Vec<f32> = (0..40).map(|i| i as f32 * 0.5).collect();
    let src = r.upload(&data);
    let o = out(&r, 40);
    launch(&r, "copy_n", 1, 64, &[Arg::Buf(&o), Arg::Buf(&src), Arg::I64(40)]).unwrap();
    assert_eq!(r.read(&o), data);
    // A buffer a kernel wrote is initialised for the next kernel.
    let o2 = out(&r, 40);
    launch(&r, "copy_n", 1, 64, &[Arg::Buf(&o2), Arg::Buf(&o), Arg::I64(40)]).unwrap();
    assert_eq!(r.read(&o2), data);
}

#[test]
fn out_of_bounds_device_access() {
    let Some(r) = checked() else { return };
    let src = r.upload(&[1.0; 40]);
    let o = out(&r, 41);
    // Reads element 40 of a 40-element buffer.
    expect_finding(launch(&r, "copy_n", 1, 64, &[Arg::Buf(&o), Arg::Buf(&src), Arg::I64(41)]), "align", "copy_n");
}

#[test]
fn misaligned_16_byte_access() {
    let Some(r) = checked() else { return };
    let data: Vec<f32> = (0..256).map(|i| i as f32).collect();
    let src = r.upload(&data);
    let o = out(&r, 128);
    let e = launch(&r, "vec4_copy", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src), Arg::I64(1)]);
    expect_finding(e.clone(), "align", "vec4_copy");
    assert!(e.unwrap_err().contains("16-byte aligned"));
    let o = out(&r, 128);
    launch(&r, "vec4_copy", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src), Arg::I64(4)]).unwrap();
    assert_eq!(r.read(&o), data[4..132].to_vec());
}

#[test]
fn out_of_bounds_shared_access() {
    let Some(r) = checked() else { return };
    let o = out(&r, 64);
    expect_finding(launch(&r, "shared_oob", 1, 64, &[Arg::Buf(&o), Arg::I32(64)]), "align", "shared_oob");
    let o = out(&r, 64);
    launch(&r, "shared_oob", 1, 64, &[Arg::Buf(&o), Arg::I32(0)]).unwrap();
    assert_eq!(r.read(&o), vec![3.0; 64]);
}

#[test]
fn barrier_in_divergent_code() {
    let Some(r) = checked() else { return };
    let o = out(&r, 64);
    let e = launch(&r, "divergent_barrier", 1, 64, &[Arg::Buf(&o)]);
    expect_finding(e.clone(), "sync", "divergent_barrier");
    assert!(e.unwrap_err().contains("exited"));
    let o = out(&r, 64);
    expect_finding(launch(&r, "two_barriers", 1, 64, &[Arg::Buf(&o)]), "sync", "two_barriers");
    let o = out(&r, 64);
    launch(&r, "divergent_barrier_fixed", 1, 64, &[Arg::Buf(&o)]).unwrap();
    assert_eq!(r.read(&o), vec![1.0; 64]);
}

#[test]
fn shuffle_with_a_wrong_mask() {
    let Some(r) = checked() else { return };
    // All 32 lanes shuffle with a mask of the low 16: lanes 16..31 execute without their bit.
    let o = out(&r, 32);
    let e = launch(&r, "shuffle_mask", 1, 32, &[Arg::Buf(&o), Arg::U32(0xffff)]);
    expect_finding(e.clone(), "sync", "shuffle_mask");
    assert!(e.unwrap_err().contains("leaves out its own lane"));
    // A mask naming lanes that never arrive (the upper half exited).
    let o = out(&r, 32);
    expect_finding(launch(&r, "shuffle_half", 1, 32, &[Arg::Buf(&o), Arg::U32(0xffffffff)]), "sync", "shuffle_half");
    let o = out(&r, 32);
    launch(&r, "shuffle_mask", 1, 32, &[Arg::Buf(&o), Arg::U32(0xffffffff)]).unwrap();
    assert_eq!(r.read(&o), vec![0.0; 32]);
    // A partial-warp shuffle with the right mask is emulated: lanes 0..15 broadcast lane 0's value.
    let o = out(&r, 32);
    launch(&r, "shuffle_half", 1, 32, &[Arg::Buf(&o), Arg::U32(0xffff)]).unwrap();
    let got = r.read(&o);
    assert_eq!(&got[..16], &[5.0; 16]);
    assert!(got[16..].iter().all(|v| v.is_nan()), "lanes 16..31 exited without writing");
}

#[test]
fn shuffle_width_segments() {
    let Some(r) = checked() else { return };
    let o = out(&r, 96);
    launch(&r, "shuffle_width", 1, 32, &[Arg::Buf(&o)]).unwrap();
    let got = r.read(&o);
    for l in 0..32usize {
        // __shfl_down_sync(…, 1, 8): the last lane of each 8-lane segment keeps its own value.
        let down = if l % 8 == 7 { l } else { l + 1 };
        // __shfl_xor_sync(…, 4, 8): stays inside the segment.
        let xor = l ^ 4;
        // __shfl_sync(…, 3, 16): lane 3 of the caller's 16-lane segment.
        let idx = (l & !15) + 3;
        assert_eq!(got[l], down as f32, "down, lane {l}");
        assert_eq!(got[32 + l], xor as f32, "xor, lane {l}");
        assert_eq!(got[64 + l], idx as f32, "idx, lane {l}");
    }
}

#[test]
fn early_wait_group() {
    let Some(r) = checked() else { return };
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let src = r.upload(&data);
    let o = out(&r, 32);
    let e = launch(&r, "early_wait", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]);
    expect_finding(e.clone(), "async", "early_wait");
    assert!(e.unwrap_err().contains("before the cp.async.wait_group"));
    let o = out(&r, 32);
    launch(&r, "early_wait_fixed", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]).unwrap();
    let want: Vec<f32> = (0..32).map(|t| data[(t + 1) % 32] + data[32 + (t + 1) % 32]).collect();
    assert_eq!(r.read(&o), want);
    // Writing into a stage a pending copy still targets.
    let o = out(&r, 32);
    expect_finding(
        launch(&r, "overwrite_pending", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]),
        "async",
        "overwrite_pending",
    );
    // A misaligned cp.async.
    let o = out(&r, 32);
    expect_finding(
        launch(&r, "cp_async_misaligned", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]),
        "align",
        "cp_async_misaligned",
    );
}

#[test]
fn early_wait_group_gives_stale_data_without_checks() {
    // The same bug, unchecked: the copy lands at the wait, so the early read sees stale shared data
    // (as it may on a GPU); only the check names it.
    let Some(r) = runner(Checks::default(), Schedule::Forward) else { return };
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let src = r.upload(&data);
    let o = out(&r, 32);
    launch(&r, "early_wait", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]).unwrap();
    let want: Vec<f32> = (0..32).map(|t| data[(t + 1) % 32] + data[32 + (t + 1) % 32]).collect();
    assert_ne!(r.read(&o), want);
}

#[test]
fn cross_block_write_conflict() {
    let Some(r) = checked() else { return };
    let o = out(&r, 4);
    let e = launch(&r, "cross_block", 4, 32, &[Arg::Buf(&o)]);
    expect_finding(e.clone(), "race", "cross_block");
    assert!(e.unwrap_err().contains("another block"));
    let o = out(&r, 4);
    launch(&r, "cross_block_fixed", 4, 32, &[Arg::Buf(&o)]).unwrap();
    assert_eq!(r.read(&o), vec![0.0, 1.0, 2.0, 3.0]);
    // A block reading what another block of the same launch writes.
    let src = r.upload(&[1.0; 4]);
    expect_finding(launch(&r, "read_neighbour_block", 4, 32, &[Arg::Buf(&src)]), "race", "read_neighbour_block");
}

#[test]
fn non_atomic_accumulation() {
    let Some(r) = checked() else { return };
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let src = r.upload(&data);
    let acc = r.upload(&[0.0]);
    expect_finding(launch(&r, "accumulate", 1, 64, &[Arg::Buf(&acc), Arg::Buf(&src)]), "race", "accumulate");
    let acc = r.upload(&[0.0]);
    launch(&r, "accumulate_atomic", 2, 64, &[Arg::Buf(&acc), Arg::Buf(&src)]).unwrap();
    assert_eq!(r.read(&acc), vec![2.0 * data.iter().sum::<f32>()]);
    // An atomic and a plain read of the same word in one interval race.
    let acc = r.upload(&[0.0]);
    let o = out(&r, 64);
    expect_finding(launch(&r, "atomic_then_read", 1, 64, &[Arg::Buf(&acc), Arg::Buf(&o)]), "race", "atomic_then_read");
}

#[test]
fn warp_collectives_need_the_full_warp() {
    let Some(r) = checked() else { return };
    let m: Vec<f32> = (0..128).map(|i| f32::from_bits(0x3f80_0000 + i)).collect();
    let src = r.upload(&m);
    let o = out(&r, 128);
    expect_finding(launch(&r, "ldmatrix_partial", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]), "sync", "ldmatrix_partial");
    let o = out(&r, 128);
    // ldmatrix after other lanes' shared stores without a __syncwarp: a race (it is no fence).
    expect_finding(
        launch(&r, "ldmatrix_unsynced", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]),
        "race",
        "ldmatrix_unsynced",
    );
    let o = out(&r, 128);
    expect_finding(
        launch(&r, "ldmatrix_misaligned", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]),
        "align",
        "ldmatrix_misaligned",
    );
    let o = out(&r, 128);
    launch(&r, "ldmatrix_synced", 1, 32, &[Arg::Buf(&o), Arg::Buf(&src)]).unwrap();
    // A block of 48 threads: its second warp has 16 lanes, too few for mma.sync.
    let a = r.upload(&[1.0; 1024]);
    let o = out(&r, 1024);
    expect_finding(launch(&r, "mma_any_block", 1, 48, &[Arg::Buf(&o), Arg::Buf(&a)]), "sync", "mma_any_block");
    let o = out(&r, 1024);
    launch(&r, "mma_any_block", 1, 64, &[Arg::Buf(&o), Arg::Buf(&a)]).unwrap();
    // 1·1 summed over k = 8, plus the accumulator's 0.
    assert!(r.read(&o)[..256].iter().all(|&v| v == 8.0));
}

/// The checker lets repeated reads through on inline paths (runtime.hpp: read_inline and the
/// `safe` map); the hazards they must still leave visible.
#[test]
fn repeated_reads_keep_their_hazards() {
    let Some(r) = checked() else { return };
    for (kernel, threads) in [("reread_collective", 32), ("reread_other_warp", 64), ("reread_next_interval", 64)] {
        let o = out(&r, threads as usize);
        expect_finding(launch(&r, kernel, 1, threads, &[Arg::Buf(&o), Arg::I32(0)]), "race", kernel);
        let o = out(&r, threads as usize);
        launch(&r, kernel, 1, threads, &[Arg::Buf(&o), Arg::I32(1)]).unwrap_or_else(|e| panic!("{kernel}: {e}"));
        let want: Vec<f32> = match kernel {
            "reread_collective" => vec![1.0; 32],
            "reread_next_interval" => (0..64).map(|t| if t < 32 { 2.0 } else { 1.0 }).collect(),
            _ => (0..64).map(|t| if t == 0 || t >= 32 { 5.0 } else { 0.0 }).collect(),
        };
        assert_eq!(r.read(&o), want, "{kernel}");
    }
    // A read of a pending copy's destination after the word was let through: with only the async
    // check on (so the copy's write-after-read race is not what stops it).
    let Some(r) = runner(Checks::parse("async").unwrap(), Schedule::Forward) else { return };
    let src = r.upload(&[5.0; 4]);
    let o = out(&r, 64);
    expect_finding(
        launch(&r, "reread_pending", 1, 64, &[Arg::Buf(&o), Arg::Buf(&src), Arg::I32(0)]),
        "async",
        "reread_pending",
    );
    let o = out(&r, 64);
    launch(&r, "reread_pending", 1, 64, &[Arg::Buf(&o), Arg::Buf(&src), Arg::I32(1)]).unwrap();
    let got = r.read(&o);
    assert_eq!(got[63], 1.0 + 5.0, "the copy landed before the second read");
    assert!(got[..63].iter().all(|&v| v == 1.0));
}

#[test]
fn findings_do_not_depend_on_the_schedule() {
    for schedule in [Schedule::Reverse, Schedule::Seeded(7), Schedule::Seeded(12345)] {
        let Some(r) = runner(Checks::ALL, schedule) else { return };
        let o = out(&r, 64);
        let e = launch(&r, "block_race", 1, 64, &[Arg::Buf(&o)]);
        expect_finding(e.clone(), "race", "block_race");
        assert!(e.unwrap_err().contains("WGAN_EMU_SCHEDULE="), "a report under a schedule says how to replay it");
        let o = out(&r, 32);
        expect_finding(launch(&r, "warp_race", 1, 32, &[Arg::Buf(&o)]), "race", "warp_race");
        let o = out(&r, 64);
        launch(&r, "block_race_fixed", 1, 64, &[Arg::Buf(&o)]).unwrap();
    }
}

#[test]
fn adversarial_schedules_change_racy_results_and_replay() {
    // Unchecked, the racy kernel's result depends on the order threads run in: a thread whose
    // partner (32 threads away) has not run yet reads what an earlier launch left (a different
    // `base` each launch), so the pattern of fresh values shows the order.
    static BASE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let run = |s: Schedule| -> Option<Vec<bool>> {
        let r = runner(Checks::default(), s)?;
        let o = out(&r, 64);
        let base = 1000.0 * BASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f32;
        launch(&r, "block_race_base", 1, 64, &[Arg::Buf(&o), Arg::F32(base)]).unwrap();
        Some(r.read(&o).iter().enumerate().map(|(t, &v)| v == ((t + 32) % 64) as f32).collect())
    };
    let Some(fwd) = run(Schedule::Forward) else { return };
    let rev = run(Schedule::Reverse).unwrap();
    assert_eq!(fwd.iter().filter(|&&f| f).count(), 32, "forward: the second warp sees the first's values");
    assert_ne!(fwd, rev, "reverse order must change a racy result");
    let s1 = run(Schedule::Seeded(1)).unwrap();
    assert_eq!(s1, run(Schedule::Seeded(1)).unwrap(), "a seed replays the same order");
    let others: Vec<Vec<bool>> = (2..6).map(|s| run(Schedule::Seeded(s)).unwrap()).collect();
    assert!(others.iter().any(|o| *o != s1), "different seeds give different orders");
    // The fixed kernel gives the same result under every schedule.
    let fixed = |s: Schedule| {
        let r = runner(Checks::default(), s).unwrap();
        let o = out(&r, 64);
        launch(&r, "block_race_fixed", 1, 64, &[Arg::Buf(&o)]).unwrap();
        r.read(&o)
    };
    assert_eq!(fixed(Schedule::Reverse), fixed(Schedule::Seeded(3)));
}

#[test]
fn parses_options() {
    assert_eq!(Checks::parse("all").unwrap(), Checks::ALL);
    assert_eq!(Checks::parse("race,init").unwrap().0, Checks::RACE | Checks::INIT);
    assert_eq!(Checks::parse("").unwrap(), Checks::default());
    let e = Checks::parse("race,bogus").unwrap_err().to_string();
    assert!(e.contains("bogus") && e.contains("WGAN_EMU_CHECK"), "{e}");
    assert_eq!(Schedule::parse("seed:42").unwrap(), Schedule::Seeded(42));
    assert_eq!(Schedule::parse("reverse").unwrap(), Schedule::Reverse);
    assert!(Schedule::parse("seed:x").unwrap_err().to_string().contains("WGAN_EMU_SCHEDULE"));
}

/// `WGAN_KERNEL_DIR` with one barrier removed: `wgan train --device emulated` under all checks
/// exits non-zero and names the race; the unmodified copy of the kernels trains clean.
#[test]
fn kernel_dir_with_a_barrier_removed_fails_training_with_the_race() {
    if runner(Checks::ALL, Schedule::Forward).is_none() {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("wgan-kernel-dir-{}", std::process::id()));
    let (good, bad) = (tmp.join("good"), tmp.join("bad"));
    for d in [&good, &bad] {
        std::fs::create_dir_all(d).unwrap();
        for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
        }
    }
    // block_sum's barrier between the warps' partial sums and their reduction (kernels/common.cuh).
    let common = std::fs::read_to_string(bad.join("common.cuh")).unwrap();
    let marker = "    if (lane == 0) scratch[warp] = v;\n    __syncthreads();\n";
    assert!(common.contains(marker), "kernels/common.cuh changed: update this test's marker");
    std::fs::write(bad.join("common.cuh"), common.replacen(marker, "    if (lane == 0) scratch[warp] = v;\n", 1))
        .unwrap();
    let train = |dir: &std::path::Path, out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wgan"))
            .args(["train", "--device", "emulated", "--dataset", "8gaussians", "--steps", "1", "--batch-size", "64"])
            .args(["--width", "32", "--n-critic", "1", "--sample-every", "1000", "--out"])
            .arg(tmp.join(out))
            .env("WGAN_KERNEL_DIR", dir)
            .env("WGAN_EMU_CHECK", "all")
            .output()
            .expect("run wgan")
    };
    let o = train(&bad, "run-bad");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a race must fail the run; stderr:\n{err}");
    assert!(
        err.contains(": race: ") && err.contains("common.cuh:"),
        "the error must name the race and its line:\n{err}"
    );
    assert!(!err.contains("panicked"), "a clear error, not a panic:\n{err}");
    let o = train(&good, "run-good");
    assert!(o.status.success(), "the unmodified kernels train clean:\n{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn kernel_dir_missing_a_file_is_a_clear_error() {
    let tmp = std::env::temp_dir().join(format!("wgan-kernel-dir-empty-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wgan"))
        .args(["train", "--device", "emulated", "--dataset", "8gaussians", "--steps", "1", "--out"])
        .arg(tmp.join("run"))
        .env("WGAN_KERNEL_DIR", &tmp)
        .output()
        .expect("run wgan");
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("C++ compiler") {
        return; // no emulator here
    }
    assert!(!o.status.success());
    assert!(err.contains("WGAN_KERNEL_DIR") && err.contains("cannot read kernels/"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The benchmark ceilings (never launched by the emulated backend, which cannot time): the real
/// kernels of kernels/peak.cu and kernels/gemm_tc.cu run clean under every check.
#[test]
fn benchmark_ceiling_kernels_run_clean_under_checks() {
    use wgan::backend::cuda::kernels::{module_source, Module};
    let Some(r) = checked() else { return };
    let o = out(&r, 64);
    // PeakParams { iters: 3, a: 1.0, b: 0.5 }
    let params = vec![3u64, (1.0f32.to_bits() as u64) | ((0.5f32.to_bits() as u64) << 32)];
    r.launch(
        "peak.cu",
        module_source(Module::Peak).unwrap(),
        "fma_peak_f32",
        (1, 1, 1),
        (64, 1, 1),
        &[Arg::Buf(&o), Arg::Words(params)],
    )
    .unwrap();
    assert!(r.read(&o).iter().all(|v| v.is_finite()));
    for k in ["mma_peak_tf32", "mma_peak_bf16"] {
        let o = out(&r, 64);
        r.launch(
            "gemm_tc.cu",
            module_source(Module::GemmTc).unwrap(),
            k,
            (1, 1, 1),
            (64, 1, 1),
            &[Arg::Buf(&o), Arg::I64(2)],
        )
        .unwrap();
        // (bf16 reads the tf32-rounded operands as pairs of bf16, whose low halves overflow: the
        // ceiling's values do not matter, its clean run under the checks does.)
        if k.ends_with("tf32") {
            assert!(r.read(&o).iter().all(|v| v.is_finite()), "{k}");
        }
    }
}
