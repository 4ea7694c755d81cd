// profile.hpp: the emulator's memory profiler (WGAN_EMU_PROFILE; emu/profile.rs collects and prints
// what it counts). Part of runtime.hpp, which includes it once its state (Fiber, t_cur, t_chk,
// LaunchCtx) is declared; kept in its own file so that the runtime's scheduler and checks stay apart
// from it.
//
// What it counts, per launch and per access site (the code address of the kernel's load or store,
// which emu/profile.rs maps to source lines), as Nsight Compute would on a GPU:
//   global loads and stores  requests (warp-level instructions executed), 32-byte sectors, bytes;
//   shared loads and stores  requests, wavefronts (bank conflicts), bytes;
//   ldmatrix                 as a shared load of each lane's 16-byte row;
//   cp.async                 requests, bytes copied (by size: a site has one), sectors of the
//                            source, wavefronts of the shared destination, lanes that zero-fill.
// A profiled module is the instrumented (checked) build: the ThreadSanitizer hooks see every load
// and store of kernel code, with its address, size and code address. The profiler counts only what
// the kernel itself issues: the hooks, ldmatrix and cp.async (their own calls below). The runtime's
// reads and writes for the checks (a landing copy, ldmatrix's elements, atomics) are not counted.
//
// Grouping. Lanes of a warp execute one instruction together; the emulator runs them one after
// another. So each lane counts its executions of each site: the k-th execution of site S by each
// lane of warp W is one warp instruction (W, S, k), whose lanes' addresses are collected and
// counted once every lane of the warp has executed it (or at the block's end, for instructions
// some lanes skipped: a branch, an early exit). A site is one code address of the host compiler's
// output: where it duplicated a load (unrolling, peeling), lanes taking different copies make
// separate requests; where it removed one (kept a value in a register), nothing is counted.
//
// Sectors: the distinct 32-byte aligned segments the request's lanes touch. Wavefronts: the lanes
// are split into groups the hardware serves in one pass of 128 bytes: the whole warp for accesses
// of up to 4 bytes per lane, half-warps (16 lanes) for 8 bytes, quarter-warps (8 lanes) for 16 and
// more. In a group, the 4-byte words the lanes touch fall into 32 banks (word index mod 32); lanes
// touching the same word share it (a broadcast), and the group takes as many wavefronts as the
// bank holding the most distinct words (at least 1). A request's wavefronts are its groups' sum
// over the groups with an active lane. Its ideal is, per group, the fewest wavefronts its distinct
// words need (ceil(words / 32), at least 1): 1 per request up to 4 bytes per lane, 2 at 8, 4 at 16
// for a full warp. Excess wavefronts = wavefronts - ideal: the bank conflicts.

#pragma once

