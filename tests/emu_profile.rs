//! The emulator's memory profiler (`WGAN_EMU_PROFILE`, `EmuOptions::profile`) on small kernels whose
//! counts are known by hand (tests/profile/kernels.cu): global sectors per request (coalesced,
//! strided, broadcast, 16-byte lanes, partial warps, lanes executing a load different numbers of
//! times), shared-memory wavefronts (2-, 4-, 8- and 32-way bank conflicts, broadcast, a padded and
//! a swizzled transpose tile, 8- and 16-byte lanes, ldmatrix rows), cp.async bytes, sectors and
//! zero fill. Each expected count is derived in the comment beside it.
//!
//! Addresses: the emulator's buffers start 64 bytes into a page (its guard zone), so element 0 is
//! 32-byte aligned and a run of 32 floats starting at a multiple of 8 elements covers 4 sectors.
//! Shared banks are counted from the shared arrays' words (rotation-invariant: only which words
//! share a bank matters).

use wgan::backend::cuda::emu::{Arg, Counts, KernelProfile, MemOp, SourceRunner};
use wgan::backend::cuda::{Checks, EmuOptions};

const SRC: &str = include_str!("profile/kernels.cu");

fn runner(checks: Checks) -> Option<SourceRunner> {
    match SourceRunner::new(EmuOptions { checks, profile: true, ..Default::default() }) {
        Ok(r) => Some(r),
        Err(e) if std::env::var("WGAN_REQUIRE_EMULATOR").as_deref() == Ok("1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// Launches `kernel` over `grid` blocks of `block` threads and returns its profile (of this launch
/// only), after printing its sites (shown with --nocapture).
fn profile(r: &SourceRunner, kernel: &str, grid: u32, block: u32, args: &[Arg]) -> KernelProfile {
    r.reset_profile();
    r.launch("profile_kernels.cu", SRC, kernel, (grid, 1, 1), (block, 1, 1), args)
        .unwrap_or_else(|e| panic!("{kernel}: {e}"));
    let p = r.profile();
    print!("{}", p.site_table());
    let k = p.kernel(kernel).unwrap_or_else(|| panic!("{kernel}: not in the profile")).clone();
    assert_eq!(k.launches, 1, "{kernel}: one launch");
    for s in &k.sites {
        assert!(s.line.contains("kernels.cu:"), "{kernel}: every site names its line in kernels.cu: {}", s.line);
    }
    k
}

/// (requests, lanes, bytes, sectors) of the sites doing `op`.
fn global(k: &KernelProfile, op: MemOp) -> (u64, u64, u64, u64) {
    let c = k.total(op);
    (c.requests, c.lanes, c.bytes, c.sectors)
}

/// (requests, wavefronts, ideal wavefronts) of the sites doing `op`.
fn shared(k: &KernelProfile, op: MemOp) -> (u64, u64, u64) {
    let c = k.total(op);
    (c.requests, c.wavefronts, c.ideal_wavefronts)
}

fn floats(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn coalesced_loads_take_four_sectors_per_request() {
    let Some(r) = runner(Checks::default()) else { return };
    let (inp, out) = (r.upload(&floats(384)), r.alloc(384));
    // 2 blocks of 64 threads (2 warps), 3 iterations each: 2 · 2 · 3 = 12 warp requests per line.
    // Each: 32 lanes × 4 bytes, consecutive, starting at a multiple of 32 floats: 128 bytes = 4
    // sectors → 48 sectors, 12 · 128 = 1536 bytes, 12 · 32 = 384 lanes.
    let k = profile(&r, "coalesced", 2, 64, &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(3)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (12, 384, 1536, 48));
    assert_eq!(global(&k, MemOp::GlobalStore), (12, 384, 1536, 48));
    assert_eq!(k.total(MemOp::GlobalLoad).sectors_per_request(), 4.0);
    assert_eq!(r.read(&out), floats(384));
    // Nothing else: no shared memory, no cp.async.
    assert_eq!(k.total(MemOp::SharedLoad), Counts::default());
    assert_eq!(k.total(MemOp::CpAsync), Counts::default());
}

#[test]
fn partial_warps_and_guarded_lanes() {
    let Some(r) = runner(Checks::default()) else { return };
    let (inp, out) = (r.upload(&floats(64)), r.alloc(64));
    // 64 threads, the first 40 copy: warp 0 is one request of 32 lanes (4 sectors); warp 1's 8
    // lanes (elements 32..39: bytes 128..159, one sector) never complete a warp, so their request
    // is counted at the block's end: 2 requests, 40 lanes, 160 bytes, 5 sectors.
    let k = profile(&r, "guarded", 1, 64, &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(40)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (2, 40, 160, 5));
    assert_eq!(global(&k, MemOp::GlobalStore), (2, 40, 160, 5));
    // A block of 48 threads: warp 1 has 16 lanes (64 bytes, 2 sectors) and completes with them.
    let k = profile(&r, "guarded", 1, 48, &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(48)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (2, 48, 192, 6));
}

#[test]
fn strided_and_broadcast_loads() {
    let Some(r) = runner(Checks::default()) else { return };
    let (inp, out) = (r.upload(&floats(1024)), r.alloc(32));
    // Lane t reads element 32·t: 32 lanes in 32 different 128-byte lines → 32 sectors for one
    // request of 128 bytes (an eighth of what the sectors move is used). The store is coalesced: 4.
    let k = profile(&r, "strided", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (1, 32, 128, 32));
    assert_eq!(global(&k, MemOp::GlobalStore), (1, 32, 128, 4));
    assert_eq!(r.read(&out), (0..32).map(|t| (32 * t) as f32).collect::<Vec<_>>());
    // Every lane reads element 0: one sector.
    let k = profile(&r, "broadcast", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (1, 32, 128, 1));
    assert_eq!(global(&k, MemOp::GlobalStore), (1, 32, 128, 4));
}

#[test]
fn sixteen_byte_loads_take_sixteen_sectors() {
    let Some(r) = runner(Checks::default()) else { return };
    let (inp, out) = (r.upload(&floats(128)), r.alloc(128));
    // float4 per lane: 32 × 16 = 512 consecutive bytes = 16 sectors, one request each way.
    let k = profile(&r, "vec4", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (1, 32, 512, 16));
    assert_eq!(global(&k, MemOp::GlobalStore), (1, 32, 512, 16));
    assert!(k.sites.iter().all(|s| s.width == 16), "every access is 16 bytes per lane");
    assert_eq!(r.read(&out), floats(128));
}

#[test]
fn lanes_executing_a_load_different_numbers_of_times() {
    let Some(r) = runner(Checks::default()) else { return };
    let (inp, out) = (r.upload(&floats(128)), r.alloc(32));
    // Lane t loads t % 4 + 1 times; the k-th loads of the lanes are one request: k = 0 by all 32
    // lanes, k = 1 by the 24 with t % 4 >= 1, k = 2 by 16, k = 3 by 8 → 4 requests, 80 lanes, 320
    // bytes. Request k reads elements 32k + t: one 128-byte line, and each of its four sectors
    // (8 lanes each) holds a lane with t % 4 = 3, active in every request → 4 sectors each, 16.
    let k = profile(&r, "uneven", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp)]);
    assert_eq!(global(&k, MemOp::GlobalLoad), (4, 80, 320, 16));
    assert_eq!(global(&k, MemOp::GlobalStore), (1, 32, 128, 4));
}

#[test]
fn shared_bank_conflicts() {
    let Some(r) = runner(Checks::default()) else { return };
    let out = r.alloc(32);
    // The fill: 32 stores per lane to s[32i + t], each request 32 consecutive words in 32 banks:
    // 32 requests, 32 wavefronts, no excess.
    // The read of s[stride · t % 1024], one request, by stride:
    //   1: consecutive words, one per bank → 1 wavefront;
    //   0: every lane reads word 0 (a broadcast) → 1;
    //   2: words 2t: banks 0, 2, …, 30, each holding words 2t and 2t + 32 (lanes t, t + 16) → 2;
    //   4: words 4t: banks 0, 4, …, 28, each with lanes t, t + 8, t + 16, t + 24 → 4;
    //  32: words 32t: all in bank 0, 32 distinct → 32;
    //  33: words 33t: bank t (33t mod 32 = t), all distinct → 1 (the padded stride).
    for (stride, wf) in [(1, 1), (0, 1), (2, 2), (4, 4), (32, 32), (33, 1)] {
        let k = profile(&r, "shared_stride", 1, 32, &[Arg::Buf(&out), Arg::I32(stride)]);
        assert_eq!(shared(&k, MemOp::SharedStore), (32, 32, 32), "fill, stride {stride}");
        assert_eq!(shared(&k, MemOp::SharedLoad), (1, wf, 1), "stride {stride}");
        assert_eq!(k.total(MemOp::SharedLoad).excess_wavefronts(), wf - 1, "stride {stride}");
        let want: Vec<f32> = (0..32).map(|t| ((stride * t) % 1024) as f32).collect();
        assert_eq!(r.read(&out), want, "stride {stride}");
    }
}

#[test]
fn transpose_tiles_unpadded_padded_and_swizzled() {
    let Some(r) = runner(Checks::default()) else { return };
    let inp = r.upload(&floats(1024));
    let want: Vec<f32> = (0..1024).map(|i| ((i % 32) * 32 + i / 32) as f32).collect();
    // Each: 32 row loads (32 consecutive floats: 4 sectors each → 128) and 32 column-index stores
    // of the output (coalesced too: 128 sectors); 32 shared stores (rows) and 32 shared loads
    // (columns: lane t reads tile[t][c]).
    //   unpadded tile[32][32]: stores tile[r][t] are 32 consecutive words (1 wavefront each); the
    //     loads, words 32t + c, all fall in bank c: 32 distinct words → 32 wavefronts each, 1024,
    //     992 of them excess;
    //   padded tile[32][33]: stores words 33r + t, banks (r + t) mod 32 all distinct → 1; loads
    //     words 33t + c, banks (t + c) mod 32 all distinct → 1: 32 each;
    //   swizzled tile[r][c ^ r]: stores words 32r + (t ^ r), banks t ^ r distinct over t → 1;
    //     loads words 32t + (c ^ t), banks c ^ t distinct over t → 1: 32 each.
    for (kernel, load_wf) in [("transpose_unpadded", 1024), ("transpose_padded", 32), ("transpose_swizzled", 32)] {
        let out = r.alloc(1024);
        let k = profile(&r, kernel, 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp)]);
        assert_eq!(global(&k, MemOp::GlobalLoad), (32, 1024, 4096, 128), "{kernel}");
        assert_eq!(global(&k, MemOp::GlobalStore), (32, 1024, 4096, 128), "{kernel}");
        assert_eq!(shared(&k, MemOp::SharedStore), (32, 32, 32), "{kernel}");
        assert_eq!(shared(&k, MemOp::SharedLoad), (32, load_wf, 32), "{kernel}");
        assert_eq!(r.read(&out), want, "{kernel}");
    }
}