namespace wgemu {

// The kinds of access a site makes (mirrors `MemOp` in emu/profile.rs).
enum ProfOp : u32 { OpLdg = 0, OpStg = 1, OpLds = 2, OpSts = 3, OpLdsm = 4, OpCpAsync = 5 };

// One access site's totals over a launch (mirrors `ProfRow` in emu/profile.rs).
struct ProfRow {
    u64 pc;          // code offset in the module (the byte before the hook's return address)
    u32 op;          // ProfOp
    u32 width;       // bytes per lane of its first execution (cp.async: the copy's size)
    u64 requests;    // warp-level executions
    u64 lanes;       // thread-level executions
    u64 bytes;       // bytes the lanes read or wrote (cp.async: copied)
    u64 sectors;     // global memory (cp.async: its source): 32-byte sectors
    u64 wavefronts;  // shared memory (cp.async: its destination): wavefronts
    u64 ideal;       // the fewest wavefronts those requests could have taken
    u64 zfill;       // cp.async: lanes that read nothing (source size 0: zero fill)
};

// A warp instruction being collected: the address and size of each lane's access (cp.async: `a`
// and `w` its destination, `g` and `gw` its source).
struct ProfInst {
    u32 n;     // lanes recorded so far; kDone once counted
    u32 mask;  // those lanes
    u64 a[32], g[32];
    u16 w[32], gw[32];
};
enum : u32 { kDone = 0xFFFFFFFFu };

// The instructions of one (site, warp) not yet counted, by execution index k: a ring of `count`
// entries from `head`, the first for k = base_k.
struct ProfWin {
    ProfInst* buf;
    u32 cap, head, count, base_k;
};

// The profiler's state for the launch running on this host thread: plain data, like Checker (no
// initialiser function, which would be instrumented code calling the hooks).
struct Prof {
    u32 on;              // this launch is profiled
    u32 failed;          // out of memory: the counts are incomplete
    u32 nthreads, nwarps;
    u32 block;           // stamp of the running block (1, 2, …)
    uintptr_t sh_lo, sh_span, ar_lo, ar_span;  // shared arrays, device memory
    uintptr_t mod_base;  // load address of this module (sites are code offsets)
    ProfRow* rows;       // the sites, in order of first execution
    u32* stamp;          // per site: the block whose counters `cnt` holds
    u32* cnt;            // per site and thread: executions in this block ([site][thread])
    ProfWin* win;        // per site and warp ([site][32])
    u32 nsites, cap;     // sites; capacity of the arrays above
    u32 cnt_threads;     // the thread stride `cnt` was allocated with
    u64* hkey;           // open-addressing table: (pc << 3 | op) + 1 → site index in hval
    u32* hval;
    u32 hcap;            // power of two, at least 2 · cap
    u64* scratch;        // sector or word indices of one request
    u32 scratch_cap;
};

static thread_local Prof t_prof;
// Whether any launch of this module has profiled, in any host thread: read first by every hook, so
// that a module that is not profiling (the checks alone) pays a plain load, not a thread-local
// lookup, per access. Set once, never cleared (relaxed atomics: only ever 0 → 1).
static u32 g_prof_any;

// Every function here is uninstrumented (the profiler's own memory traffic is not the kernel's, and
// would call the hooks again); helpers are forced inline and use no std::min/max (an instrumented
// template, called out of line).
#define WGEMU_PROF __attribute__((no_sanitize("thread"), noinline, unused))
#define WGEMU_PROF_INLINE __attribute__((always_inline, no_sanitize("thread"))) static inline

template <class T>
WGEMU_PROF_INLINE T prof_min(T a, T b) {
    return b < a ? b : a;
}
template <class T>
WGEMU_PROF_INLINE T prof_max(T a, T b) {
    return a < b ? b : a;
}

WGEMU_PROF static void prof_fail() { t_prof.failed = 1; }

WGEMU_PROF_INLINE u64 prof_hash(u64 k) {
    k ^= k >> 31;
    k *= 0x9E3779B97F4A7C15ull;
    return k ^ (k >> 29);
}

// Makes room for `want` sites (arrays grow together; existing entries keep their places).
WGEMU_PROF static bool prof_grow(u32 want) {
    Prof& p = t_prof;
    if (want <= p.cap && p.cnt_threads == p.nthreads) return true;
    u32 cap = p.cap ? p.cap : 64;
    while (cap < want) cap *= 2;
    ProfRow* rows = (ProfRow*)std::realloc(p.rows, (size_t)cap * sizeof(ProfRow));
    if (rows) p.rows = rows;
    u32* stamp = (u32*)std::realloc(p.stamp, (size_t)cap * sizeof(u32));
    if (stamp) p.stamp = stamp;
    // The counters are per block: a new stride (another block size) needs no copying.
    u32* cnt = p.cnt_threads == p.nthreads ? (u32*)std::realloc(p.cnt, (size_t)cap * p.nthreads * sizeof(u32))
                                           : (u32*)std::malloc((size_t)cap * p.nthreads * sizeof(u32));
    if (cnt && p.cnt_threads != p.nthreads) {
        std::free(p.cnt);
        for (u32 s = 0; s < p.nsites; ++s) p.stamp[s] = 0;  // their rows are stale
    }
    if (cnt) {
        p.cnt = cnt;
        p.cnt_threads = p.nthreads;
    }
    ProfWin* win = (ProfWin*)std::realloc(p.win, (size_t)cap * 32 * sizeof(ProfWin));
    if (win) {
        std::memset(win + (size_t)p.cap * 32, 0, (size_t)(cap - p.cap) * 32 * sizeof(ProfWin));
        p.win = win;
    }
    if (!rows || !stamp || !cnt || !win) return false;
    p.cap = cap;
    // The hash table, rebuilt at four times the capacity.
    const u32 hcap = cap * 4;
    u64* hkey = (u64*)std::calloc(hcap, sizeof(u64));
    u32* hval = (u32*)std::malloc((size_t)hcap * sizeof(u32));
    if (!hkey || !hval) {
        std::free(hkey);
        std::free(hval);
        return false;
    }
    for (u32 s = 0; s < p.nsites; ++s) {
        const u64 key = (p.rows[s].pc << 3 | p.rows[s].op) + 1;
        u32 h = (u32)prof_hash(key) & (hcap - 1);
        while (hkey[h]) h = (h + 1) & (hcap - 1);
        hkey[h] = key;
        hval[h] = s;
    }
    std::free(p.hkey);
    std::free(p.hval);
    p.hkey = hkey;
    p.hval = hval;
    p.hcap = hcap;
    return true;
}

// The index of the site (code offset `off`, kind `op`), created on its first execution; kDone when
// out of memory.
WGEMU_PROF_INLINE u32 prof_site(u64 off, u32 op, u32 width) {
    Prof& p = t_prof;
    const u64 key = (off << 3 | op) + 1;
    if (p.hcap) {
        u32 h = (u32)prof_hash(key) & (p.hcap - 1);
        while (p.hkey[h]) {
            if (p.hkey[h] == key) return p.hval[h];
            h = (h + 1) & (p.hcap - 1);
        }
    }
    if (!prof_grow(p.nsites + 1)) return kDone;
    const u32 s = p.nsites++;
    p.rows[s] = ProfRow{off, op, width, 0, 0, 0, 0, 0, 0, 0};
    p.stamp[s] = 0;
    u32 h = (u32)prof_hash(key) & (p.hcap - 1);
    while (p.hkey[h]) h = (h + 1) & (p.hcap - 1);
    p.hkey[h] = key;
    p.hval[h] = s;
    return s;
}

// Sorts v[0..n) (insertion sort: lanes mostly come in address order) and returns the number of
// distinct values, moved to the front.
WGEMU_PROF_INLINE u32 prof_unique(u64* v, u32 n) {
    for (u32 i = 1; i < n; ++i) {
        const u64 x = v[i];
        u32 j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            --j;
        }
        v[j] = x;
    }
    u32 m = 0;
    for (u32 i = 0; i < n; ++i)
        if (m == 0 || v[m - 1] != v[i]) v[m++] = v[i];
    return m;
}

// Indices [a >> shift, (a + w - 1) >> shift] of the lanes in `mask`, into the scratch buffer;
// returns how many (those past its capacity are counted in *over, one per index, undeduplicated).
WGEMU_PROF_INLINE u32 prof_spans(const u64* a, const u16* w, u32 mask, u32 lo, u32 hi, u32 shift, u64* over) {
    Prof& p = t_prof;
    u32 n = 0;
    for (u32 l = lo; l < hi; ++l) {
        if (!(mask >> l & 1u) || !w[l]) continue;
        for (u64 i = a[l] >> shift; i <= (a[l] + w[l] - 1) >> shift; ++i) {
            if (n < p.scratch_cap)
                p.scratch[n++] = i;
            else
                ++*over;
        }
    }
    return n;
}

// 32-byte sectors of one request.
WGEMU_PROF_INLINE u64 prof_sectors(const u64* a, const u16* w, u32 mask) {
    u64 over = 0;
    const u32 n = prof_spans(a, w, mask, 0, 32, 5, &over);
    return prof_unique(t_prof.scratch, n) + over;
}

// Wavefronts (and their ideal) of one request to shared memory of `width` bytes per lane.
WGEMU_PROF_INLINE void prof_wavefronts(const u64* a, const u16* w, u32 mask, u32 width, u64* wf, u64* ideal) {
    Prof& p = t_prof;
    const u32 group = width <= 4 ? 32 : width <= 8 ? 16 : 8;
    for (u32 lo = 0; lo < 32; lo += group) {
        const u32 gm = group == 32 ? 0xFFFFFFFFu : ((1u << group) - 1u) << lo;
        if (!(mask & gm)) continue;
        u64 over = 0;
        const u32 n = prof_unique(p.scratch, prof_spans(a, w, mask, lo, lo + group, 2, &over));
        u32 per_bank[32] = {0};
        u32 worst = 1;
        for (u32 i = 0; i < n; ++i) worst = prof_max(worst, ++per_bank[(p.scratch[i] - (p.sh_lo >> 2)) & 31]);
        const u64 words = n + over;
        *wf += worst + over;
        *ideal += prof_max<u64>(1, (words + 31) / 32);
    }
}