#[test]
fn eight_and_sixteen_byte_shared_accesses() {
    let Some(r) = runner(Checks::default()) else { return };
    let out = r.alloc(32);
    // 16 bytes per lane are served per quarter-warp (8 lanes × 16 bytes = 128 bytes): the two
    // float4 stores s4[t], s4[t + 32] and the load s4[t] touch 32 consecutive words per quarter, one
    // per bank → 4 wavefronts per request, the ideal: stores 2 requests, 8 wavefronts.
    // 8 bytes per lane (float2 index 2-stride · t) per half-warp (16 lanes × 8 bytes):
    //   stride 1: each half reads 32 consecutive words → 1 wavefront per half, 2 per request, ideal;
    //   stride 2: lanes 16 bytes apart, a half's words 4t, 4t + 1 (t < 16) land in banks 0, 1, 4,
    //     5, …, 28, 29 twice (t and t + 8) → 2 per half, 4 per request, ideal 2.
    for (stride2, wf64) in [(1u64, 2u64), (2, 4)] {
        let k = profile(&r, "shared_wide", 1, 32, &[Arg::Buf(&out), Arg::I32(stride2 as i32)]);
        assert_eq!(shared(&k, MemOp::SharedStore), (2, 8, 8), "stride {stride2}");
        let by_width = |w: u32| {
            let mut c = Counts::default();
            for s in k.sites.iter().filter(|s| s.op == MemOp::SharedLoad && s.width == w) {
                c.requests += s.counts.requests;
                c.wavefronts += s.counts.wavefronts;
                c.ideal_wavefronts += s.counts.ideal_wavefronts;
            }
            (c.requests, c.wavefronts, c.ideal_wavefronts)
        };
        assert_eq!(by_width(16), (1, 4, 4), "LDS.128, stride {stride2}");
        assert_eq!(by_width(8), (1, wf64, 2), "LDS.64, stride {stride2}");
        let want: Vec<f32> = (0..32u64)
            .map(|t| {
                let f2 = stride2 * t; // float2 index: float4 f2 / 2, half f2 % 2
                let (x, y) = if f2 % 2 == 0 { ((f2 / 2 % 32) as f32, 1.0) } else { (2.0, 3.0) };
                t as f32 + 6.0 + x + y
            })
            .collect();
        assert_eq!(r.read(&out), want, "stride {stride2}");
    }
}

#[test]
fn wide_shared_broadcasts_take_one_wavefront_per_group() {
    let Some(r) = runner(Checks::default()) else { return };
    let out = r.alloc(32);
    // Every lane reads the same float4, then the same float2 (the rule of profile.hpp: each
    // quarter-warp, resp. half-warp, is served on its own, one wavefront each even for the same
    // bytes): LDS.128 → 4 wavefronts, LDS.64 → 2, both the ideal. The store by lanes 0 and 1: one
    // request, one active quarter-warp of 32 bytes → 1 wavefront.
    let k = profile(&r, "shared_wide_broadcast", 1, 32, &[Arg::Buf(&out)]);
    let by_width = |w: u32| {
        let s: Vec<_> = k.sites.iter().filter(|s| s.op == MemOp::SharedLoad && s.width == w).collect();
        assert_eq!(s.len(), 1, "one {w}-byte load");
        (s[0].counts.requests, s[0].counts.wavefronts, s[0].counts.ideal_wavefronts)
    };
    assert_eq!(by_width(16), (1, 4, 4));
    assert_eq!(by_width(8), (1, 2, 2));
    assert_eq!(shared(&k, MemOp::SharedStore), (1, 1, 1));
    assert_eq!(r.read(&out), vec![17.0; 32]);
}