// Counts a complete warp instruction of site `s`.
WGEMU_PROF static void prof_finish(u32 s, const ProfInst& in) {
    Prof& p = t_prof;
    ProfRow& r = p.rows[s];
    r.requests += 1;
    switch (r.op) {
        case OpLdg:
        case OpStg: r.sectors += prof_sectors(in.a, in.w, in.mask); break;
        case OpLds:
        case OpSts:
        case OpLdsm: prof_wavefronts(in.a, in.w, in.mask, r.width, &r.wavefronts, &r.ideal); break;
        case OpCpAsync:
            r.sectors += prof_sectors(in.g, in.gw, in.mask);
            prof_wavefronts(in.a, in.w, in.mask, r.width, &r.wavefronts, &r.ideal);
            break;
    }
}

// Makes room for one more instruction in a window (a ring buffer, doubled when full).
WGEMU_PROF static bool prof_win_push(ProfWin& W) {
    if (W.count == W.cap) {
        const u32 cap = W.cap ? W.cap * 2 : 4;
        ProfInst* buf = (ProfInst*)std::malloc((size_t)cap * sizeof(ProfInst));
        if (!buf) return false;
        for (u32 i = 0; i < W.count; ++i) buf[i] = W.buf[(W.head + i) % W.cap];
        std::free(W.buf);
        W.buf = buf;
        W.cap = cap;
        W.head = 0;
    }
    ProfInst& in = W.buf[(W.head + W.count) % W.cap];
    in.n = 0;
    in.mask = 0;
    ++W.count;
    return true;
}

// Records the running lane's access to (a, w) (cp.async: destination; source (g, gw)) at site (pc, op).
WGEMU_PROF static void prof_record(u32 op, uintptr_t pc, uintptr_t a, u32 w, uintptr_t g, u32 gw) {
    Prof& p = t_prof;
    const Fiber* f = t_cur;
    // A return address points after the call: the site is the call's last byte (as code_off).
    const u32 s = prof_site(pc - p.mod_base - 1, op, w);
    if (s == kDone) return prof_fail();
    if (p.stamp[s] != p.block) {
        p.stamp[s] = p.block;
        std::memset(p.cnt + (size_t)s * p.nthreads, 0, (size_t)p.nthreads * sizeof(u32));
    }
    const u32 k = p.cnt[(size_t)s * p.nthreads + (u32)f->tid]++;
    ProfWin& W = p.win[(size_t)s * 32 + (u32)f->warp];
    // k >= base_k: an instruction is counted only once every lane of the warp has executed it.
    const u32 i = k - W.base_k;
    while (i >= W.count)
        if (!prof_win_push(W)) return prof_fail();
    ProfInst& in = W.buf[(W.head + i) % W.cap];
    const u32 lane = (u32)f->lane;
    in.a[lane] = a;
    in.w[lane] = (u16)prof_min<u32>(w, 0xFFFF);
    in.g[lane] = g;
    in.gw[lane] = (u16)prof_min<u32>(gw, 0xFFFF);
    in.mask |= 1u << lane;
    ++in.n;
    ProfRow& r = p.rows[s];
    r.lanes += 1;
    r.bytes += w;
    if (op == OpCpAsync && gw == 0) r.zfill += 1;
    const u32 lanes = prof_min<u32>(32, p.nthreads - (u32)f->warp * 32);
    if (in.n == lanes) {
        prof_finish(s, in);
        in.n = kDone;
        while (W.count && W.buf[W.head].n == kDone) {
            W.head = (W.head + 1) % W.cap;
            --W.count;
            ++W.base_k;
        }
    }
}