#[test]
fn cp_async_bytes_sectors_and_zero_fill() {
    let Some(r) = runner(Checks::default()) else { return };
    let inp = r.upload(&floats(128));
    // 16 bytes per lane: one request copying 512 bytes (size class 16). Its source, 512
    // consecutive bytes → 16 sectors; its destination s[t] per quarter-warp 32 consecutive words
    // → 4 wavefronts, the ideal. The copy read back as float4 (LDS.128: 4 wavefronts; STG.128: 16).
    let out = r.alloc(128);
    let k = profile(&r, "cp_async16", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(32)]);
    let cp = k.total(MemOp::CpAsync);
    assert_eq!(
        (cp.requests, cp.lanes, cp.bytes, cp.sectors, cp.wavefronts, cp.ideal_wavefronts, cp.zero_fill),
        (1, 32, 512, 16, 4, 4, 0)
    );
    assert_eq!(k.cp_async_bytes(), [0, 0, 512]);
    assert_eq!(shared(&k, MemOp::SharedLoad), (1, 4, 4));
    assert_eq!(global(&k, MemOp::GlobalStore), (1, 32, 512, 16));
    assert_eq!(r.read(&out), floats(128));
    // Lanes 16..31 zero-fill: 512 bytes still copied, only 256 read (8 sectors), 16 lanes zero-fill.
    let out = r.alloc(128);
    let k = profile(&r, "cp_async16", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(16)]);
    let cp = k.total(MemOp::CpAsync);
    assert_eq!((cp.requests, cp.bytes, cp.sectors, cp.zero_fill), (1, 512, 8, 16));
    let got = r.read(&out);
    assert_eq!(&got[..64], &floats(64)[..]);
    assert!(got[64..].iter().all(|&v| v == 0.0));
    // 4 bytes per lane: 128 bytes of class 4, 4 sectors, 1 wavefront.
    let out = r.alloc(32);
    let k = profile(&r, "cp_async4", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp)]);
    let cp = k.total(MemOp::CpAsync);
    assert_eq!((cp.requests, cp.bytes, cp.sectors, cp.wavefronts, cp.ideal_wavefronts), (1, 128, 4, 1, 1));
    assert_eq!(k.cp_async_bytes(), [128, 0, 0]);
    assert_eq!(r.read(&out), floats(32));
}