// A kernel's load or store of `size` bytes at `a` (the instrumentation's hooks).
WGEMU_PROF_INLINE void prof_access(uintptr_t a, size_t size, bool write, uintptr_t pc) {
    if (__builtin_expect(!__atomic_load_n(&g_prof_any, __ATOMIC_RELAXED), 1)) return;
    const Prof& p = t_prof;
    if (!p.on) return;
    const bool shared = a - p.sh_lo < p.sh_span;
    if (!shared && a - p.ar_lo >= p.ar_span) return;  // a register spill, a parameter, host data
    if (!t_cur || !size) return;
    prof_record(shared ? (write ? OpSts : OpLds) : (write ? OpStg : OpLdg), pc, a, (u32)prof_min<size_t>(size, 0xFFFF), 0, 0);
}

// ldmatrix: this lane's 16-byte row (kernels/mma.cuh).
WGEMU_PROF static void prof_ldmatrix(const void* row, uintptr_t pc) {
    if (t_prof.on && t_cur) prof_record(OpLdsm, pc, (uintptr_t)row, 16, 0, 0);
}

// cp.async of `bytes` from `src` (of which `src_bytes` are read) to `dst`.
WGEMU_PROF static void prof_cp_async(const void* dst, const void* src, int bytes, int src_bytes, uintptr_t pc) {
    if (!t_prof.on || !t_cur || bytes <= 0) return;
    const u32 gw = src_bytes > 0 ? (u32)prof_min(src_bytes, bytes) : 0;
    prof_record(OpCpAsync, pc, (uintptr_t)dst, (u32)bytes, gw ? (uintptr_t)src : 0, gw);
}

// Counts the instructions of the block that just ended that not every lane executed.
WGEMU_PROF static void prof_block_end() {
    Prof& p = t_prof;
    if (!p.on) return;
    for (u32 s = 0; s < p.nsites; ++s)
        for (u32 w = 0; w < p.nwarps; ++w) {
            ProfWin& W = p.win[(size_t)s * 32 + w];
            for (u32 i = 0; i < W.count; ++i) {
                const ProfInst& in = W.buf[(W.head + i) % W.cap];
                if (in.n != kDone && in.n) prof_finish(s, in);
            }
            W.head = W.count = W.base_k = 0;
        }
    ++p.block;
}

// Prepares the profiler for a launch of blocks of `nthreads` threads (off unless L->profile).
WGEMU_PROF static void prof_begin(LaunchCtx* L, u32 nthreads) {
    Prof& p = t_prof;
    p.on = L && L->profile && nthreads;
    if (!p.on) return;
    __atomic_store_n(&g_prof_any, 1u, __ATOMIC_RELAXED);
    L->prof_rows = nullptr;
    L->prof_n = 0;
    L->prof_failed = 0;
    code_off((uintptr_t)&prof_begin);  // finds this module's load address
    p.mod_base = t_chk.mod_base;
    p.failed = 0;
    p.nthreads = nthreads;
    p.nwarps = (nthreads + 31) / 32;
    p.block = 1;
    p.nsites = 0;
    if (p.hkey) std::memset(p.hkey, 0, (size_t)p.hcap * sizeof(u64));
    if (!p.scratch) {
        p.scratch = (u64*)std::malloc(4096 * sizeof(u64));
        p.scratch_cap = p.scratch ? 4096 : 0;
    }
    // The module's shared arrays on this host thread (as check_begin finds them) and device memory.
    const uintptr_t base = (uintptr_t)&t_anchor - L->anchor_off;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (u32 i = 0; i < L->n_shared; ++i) {
        lo = prof_min<uintptr_t>(lo, base + L->shared[i].off);
        hi = prof_max<uintptr_t>(hi, base + L->shared[i].off + L->shared[i].size);
    }
    p.sh_lo = hi > lo ? lo & ~(uintptr_t)3 : 0;
    p.sh_span = hi > lo ? hi - p.sh_lo : 0;
    p.ar_lo = L->arena_lo;
    p.ar_span = L->arena_size;
    if (!prof_grow(1)) {
        p.failed = 1;
        p.on = 0;
    }
}

// Ends the launch: counts what is left and hands the rows to the Rust side (valid until the next
// launch on this host thread).
WGEMU_PROF static void prof_end(LaunchCtx* L) {
    Prof& p = t_prof;
    if (!L || !L->profile) return;
    if (p.on) prof_block_end();
    L->prof_rows = p.rows;
    L->prof_n = p.nsites;
    L->prof_failed = p.failed;
    p.on = 0;
}

#undef WGEMU_PROF
#undef WGEMU_PROF_INLINE

}  // namespace wgemu