#[test]
fn ldmatrix_rows_per_quarter_warp() {
    let Some(r) = runner(Checks::default()) else { return };
    let out = r.alloc(32);
    // ldmatrix .x4: lane l gives row l (16 bytes); each 8×8 matrix (8 lanes) is one 128-byte
    // pass when its rows fall in distinct banks. Rows `pitch` words apart:
    //   4: 32 rows back to back: each quarter's 8 rows are 32 consecutive words → 1 each, 4;
    //   8: rows 32 bytes apart: a quarter's words 8r..8r + 3, r < 8, fill banks 0-3, 8-11, 16-19,
    //      24-27 twice (r and r + 4) → 2 each, 8;
    //  32: rows 128 bytes apart: all 8 rows of a quarter in banks 0-3 → 8 each, 32.
    // The fill is 32 conflict-free stores; the result's store one coalesced request.
    for (pitch, wf) in [(4, 4), (8, 8), (32, 32)] {
        let k = profile(&r, "ldmatrix_rows", 1, 32, &[Arg::Buf(&out), Arg::I32(pitch)]);
        assert_eq!(shared(&k, MemOp::Ldmatrix), (1, wf, 4), "pitch {pitch}");
        assert_eq!(k.total(MemOp::Ldmatrix).bytes, 512, "pitch {pitch}");
        assert_eq!(shared(&k, MemOp::SharedStore), (32, 32, 32), "pitch {pitch}");
        assert_eq!(
            k.total(MemOp::SharedLoad),
            Counts::default(),
            "ldmatrix's element reads are not loads of the kernel"
        );
        assert_eq!(global(&k, MemOp::GlobalStore), (1, 32, 128, 4), "pitch {pitch}");
    }
}

#[test]
fn counts_are_the_same_with_every_check_on() {
    let (Some(plain), Some(checked)) = (runner(Checks::default()), runner(Checks::ALL)) else { return };
    let inp = [plain.upload(&floats(1024)), checked.upload(&floats(1024))];
    let mut got = Vec::new();
    for (i, r) in [&plain, &checked].into_iter().enumerate() {
        let out = r.alloc(1024);
        let a = profile(r, "transpose_unpadded", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp[i])]);
        let b = profile(r, "cp_async16", 1, 32, &[Arg::Buf(&out), Arg::Buf(&inp[i]), Arg::I32(16)]);
        let c = profile(r, "ldmatrix_rows", 1, 32, &[Arg::Buf(&out), Arg::I32(8)]);
        let ops = [
            MemOp::GlobalLoad,
            MemOp::GlobalStore,
            MemOp::SharedLoad,
            MemOp::SharedStore,
            MemOp::Ldmatrix,
            MemOp::CpAsync,
        ];
        got.push([&a, &b, &c].map(|k| ops.map(|op| k.total(op))));
    }
    assert_eq!(got[0], got[1], "the checks' own accesses (a landing copy, ldmatrix's elements) are not counted");
}

#[test]
fn launches_add_up_and_reset_forgets() {
    let Some(r) = runner(Checks::default()) else { return };
    let (inp, out) = (r.upload(&floats(64)), r.alloc(64));
    r.reset_profile();
    for _ in 0..3 {
        r.launch(
            "profile_kernels.cu",
            SRC,
            "coalesced",
            (1, 1, 1),
            (64, 1, 1),
            &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(1)],
        )
        .unwrap();
    }
    let p = r.profile();
    let k = p.kernel("coalesced").unwrap();
    // 3 launches of 2 warps, one request each per line.
    assert_eq!(k.launches, 3);
    assert_eq!(global(k, MemOp::GlobalLoad), (6, 192, 768, 24));
    let table = p.kernel_table();
    assert!(table.contains("coalesced") && table.contains("4.00"), "{table}");
    r.reset_profile();
    assert!(r.profile().is_empty());
}

#[test]
fn no_profile_unless_asked() {
    let r = match SourceRunner::new(EmuOptions::default()) {
        Ok(r) => r,
        Err(e) => {
            assert!(std::env::var("WGAN_REQUIRE_EMULATOR").as_deref() != Ok("1"), "{e}");
            return;
        }
    };
    let (inp, out) = (r.upload(&floats(64)), r.alloc(64));
    r.launch(
        "profile_kernels.cu",
        SRC,
        "coalesced",
        (1, 1, 1),
        (64, 1, 1),
        &[Arg::Buf(&out), Arg::Buf(&inp), Arg::I32(1)],
    )
    .unwrap();
    assert!(r.profile().is_empty());
}
