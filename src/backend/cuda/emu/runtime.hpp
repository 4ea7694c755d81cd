// runtime.hpp: the CUDA built-ins that kernels/*.cu use, for compiling those files as host C++ and
// running them in the host emulator (src/backend/cuda/emu/mod.rs). Force-included (`-include`) in
// front of each module, so the kernel sources are compiled unchanged.
//
// Execution model. A launch runs its blocks one after another on the calling thread. Each CUDA
// thread of a block is a fiber with its own stack (on x86-64 switched by the few instructions of
// `wgemu_switch` below; elsewhere by ucontext, whose swapcontext costs a system call per switch).
// The scheduler resumes every runnable fiber, in thread order (or reversed, or in a seeded random
// order: WGAN_EMU_SCHEDULE), until it finishes or reaches a synchronisation point:
//   __syncthreads()      waits until every thread of the block that has not exited is waiting;
//   warp operations      __syncwarp, shuffles and votes wait for the lanes their mask names;
//                        mma.sync and ldmatrix (kernels/mma.cuh) for the full warp.
// A fiber runs until it blocks, so a thread reads shared memory written by another thread only
// after a synchronisation has let that thread run. Threads waiting at different barriers are
// reported as a deadlock. `__shared__` variables are function statics: one copy per host thread,
// reused by each block in turn (CUDA leaves shared memory uninitialised too). Dynamic shared memory
// (`extern __shared__`) is refused when the module is built. Atomics run as one indivisible step.
//
// Checked execution (emu/check.rs, WGAN_EMU_CHECK). A checked module is compiled with GCC's or
// Clang's ThreadSanitizer instrumentation (-fsanitize=thread) but linked WITHOUT its run-time
// library: the compiler then calls the `__tsan_read4(addr)`-style hooks below before every load and
// store of the kernel code, and this file implements them. Each access is classified by address
// (a `__shared__` array of this module, device memory in the emulator's arena, or anything else:
// registers spilled to the stack, the launch's parameters) and checked against a shadow record:
//   race   per byte of shared memory and per 4-byte word of device memory, the last write and the
//          readers of the current synchronisation interval (block epoch for threads of different
//          warps, warp epoch for lanes of one warp), and the blocks of this launch that touched it.
//          Two accesses of different threads, one a write, with no barrier between them (or of
//          different blocks of one launch) are a race whatever order the threads ran in.
//          Atomics do not race with each other.
//   init   a read of shared memory no thread of this block wrote, or of device memory never
//          written (by an upload, a copy or a kernel) since it was allocated.
//   sync   a barrier some threads of the block never reach (exited, or at another barrier), or
//          reached at different places; a warp operation whose mask leaves out the calling lane
//          or names a lane that never arrives; mma/ldmatrix executed by less than a full warp.
//   align  every access at its natural alignment (vector types, cp.async sizes, ldmatrix rows);
//          accesses outside every `__shared__` array and outside every device buffer.
//   async  a read of a cp.async destination before the wait_group that retires its copy, and a
//          write into a destination a pending copy still targets.
// The first finding stops the launch (its block is abandoned) and becomes the launch's error,
// with the kernel, block, thread(s) and source lines (mod.rs maps the code addresses to lines).
//
// Profiled execution (WGAN_EMU_PROFILE): the same hooks feed the memory profiler, profile.hpp.

#pragma once

#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdlib>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

// ---- vector types (CUDA's alignment: a misaligned uint4 access is an error on the device) ----
struct alignas(8) uint2 {
    unsigned int x, y;
};
struct uint3 {
    unsigned int x, y, z;
};
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct dim3 {
    unsigned int x, y, z;
};
inline uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
// Each __shared__ array gets a 64-byte red zone declared before it (not part of any array), so that
// an access running off the end of one array into the next is found (check: align).
#define WGEMU_CAT2(a, b) a##b
#define WGEMU_CAT(a, b) WGEMU_CAT2(a, b)
#define __shared__                                                                              \
    static thread_local __attribute__((used)) ::wgemu_redzone WGEMU_CAT(wgemu_rz_, __COUNTER__); \
    static thread_local
struct wgemu_redzone {
    char b[64];
};
#define warpSize 32
// Runtime code: never instrumented (its own memory traffic is not the kernel's), never inlined (so
// that __builtin_return_address(0) is the kernel's call site).
#define WGEMU_RT __attribute__((no_sanitize("thread"), noinline, unused))
// The instrumentation's hooks: as WGEMU_RT, and hidden, so that the calls do not go through the PLT.
#define WGEMU_HOOK __attribute__((no_sanitize("thread"), noinline, visibility("hidden")))

// ---- math the device library has and the host spells differently ----
using std::log;
using std::sqrt;
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)b < (T)a ? (T)b : (T)a;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return (T)a < (T)b ? (T)b : (T)a;
}
inline double cospi(double x) { return std::cos(M_PI * x); }
inline double sinpi(double x) { return std::sin(M_PI * x); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * (unsigned long long)b) >> 32);
}
inline float __int_as_float(int v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
inline int __float_as_int(float f) {
    int v;
    std::memcpy(&v, &f, 4);
    return v;
}

namespace wgemu {

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

// What a launch is given by the Rust side (mirrors `LaunchDims` in emu/mod.rs).
struct LaunchDims {
    unsigned int grid[3];
    unsigned int block[3];
};

// One `__shared__` array of the module: its offset and size in the module's TLS segment (from the
// library's symbol table, read by emu/check.rs) and its name.
struct SharedVar {
    u64 off, size;
    const char* name;
};

// Checks (bits of LaunchCtx::checks) and finding classes (report codes), as in emu/check.rs.
enum : u32 { CheckRace = 1, CheckInit = 2, CheckSync = 4, CheckAlign = 8, CheckAsync = 16 };
enum Schedule : u32 { Forward = 0, Reverse = 1, Seeded = 2 };

struct ProfRow;  // profile.hpp

// A launch's context, from the Rust side (mirrors `LaunchCtx` in emu/check.rs).
struct LaunchCtx {
    u32 checks;              // CheckRace | …; 0: unchecked
    u32 schedule;            // Schedule
    u64 seed;                // Seeded: the seed
    u64 arena_lo, arena_size;  // device memory of a checked emulator (0: none)
    u64 shadow_lo;           // its shadow: one Rec per 4-byte word of the arena
    u32 blk_base;            // serial number of this launch's first block (serials never repeat)
    u32 n_shared;            // shared arrays of the module
    const SharedVar* shared;
    u64 anchor_off;          // offset of `t_anchor` in the module's TLS segment
    const char* kernel;      // the kernel's name, for reports
    // Written by the runtime when a check finds something:
    u32 found;               // the check's bit, 0 = nothing
    u32 npc;                 // code addresses in `pc` (module offsets) that the message names @0@, @1@
    u64 pc[2];
    // The memory profiler (profile.hpp): on when `profile`; at the end the runtime writes its rows
    // (valid until the next launch on this host thread) and whether it ran out of memory.
    u32 profile, prof_n;
    const ProfRow* prof_rows;
    u32 prof_failed, prof_pad;
};

// The shadow record of one 4-byte word of shared or device memory (48 bytes; emu/check.rs writes
// `flags` of device words). Byte masks keep sub-word accesses apart: `masks` holds the bytes of the
// last write (low nibble) and the bytes read in the current interval (high nibble); for shared
// memory the high nibble of `flags` holds the bytes this block has written (init check).
struct Rec {
    u32 w_blk, w_bep, w_wep, w_pc;  // last write: block serial, block and warp epochs, code offset
    u32 r_blk, r_prev;              // block of the latest reads; an earlier reader block
    u32 r_bep, r_warps;             // reads of r_blk in block epoch r_bep: warps that read
    u32 r_gwep, r_pc;               // the latest warp-epoch group of readers: its epoch, a read's code
    u16 w_tid, r_gtid;              // writer; a reader of the group
    u8 w_kind;                      // 0 none, 1 plain write, 2 atomic, 3 cp.async pending
    u8 r_gmulti;                    // the group has several readers
    u8 flags;                       // 1 allocated, 2 initialised (device); bytes written (shared)
    u8 masks;                       // bytes of the last write | bytes read in the interval << 4
};
static_assert(sizeof(Rec) == 48, "Rec layout (emu/check.rs)");
enum : u8 { KNone = 0, KWrite = 1, KAtomic = 2, KPending = 3 };
enum : u8 { FValid = 1, FInit = 2, FRuntime = 4 };  // FRuntime: the runtime's own thread-locals
enum Access : u8 { ARead = 0, AWrite = 1, AAtomic = 2 };

enum State { Ready, WaitBlock, WaitWarp, Done };
enum WarpOp : u8 { OpShuffle = 1, OpSyncwarp = 2, OpVote = 3, OpCollective = 4 };

// ---- fiber contexts ----
#if defined(__x86_64__) && !defined(WGEMU_UCONTEXT)
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores
// the stack pointer in *save, switches to the stack `load` and restores what was saved there.
// Everything else is caller-saved under the System V ABI, so a call is a complete switch.
extern "C" void wgemu_switch(void** save, void* load);
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl wgemu_switch\n"
    ".hidden wgemu_switch\n"
    ".type wgemu_switch,@function\n"
    "wgemu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size wgemu_switch, .-wgemu_switch\n");

struct Ctx {
    void* sp = nullptr;
};
inline void ctx_switch(Ctx* from, Ctx* to) { wgemu_switch(&from->sp, to->sp); }
// A context that starts `entry` (which never returns) on the stack [stack, stack + size): the frame
// wgemu_switch pops, laid out so that `entry` starts with the stack aligned as after a call.
WGEMU_RT static void ctx_make(Ctx* c, char* stack, size_t size, void (*entry)()) {
    void** sp = (void**)(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
    *--sp = nullptr;          // entry's return address: never used
    *--sp = (void*)entry;     // popped by wgemu_switch's ret; 16-byte aligned
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
    --sp;
    unsigned int* ctl = (unsigned int*)sp;
    ctl[0] = 0x1F80;  // MXCSR: all exceptions masked, round to nearest
    ctl[1] = 0x037F;  // x87 control word: the ABI's initial value
    c->sp = sp;
}
#else
struct Ctx {
    ucontext_t uc;
};
inline void ctx_switch(Ctx* from, Ctx* to) { swapcontext(&from->uc, &to->uc); }
WGEMU_RT static void ctx_make(Ctx* c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}
#endif

// A cp.async copy in flight (kernels/mma.cuh issues them, a wait_group retires them).
struct PendingCopy {
    void* dst;
    const void* src;
    int bytes, src_bytes;
    unsigned group;
};

struct Fiber {
    Ctx ctx;
    uint3 idx;
    int lane, warp, tid;
    State state;
    // At a warp operation: its mask, kind and code address; at a barrier: its code address.
    u32 wmask;
    u8 wop;
    uintptr_t site;
    alignas(8) unsigned char slot[8];  // a shuffle's or vote's outgoing value
    const void* pub[3];                // a collective's published operands
    Fiber* warp0;                      // lane 0 of this fiber's warp
    int warp_lanes;                    // threads in this fiber's warp (32 but in a block's last)
    std::vector<PendingCopy> copies;   // cp.async copies in flight
    unsigned committed;                // cp.async groups committed so far
};

struct Block {
    std::vector<Fiber> fibers;
    Ctx sched;
    void (*body)(void*);
    void* arg;
    bool abort = false;  // a check found something: the block is abandoned
};

// Usable bytes of each fiber's stack.
constexpr uintptr_t FIBER_STACK = 64u << 10;

// Stacks for the fibers of one host thread, reused by every block it runs; each stack has an
// inaccessible guard page below it, so an overflow faults instead of corrupting a neighbour.
struct Stacks {
    char* base = nullptr;
    size_t count = 0, each = 0;
    char* get(size_t i) { return base + i * each + page(); }
    size_t usable() const { return each - page(); }
    static size_t page() { return (size_t)sysconf(_SC_PAGESIZE); }
    // The mapping: `count` stacks, then FIBER_STACK inaccessible bytes, so that everything within
    // FIBER_STACK above a fiber's stack pointer is stack (the checks' fast path, `access`).
    size_t bytes() const { return count * each + FIBER_STACK; }
    ~Stacks() {
        if (base) munmap(base, bytes());
    }
    bool reserve(size_t n) {
        if (n <= count) return true;
        if (base) munmap(base, bytes());
        each = FIBER_STACK + page();
        void* p = mmap(nullptr, n * each + FIBER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED) {
            base = nullptr;
            count = 0;
            return false;
        }
        base = (char*)p;
        count = n;
        for (size_t i = 0; i < n; ++i) mprotect(base + i * each, page(), PROT_NONE);
        mprotect(base + n * each, FIBER_STACK, PROT_NONE);
        return true;
    }
};

// The checker's state for the launch running on this host thread. Plain data, so that the
// thread-local below needs no initialiser function: that function is instrumented code too, and
// its hooks read this state.
struct Checker {
    LaunchCtx* L;
    u32 on;                     // L->checks, 0 when unchecked
    u32 nblocks;                // blocks of this launch
    u32 blk;                    // the running block's serial
    u32 clock, bep;             // block-local clock; epoch of the last __syncthreads
    u32 wep[32];                // epoch of each warp's last synchronisation
    uintptr_t sh_lo, sh_span;   // the module's shared arrays on this host thread
    Rec* sh;                    // their shadow, one Rec per word (sh_cap bytes' worth)
    size_t sh_cap;
    // Shared words every read of which needs no check in the current interval, a bit per word (see
    // read_inline): a staged tile's map stays in the L1 cache, where its 48-byte records do not.
    // [safe_lo, safe_hi) are the 64-bit words with bits set, cleared when the interval ends.
    u64* safe;
    size_t safe_lo, safe_hi;
    uintptr_t ar_lo, ar_span;   // device memory
    Rec* gsh;
    uintptr_t mod_base;         // load address of this module (code offsets in reports)
    char* err;
    size_t err_len;
    // The first init finding, kept until the launch ends: a race found later (the same read with
    // another thread's write after it in the same interval) is the better diagnosis, and reporting
    // it first must not depend on the order the threads ran in.
    u32 init_found, init_npc;
    u64 init_pc;
    char init_msg[512];
};

} // namespace wgemu
// The running fiber and the checker of the launch on this host thread, in initial-exec TLS of the
// emulator's small `wgemu-tls` library (emu/mod.rs loads it, RTLD_GLOBAL, before any module): one
// %fs-relative load, where a thread-local of this dlopen'ed module costs a __tls_get_addr call. The
// kernels read `threadIdx` through the first and every checked access reads the second. One launch
// runs at a time on a host thread, whichever module it belongs to, so the modules can share them.
extern "C" __attribute__((tls_model("initial-exec"))) __thread wgemu::Fiber* wgemu_tls_cur;
extern "C" __attribute__((tls_model("initial-exec"))) __thread wgemu::Checker* wgemu_tls_chk;
namespace wgemu {
using ::wgemu_tls_cur;  // `::wgemu::t_cur` in kernels/mma.cuh's emulation
#define t_cur wgemu_tls_cur
static thread_local Block* t_block = nullptr;
static thread_local uint3 t_block_idx;
static thread_local dim3 t_block_dim, t_grid_dim;
static thread_local Stacks t_stacks;
static thread_local Checker t_chk;  // zero-initialised (a leaked shadow per host thread)
// A known point of the module's TLS segment: its address minus its offset is the segment's base,
// from which the shared arrays' addresses follow.
static thread_local char t_anchor;

// ---- reports ----
// Formats a finding of check `bit` into the launch's error, stops the block and returns to the
// scheduler (never returns to the kernel). `pcs` are code addresses the message names @0@, @1@.
WGEMU_RT static void report(u32 bit, uintptr_t pc0, uintptr_t pc1, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
WGEMU_RT static void park(State s);

__attribute__((no_sanitize("thread"))) inline const char* check_name(u32 bit) {
    switch (bit) {
        case CheckRace: return "race";
        case CheckInit: return "init";
        case CheckSync: return "sync";
        case CheckAlign: return "align";
        case CheckAsync: return "async";
    }
    return "check";
}

__attribute__((no_sanitize("thread"))) inline uintptr_t code_off(uintptr_t pc) {
    Checker& c = t_chk;
    if (!c.mod_base && pc) {
        Dl_info info;
        if (dladdr((void*)pc, &info) && info.dli_fbase) c.mod_base = (uintptr_t)info.dli_fbase;
    }
    // A return address points after the call: name the call's own line.
    return pc && pc > c.mod_base ? pc - c.mod_base - 1 : 0;
}

WGEMU_RT static void report(u32 bit, uintptr_t pc0, uintptr_t pc1, const char* fmt, ...) {
    Checker& c = t_chk;
    if (c.L && !c.L->found) {
        c.L->found = bit;
        c.L->npc = pc1 ? 2 : pc0 ? 1 : 0;
        c.L->pc[0] = code_off(pc0);
        c.L->pc[1] = code_off(pc1);
        int n = snprintf(c.err, c.err_len, "%s: ", check_name(bit));
        if (n < 0) n = 0;
        va_list ap;
        va_start(ap, fmt);
        if ((size_t)n < c.err_len) vsnprintf(c.err + n, c.err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    if (t_block) {
        t_block->abort = true;
        if (t_cur) {
            Fiber* me = t_cur;
            ctx_switch(&me->ctx, &t_block->sched);  // never resumed
        }
    }
}

// "thread (x, y, z) of block (x, y, z)" of flat thread index `tid` of the running block.
struct Who {
    char s[80];
};
__attribute__((no_sanitize("thread"))) inline Who who(int tid) {
    Who w;
    const dim3 d = t_block_dim;
    snprintf(w.s, sizeof w.s, "thread (%u, %u, %u) of block (%u, %u, %u)", (unsigned)tid % d.x,
             (unsigned)tid / d.x % d.y, (unsigned)tid / (d.x * d.y), t_block_idx.x, t_block_idx.y, t_block_idx.z);
    return w;
}

// The shared array holding [a, a + n), or null; `start` gets its first byte.
__attribute__((no_sanitize("thread"))) inline const SharedVar* shared_var(uintptr_t a, size_t n, uintptr_t* start) {
    Checker& c = t_chk;
    const uintptr_t base = (uintptr_t)&t_anchor - c.L->anchor_off;
    for (u32 i = 0; i < c.L->n_shared; ++i) {
        const SharedVar& v = c.L->shared[i];
        const uintptr_t lo = base + v.off;
        if (a >= lo && a + n <= lo + v.size) {
            *start = lo;
            return &v;
        }
    }
    return nullptr;
}

}  // namespace wgemu
#include "profile.hpp"
namespace wgemu {

// ---- the access check ----
__attribute__((no_sanitize("thread"))) inline bool in_launch(u32 serial) {
    const Checker& c = t_chk;
    return serial != 0 && serial - c.L->blk_base < c.nblocks;
}

// Describes where an access lies, for a report: "shared `As`+0x40" or "device memory 0x7f…".
struct Where {
    char s[160];
};
WGEMU_RT static Where where(uintptr_t a, bool shared) {
    Where w;
    if (shared) {
        uintptr_t lo = 0;
        const SharedVar* v = shared_var(a, 1, &lo);
        if (v)
            snprintf(w.s, sizeof w.s, "shared array `%s` + %zu", v->name, (size_t)(a - lo));
        else
            snprintf(w.s, sizeof w.s, "shared memory outside every __shared__ array");
    } else {
        snprintf(w.s, sizeof w.s, "device memory %#zx", (size_t)a);
    }
    return w;
}

static const char* const ACCESS_NAME[3] = {"read", "write", "atomic"};

// The reports of check_rec, out of its hot path.
__attribute__((noinline, cold, no_sanitize("thread"))) static void report_hazard(const Rec& r, uintptr_t a, Access k,
                                                                                 uintptr_t pc, bool shared, int what) {
    Checker& c = t_chk;
    const u32 t = (u32)t_cur->tid, w = (u32)t_cur->warp;
    const uintptr_t mb = c.mod_base;
    auto pcof = [&](u32 off) -> uintptr_t { return off ? mb + off + 1 : 0; };
    switch (what) {
        case 0:  // outside every device buffer
            report(CheckAlign, pc, 0, "%s of device memory at %s, outside every device buffer (out of bounds), by %s, @0@",
                   ACCESS_NAME[k], where(a, false).s, who((int)t).s);
            break;
        case 1:  // a pending cp.async destination
            if (k == ARead)
                report(CheckAsync, pc, pcof(r.w_pc),
                       "%s reads %s at @0@ before the cp.async.wait_group that retires %s's copy into it (issued at @1@)",
                       who((int)t).s, where(a, shared).s, r.w_tid == t ? "its own" : who(r.w_tid).s);
            else
                report(CheckAsync, pc, pcof(r.w_pc),
                       "%s writes %s at @0@ while a cp.async copy of %s (issued at @1@) still targets it",
                       who((int)t).s, where(a, shared).s, r.w_tid == t ? "its own" : who(r.w_tid).s);
            break;
        case 2: {  // against the last write
            const bool cross = r.w_blk != c.blk;
            report(CheckRace, pc, pcof(r.w_pc), "%s-after-%s hazard on %s: %s %s it at @0@; %s %s it at @1@ %s",
                   k == ARead ? "read" : "write", r.w_kind == KAtomic ? "atomic" : "write", where(a, shared).s,
                   who((int)t).s, k == ARead ? "reads" : k == AWrite ? "writes" : "atomically updates",
                   cross ? "a thread of another block of this launch" : who(r.w_tid).s,
                   r.w_kind == KAtomic ? "atomically updated" : "wrote",
                   cross ? "(blocks are not ordered within a launch)"
                   : (u32)(r.w_tid >> 5) == w ? "with no __syncwarp or barrier between (lanes of a warp are not in lockstep)"
                                              : "with no barrier between");
            break;
        }
        default: {  // 3: a write against reads of another block; 4: of another warp; 5: of a lane of this warp
            const int other = what == 5 && r.r_gtid != t ? r.r_gtid : -1;
            report(CheckRace, pc, pcof(r.r_pc), "write-after-read hazard on %s: %s %s it at @0@; %s read it at @1@ %s",
                   where(a, shared).s, who((int)t).s, k == AWrite ? "writes" : "atomically updates",
                   what == 3 ? "a thread of another block of this launch" : other >= 0 ? who(other).s : "another thread",
                   what == 3   ? "(blocks are not ordered within a launch)"
                   : what == 5 ? "with no __syncwarp or barrier between (lanes of a warp are not in lockstep)"
                               : "with no barrier between");
        }
    }
}

__attribute__((noinline, cold, no_sanitize("thread"))) static void note_uninit(uintptr_t a, Access k, uintptr_t pc,
                                                                               bool shared) {
    Checker& c = t_chk;
    c.init_found = CheckInit;
    c.init_pc = pc > c.mod_base ? pc - c.mod_base - 1 : 0;
    c.init_npc = 1;
    snprintf(c.init_msg, sizeof c.init_msg, "init: %s %s %s at @0@, which %s", who(t_cur->tid).s,
             k == ARead ? "reads" : "atomically updates", where(a, shared).s,
             shared ? "no thread of this block has written" : "nothing has written since it was allocated");
}

// The `safe` map of shared words (Checker::safe); `sw` is a word's index, NO_WORD for device memory.
constexpr uintptr_t NO_WORD = ~(uintptr_t)0;
__attribute__((always_inline, no_sanitize("thread"))) static inline bool safe_test(const Checker& c, uintptr_t sw) {
    return (c.safe[sw >> 6] >> (sw & 63)) & 1u;
}
__attribute__((always_inline, no_sanitize("thread"))) static inline void safe_set(Checker& c, uintptr_t sw) {
    c.safe[sw >> 6] |= 1ull << (sw & 63);
    if (sw >> 6 < c.safe_lo) c.safe_lo = sw >> 6;
    if ((sw >> 6) + 1 > c.safe_hi) c.safe_hi = (sw >> 6) + 1;
}
__attribute__((always_inline, no_sanitize("thread"))) static inline void safe_clear(Checker& c, uintptr_t sw) {
    c.safe[sw >> 6] &= ~(1ull << (sw & 63));
}
// At the end of an interval (a barrier, a block's end): no word is safe any more.
__attribute__((no_sanitize("thread"))) inline void safe_reset(Checker& c) {
    if (c.safe && c.safe_hi > c.safe_lo) std::memset(c.safe + c.safe_lo, 0, (c.safe_hi - c.safe_lo) * sizeof(u64));
    c.safe_lo = SIZE_MAX;
    c.safe_hi = 0;
}

// Checks the shadow record of one word against an access of kind `k` to its bytes `m` (a mask) by
// the running thread at code address `pc`, then records the access. `shared`: shared memory.
__attribute__((noinline, no_sanitize("thread"))) static void check_rec_slow(Rec& r, uintptr_t a, u32 m, Access k,
                                                                           uintptr_t pc, bool shared, Checker& c,
                                                                           const Fiber* me) {
    const u32 t = (u32)me->tid, w = (u32)me->warp, B = c.blk, E = c.bep, W = c.wep[w];
    const u32 on = c.on;
    if (__builtin_expect(!(r.flags & FValid), 0) && (on & CheckAlign) && !shared) report_hazard(r, a, k, pc, shared, 0);
    if (__builtin_expect(r.w_kind == KPending, 0) && r.w_blk == B && (on & CheckAsync) && (r.masks & m & 15))
        report_hazard(r, a, k, pc, shared, 1);
    if (k != AWrite && (on & CheckInit) && !c.init_found) {
        const bool uninit = shared ? (r.w_blk != B || ((r.flags >> 4) & m) != m) : !(r.flags & FInit);
        if (__builtin_expect(uninit, 0)) note_uninit(a, k, pc, shared);
    }
    if (on & CheckRace) {
        // Against the last write (an atomic does not race with another atomic). Shared memory is
        // per block: another block's record there is stale, not a hazard.
        if ((r.w_kind == KWrite || (r.w_kind == KAtomic && k != AAtomic)) && (r.masks & m & 15)) {
            if (r.w_blk == B) {
                if (r.w_bep == E && r.w_tid != t && ((u32)(r.w_tid >> 5) != w || r.w_wep == W))
                    report_hazard(r, a, k, pc, shared, 2);
            } else if (!shared && in_launch(r.w_blk)) {
                report_hazard(r, a, k, pc, shared, 2);
            }
        }
        // A write or atomic against the reads.
        if (k != ARead) {
            if (r.r_blk == B) {
                if (r.r_bep == E && ((r.masks >> 4) & m)) {
                    if (r.r_warps & ~(1u << w))
                        report_hazard(r, a, k, pc, shared, 4);
                    else if ((u32)(r.r_gtid >> 5) == w && r.r_gwep == W && (r.r_gmulti || r.r_gtid != t))
                        report_hazard(r, a, k, pc, shared, 5);
                }
                if (!shared && r.r_prev != B && in_launch(r.r_prev)) report_hazard(r, a, k, pc, shared, 3);
            } else if (!shared && in_launch(r.r_blk)) {
                report_hazard(r, a, k, pc, shared, 3);
            }
        }
    }
    // Record the access.
    const u32 pc32 = (u32)(pc - c.mod_base - 1);
    if (k == ARead) {
        if (r.r_blk != B) {
            r.r_prev = r.r_blk;
            r.r_blk = B;
            r.r_bep = 0;
        }
        if (r.r_bep != E) {
            r.r_bep = E;
            r.r_warps = 0;
            r.r_gwep = 0;
            r.masks &= 15;
        }
        r.r_warps |= 1u << w;
        r.masks |= (u8)(m << 4);
        if ((u32)(r.r_gtid >> 5) == w && r.r_gwep == W) {
            if (r.r_gtid != t) r.r_gmulti = 1;
        } else {
            r.r_gwep = W;
            r.r_gtid = (u16)t;
            r.r_gmulti = 0;
        }
        r.r_pc = pc32;
    } else {
        if (shared) {
            r.flags = (u8)((r.w_blk == B ? r.flags : (r.flags & 15)) | (m << 4));
            safe_clear(c, (a - c.sh_lo) >> 2);  // its reads are checked again (a cp.async too: pending)
        } else {
            r.flags |= FInit;
        }
        r.w_blk = B;
        r.w_bep = E;
        r.w_wep = W;
        r.w_tid = (u16)t;
        r.w_kind = k == AAtomic ? KAtomic : KWrite;
        r.w_pc = pc32;
        r.masks = (u8)((r.masks & 0xF0) | m);
    }
}

// The inline path of a read of bytes already read in this block's interval (the same block epoch)
// and not the target of a pending copy. Returns false when the read needs check_rec_slow: the
// interval's first read of the word (it resets the record's reads and answers the init check),
// or a read after a write of this interval. Otherwise the read needs no check, because
// - this thread's warp-epoch group of readers already read these bytes: that group's first read
//   was checked against the last write, and any write since by another thread was checked against
//   that read (a write-after-read finding), so nothing this read could find is new; or
// - the last write is older than the interval, so the read cannot race with it (a write by
//   another block of this launch was reported at the interval's first read, or, coming later,
//   against that read), and the init check's answer is the first read's.
// In the second case the read is recorded as check_rec_slow would (its warp, its warp-epoch
// group) for the write-after-read checks to come. Once two warps have read all four bytes, any
// write to come in the interval is a write-after-read hazard against a warp other than the
// writer's, whoever writes, so no later read can add anything: `safe` (the word's entry in
// Checker::safe, shared memory only) is then marked, and the next reads pass on it alone. This is
// the common case of a tile staged in shared memory and read by every warp (GEMM operands).
__attribute__((always_inline, no_sanitize("thread"))) static inline bool read_inline(Rec& r, u32 m, Checker& c,
                                                                                    const Fiber* me, uintptr_t sw,
                                                                                    uintptr_t pc) {
    if (r.r_blk != c.blk || r.r_bep != c.bep || ((r.masks >> 4) & m) != m || r.w_kind == KPending) return false;
    const u32 t = (u32)me->tid, w = (u32)me->warp, W = c.wep[w];
    const bool group = r.r_gwep == W && (u32)(r.r_gtid >> 5) == w;
    if (group && (r.r_gtid == t || r.r_gmulti)) return true;
    if (r.w_blk == c.blk && r.w_bep == c.bep) return false;
    r.r_warps |= 1u << w;
    if (group) {
        r.r_gmulti = 1;
    } else {
        r.r_gwep = W;
        r.r_gtid = (u16)t;
        r.r_gmulti = 0;
        r.r_pc = (u32)(pc - c.mod_base - 1);
    }
    if (sw != NO_WORD && (r.r_warps & (r.r_warps - 1)) && (r.masks >> 4) == 15) safe_set(c, sw);
    return true;
}

__attribute__((always_inline, no_sanitize("thread"))) static inline void check_rec(Rec& r, uintptr_t a, u32 m, Access k,
                                                                                   uintptr_t pc, bool shared,
                                                                                   Checker& c, const Fiber* me) {
    if (k == ARead && read_inline(r, m, c, me, shared ? (a - c.sh_lo) >> 2 : NO_WORD, pc)) return;
    check_rec_slow(r, a, m, k, pc, shared, c, me);
}

__attribute__((noinline, cold, no_sanitize("thread"))) static void report_misaligned(uintptr_t a, size_t size,
                                                                                     uintptr_t pc, bool shared,
                                                                                     bool outside) {
    if (outside)
        report(CheckAlign, pc, 0, "%s reads or writes %zu bytes at %s (out of bounds of the shared arrays) at @0@",
               who(t_cur->tid).s, size, where(a, true).s);
    else
        report(CheckAlign, pc, 0, "%s reads or writes %zu bytes at %s, which is not %zu-byte aligned, at @0@",
               who(t_cur->tid).s, size, where(a, shared).s, size);
}

// Checks an access of `size` bytes at `a` (a kernel's load, store or atomic). `natural`: the
// compiler emitted it as naturally aligned for its type (so a misaligned address is the kernel's).
__attribute__((always_inline, no_sanitize("thread"))) static inline void access(uintptr_t a, size_t size, Access k,
                                                                                uintptr_t pc, bool natural) {
    // Most instrumented accesses are of the running fiber's own stack (locals, spilled registers,
    // the kernel's by-value parameters): rejected without touching thread-local state. A fiber's
    // stack is FIBER_STACK bytes with a guard page below the next one, so [sp, sp + FIBER_STACK)
    // never reaches device or shared memory.
    if (a - (uintptr_t)__builtin_frame_address(0) < FIBER_STACK) return;
    Checker* const cp = wgemu_tls_chk;  // null unless a checked launch runs on this host thread
    if (!cp) return;
    Checker& c = *cp;
    const bool shared = a - c.sh_lo < c.sh_span;
    if (!shared && a - c.ar_lo >= c.ar_span) return;  // a register spill, a parameter, host data
    const Fiber* const me = t_cur;
    if (!me) return;
    if (__builtin_expect((c.on & CheckAlign) && natural && (a & (size - 1)), 0))
        report_misaligned(a, size, pc, shared, false);
    const uintptr_t base = shared ? c.sh_lo : c.ar_lo;
    Rec* sh = shared ? c.sh : c.gsh;
    const uintptr_t off = a - base, end = off + size;
    for (uintptr_t wd = off >> 2; wd << 2 < end; ++wd) {
        // (No std::min/max here: an instrumented template is not inlined into this function.)
        const uintptr_t lo = off > (wd << 2) ? off : wd << 2, hi = end < (wd << 2) + 4 ? end : (wd << 2) + 4;
        const u32 m = ((1u << (hi - lo)) - 1u) << (lo & 3);
        Rec& r = sh[wd];
        if (__builtin_expect(shared && !(r.flags & FValid), 0)) {
            // The runtime's own thread-locals share the module's TLS segment with the arrays
            // (threadIdx reads one): not shared memory.
            if (r.flags & FRuntime) return;
            if (c.on & CheckAlign) report_misaligned(a, size, pc, true, true);
        }
        check_rec(r, base + (wd << 2), m, k, pc, shared, c, me);
    }
}

// A range the runtime itself reads or writes for the kernel (a collective's operands, a copy).
WGEMU_RT static void access_range(const void* p, size_t size, Access k, uintptr_t pc) {
    const uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < size;) {
        const size_t to_word_end = 4 - ((a + i) & 3), n = size - i < to_word_end ? size - i : to_word_end;
        access(a + i, n, k, pc, false);
        i += n;
    }
}

// Marks the destination of a cp.async pending (after checking it as a write).
WGEMU_RT static void mark_pending(uintptr_t a, size_t size, uintptr_t pc, bool pending) {
    Checker* const cp = wgemu_tls_chk;
    if (!cp || a - cp->sh_lo >= cp->sh_span) return;
    Checker& c = *cp;
    const uintptr_t off = a - c.sh_lo, end = off + size < c.sh_span ? off + size : c.sh_span;
    for (uintptr_t wd = off >> 2; wd << 2 < end; ++wd) {
        Rec& r = c.sh[wd];
        if (pending) {
            const uintptr_t lo = off > wd << 2 ? off : wd << 2, hi = end < (wd << 2) + 4 ? end : (wd << 2) + 4;
            r.w_kind = KPending;
            r.w_tid = (u16)t_cur->tid;
            r.w_pc = (u32)code_off(pc);
            r.masks = (u8)((r.masks & 0xF0) | (((1u << (hi - lo)) - 1u) << (lo & 3)));
        } else {
            r.w_kind = KNone;  // the completion is then recorded as this thread's write
        }
    }
}

// ---- scheduling ----
// Parks the current fiber in state `s` and returns to the scheduler; returns when released.
WGEMU_RT static void park(State s) {
    Fiber* me = t_cur;
    me->state = s;
    ctx_switch(&me->ctx, &t_block->sched);
}

WGEMU_RT static void fiber_main() {
    t_block->body(t_block->arg);
    t_cur->state = Done;
    ctx_switch(&t_cur->ctx, &t_block->sched);  // never resumed
}

// The fiber of lane `lane` of the current fiber's warp, or null past the block's last thread.
__attribute__((no_sanitize("thread"))) inline Fiber* lane_fiber(int lane) {
    const Fiber* me = t_cur;
    return lane < me->warp_lanes ? me->warp0 + lane : nullptr;
}

// The checks of the launch running on this host thread (0: none), without a thread-local lookup
// of this module.
__attribute__((no_sanitize("thread"))) inline u32 checks_on() {
    const Checker* c = wgemu_tls_chk;
    return c ? c->on : 0;
}

// Waits at a warp operation `op` with `mask` until every lane the mask names is there.
WGEMU_RT static void warp_wait(u32 mask, WarpOp op, uintptr_t pc) {
    Fiber* me = t_cur;
    if (!(mask >> me->lane & 1u)) {
        if (checks_on() & CheckSync)
            report(CheckSync, pc, 0, "%s executes a warp operation at @0@ with mask %#x, which leaves out its own lane %d",
                   who(me->tid).s, mask, me->lane);
        mask |= 1u << me->lane;
    }
    me->wmask = mask;
    me->wop = op;
    me->site = pc;
    park(WaitWarp);
}

template <class T>
WGEMU_RT T shuffle(u32 mask, T v, int src_lane, uintptr_t pc) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    std::memcpy(t_cur->slot, &v, sizeof(T));
    warp_wait(mask, OpShuffle, pc);  // every named lane has published its value
    T r = v;
    if (src_lane >= 0 && src_lane < 32 && src_lane != t_cur->lane) {
        Fiber* o = lane_fiber(src_lane);
        if (!o || !(mask >> src_lane & 1u)) {
            if (checks_on() & CheckSync)
                report(CheckSync, pc, 0, "%s shuffles at @0@ from lane %d, which the mask %#x does not name (undefined value)",
                       who(t_cur->tid).s, src_lane, mask);
        } else {
            std::memcpy(&r, o->slot, sizeof(T));
        }
    }
    warp_wait(mask, OpShuffle, pc);  // every lane has read before any slot is written again
    return r;
}

// A vote: every named lane publishes `pred`; returns the ballot of the named lanes.
WGEMU_RT static u32 vote(u32 mask, int pred, uintptr_t pc) {
    t_cur->slot[0] = pred != 0;
    warp_wait(mask, OpVote, pc);
    u32 b = 0;
    for (int l = 0; l < 32; ++l) {
        Fiber* o = lane_fiber(l);
        if (o && (mask >> l & 1u) && o->slot[0]) b |= 1u << l;
    }
    warp_wait(mask, OpVote, pc);
    return b;
}

// A warp collective (mma.sync, ldmatrix): every lane publishes up to three pointers and waits for
// the full warp. Returns after all have published.
WGEMU_RT static void collective_publish(const void* a, const void* b, const void* c, uintptr_t pc) {
    Fiber* me = t_cur;
    me->pub[0] = a;
    me->pub[1] = b;
    me->pub[2] = c;
    if ((checks_on() & CheckSync) && me->warp_lanes < 32)
        report(CheckSync, pc, 0, "%s executes a warp-wide instruction (mma.sync or ldmatrix) at @0@ in warp %d, which has only %d threads",
               who(me->tid).s, me->warp, me->warp_lanes);
    warp_wait(0xffffffffu, OpCollective, pc);
}
__attribute__((no_sanitize("thread"))) inline const void* published(int lane, int i) { return lane_fiber(lane)->pub[i]; }
// The second half of a collective: every lane has read the others' operands.
WGEMU_RT static void collective_done(uintptr_t pc) { warp_wait(0xffffffffu, OpCollective, pc); }

// ldmatrix: this lane's row address, of shared memory and 16-byte aligned (the reads themselves are
// checked as the receiving lanes': kernels/mma.cuh).
WGEMU_RT static void ldmatrix_row_check(const void* row, uintptr_t pc) {
    if (!wgemu_tls_chk) return;
    const Checker& c = *wgemu_tls_chk;
    const uintptr_t a = (uintptr_t)row;
    if ((c.on & CheckAlign) && (a & 15))
        report(CheckAlign, pc, 0, "%s gives ldmatrix the row address %s at @0@, which is not 16-byte aligned",
               who(t_cur->tid).s, where(a, a - c.sh_lo < c.sh_span).s);
    if ((c.on & CheckAlign) && a - c.sh_lo >= c.sh_span)
        report(CheckAlign, pc, 0, "%s gives ldmatrix the row address %#zx at @0@, which is not shared memory",
               who(t_cur->tid).s, (size_t)a);
}

// A seeded order for one round of the scheduler (splitmix64 of the seed, kernel, block and round).
__attribute__((no_sanitize("thread"))) inline u64 mix(u64 x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Releases whatever can go on when no fiber is runnable. Returns false when nothing could be
// released (a deadlock, reported into `err`), true otherwise; `done` when every thread exited.
WGEMU_RT static bool release(Block& b, size_t nthreads, bool* done, char* err, size_t err_len) {
    Checker& c = t_chk;
    t_cur = nullptr;  // reports from here name threads explicitly, and return (no fiber runs)
    bool any_live = false, released = false;
    // Warp operations: a lane waiting with mask m goes on once every lane of m waits with m.
    for (size_t w = 0; w * 32 < nthreads; ++w) {
        const size_t lo = w * 32, hi = std::min(nthreads, lo + 32);
        u32 live = 0, waiting = 0;
        for (size_t i = lo; i < hi; ++i) {
            const State s = b.fibers[i].state;
            if (s != Done) live |= 1u << (i - lo);
            if (s == WaitWarp) waiting |= 1u << (i - lo);
        }
        any_live |= live != 0;
        u32 handled = 0;
        for (size_t i = lo; i < hi; ++i) {
            Fiber& f = b.fibers[i];
            const u32 bit = 1u << (i - lo);
            if (f.state != WaitWarp || (handled & bit)) continue;
            const u32 m = f.wmask;
            bool ready = (m & ~waiting) == 0;
            for (size_t j = lo; ready && j < hi; ++j)
                if (m >> (j - lo) & 1u) ready = b.fibers[j].wmask == m && b.fibers[j].wop == f.wop;
            if (hi - lo < 32 && (m >> (hi - lo))) ready = false;  // names lanes past the block's end
            handled |= m & waiting;
            if (!ready) continue;
            for (size_t j = lo; j < hi; ++j)
                if (m >> (j - lo) & 1u) b.fibers[j].state = Ready;
            // A synchronisation of the whole warp orders its lanes' accesses (race check). A
            // collective (mma.sync, ldmatrix) only converges the warp: it is no memory fence, so
            // shared stores of other lanes still need a __syncwarp before an ldmatrix reads them.
            if ((m & live) == live && f.wop != OpCollective) c.wep[w] = ++c.clock;
            released = true;
        }
    }
    if (!any_live) {
        *done = true;
        return true;
    }
    if (released) return true;
    // __syncthreads: every live thread must wait there.
    size_t waiting = 0, exited = 0, first_other = nthreads, first_exited = nthreads;
    uintptr_t site = 0;
    bool same_site = true;
    for (size_t i = 0; i < nthreads; ++i) {
        const Fiber& f = b.fibers[i];
        if (f.state == WaitBlock) {
            if (waiting++ == 0) site = f.site;
            else if (f.site != site) same_site = false;
        } else if (f.state == Done) {
            if (exited++ == 0) first_exited = i;
        } else if (first_other == nthreads) {
            first_other = i;
        }
    }
    if (waiting + exited == nthreads) {
        if (c.on & CheckSync) {
            if (exited) {
                report(CheckSync, site, 0, "__syncthreads at @0@ is reached by %zu of the block's %zu threads: %s (and %zu more) exited before it",
                       waiting, nthreads, who((int)first_exited).s, exited - 1);
                return false;
            }
            if (!same_site) {
                uintptr_t other = 0;
                size_t oi = 0;
                for (size_t i = 0; i < nthreads; ++i)
                    if (b.fibers[i].site != site) {
                        other = b.fibers[i].site;
                        oi = i;
                        break;
                    }
                report(CheckSync, site, other, "divergent __syncthreads: threads of the block wait at @0@, %s at @1@",
                       who((int)oi).s);
                return false;
            }
        }
        for (Fiber& f : b.fibers)
            if (f.state == WaitBlock) f.state = Ready;
        c.bep = ++c.clock;
        safe_reset(c);
        for (u32& e : c.wep) e = c.bep;
        return true;
    }
    // Nothing can go on: name the cause.
    if (c.on & CheckSync) {
        for (size_t i = 0; i < nthreads; ++i) {
            const Fiber& f = b.fibers[i];
            if (f.state != WaitWarp) continue;
            const size_t lo = i & ~(size_t)31;
            for (int l = 0; l < 32; ++l) {
                if (!(f.wmask >> l & 1u)) continue;
                const size_t j = lo + (size_t)l;
                if (j >= nthreads) {
                    report(CheckSync, f.site, 0, "%s waits at a warp operation at @0@ with mask %#x for lane %d, which does not exist (the block has %zu threads)",
                           who((int)i).s, f.wmask, l, nthreads);
                    return false;
                }
                const Fiber& o = b.fibers[j];
                if (o.state == Done) {
                    report(CheckSync, f.site, 0, "%s waits at a warp operation at @0@ with mask %#x for lane %d, which has exited",
                           who((int)i).s, f.wmask, l);
                    return false;
                }
                if (o.state == WaitBlock || o.wmask != f.wmask || o.wop != f.wop) {
                    report(CheckSync, f.site, o.site, "%s waits at a warp operation at @0@ with mask %#x while lane %d of its warp waits at @1@ (divergent warp synchronisation)",
                           who((int)i).s, f.wmask, l);
                    return false;
                }
            }
        }
    }
    snprintf(err, err_len,
             "sync: deadlock in block (%u, %u, %u): threads wait at different barriers "
             "(__syncthreads or a warp operation in divergent code); %s is not at the barrier",
             t_block_idx.x, t_block_idx.y, t_block_idx.z, first_other < nthreads ? who((int)first_other).s : "a thread");
    if (c.L && !c.L->found) c.L->found = CheckSync;
    return false;
}

// Prepares the checker for a launch of `nblocks` blocks.
WGEMU_RT static void check_begin(LaunchCtx* L, u32 nblocks, char* err, size_t err_len) {
    Checker& c = t_chk;
    c.L = L;
    c.on = L ? L->checks : 0;
    c.nblocks = nblocks;
    c.err = err;
    c.err_len = err_len;
    c.sh_lo = c.sh_span = c.ar_lo = c.ar_span = 0;
    c.gsh = nullptr;
    c.init_found = 0;
    wgemu_tls_chk = nullptr;
    if (!c.on) return;
    wgemu_tls_chk = &c;
    code_off((uintptr_t)&check_begin);  // finds this module's load address
    // The shared arrays of this module on this host thread: one contiguous span of the TLS block.
    const uintptr_t base = (uintptr_t)&t_anchor - L->anchor_off;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (u32 i = 0; i < L->n_shared; ++i) {
        lo = std::min<uintptr_t>(lo, base + L->shared[i].off);
        hi = std::max<uintptr_t>(hi, base + L->shared[i].off + L->shared[i].size);
    }
    if (hi > lo) {
        c.sh_lo = lo & ~(uintptr_t)3;
        c.sh_span = (hi - c.sh_lo + 3) & ~(uintptr_t)3;
        if (c.sh_cap < c.sh_span) {
            // One record per word, made once per module and host thread: the arrays' words are
            // marked allocated (the red zones between them are not); block serials keep the
            // records of earlier blocks from matching.
            std::free(c.sh);
            std::free(c.safe);
            c.sh = (Rec*)std::calloc(c.sh_span / 4, sizeof(Rec));
            c.safe = (u64*)std::calloc(c.sh_span / 4 / 64 + 1, sizeof(u64));
            c.safe_lo = SIZE_MAX;
            c.safe_hi = 0;
            if (!c.sh || !c.safe) {
                std::free(c.sh);
                std::free(c.safe);
                c.sh = nullptr;
                c.safe = nullptr;
            }
            c.sh_cap = c.sh ? c.sh_span : 0;
            if (!c.sh) {
                snprintf(err, err_len, "could not allocate the shadow of %zu bytes of shared memory", (size_t)c.sh_span);
                c.on = 0;
                wgemu_tls_chk = nullptr;
                return;
            }
            for (u32 i = 0; i < L->n_shared; ++i) {
                const uintptr_t a0 = base + L->shared[i].off - c.sh_lo, a1 = a0 + L->shared[i].size;
                for (uintptr_t wd = a0 >> 2; wd << 2 < a1; ++wd) c.sh[wd].flags |= FValid;
            }
            // The runtime's thread-locals, wherever the linker put them among the arrays.
            const struct {
                const void* p;
                size_t n;
            } rt[] = {{&t_block, sizeof t_block},
                      {&t_block_idx, sizeof t_block_idx}, {&t_block_dim, sizeof t_block_dim},
                      {&t_grid_dim, sizeof t_grid_dim},   {&t_stacks, sizeof t_stacks},
                      {&t_chk, sizeof t_chk},             {&t_anchor, sizeof t_anchor}};
            for (const auto& v : rt) {
                const uintptr_t a0 = (uintptr_t)v.p, a1 = a0 + v.n;
                if (a1 <= c.sh_lo || a0 >= c.sh_lo + c.sh_span) continue;
                const uintptr_t lo = a0 < c.sh_lo ? 0 : a0 - c.sh_lo, hi = a1 - c.sh_lo < c.sh_span ? a1 - c.sh_lo : c.sh_span;
                for (uintptr_t wd = lo >> 2; wd << 2 < hi; ++wd) c.sh[wd].flags |= FRuntime;
            }
        }
    }
    c.ar_lo = L->arena_lo;
    c.ar_span = L->arena_size;
    c.gsh = (Rec*)L->shadow_lo;
}

// Runs every block of a launch. Returns 0, or 1 with a message in `err`.
WGEMU_RT static int run(const LaunchDims* d, void (*body)(void*), void* arg, char* err, size_t err_len, LaunchCtx* L) {
    const size_t nthreads = (size_t)d->block[0] * d->block[1] * d->block[2];
    if (nthreads == 0 || nthreads > 1024 || d->grid[0] == 0 || d->grid[1] == 0 || d->grid[2] == 0) {
        snprintf(err, err_len, "invalid launch: grid (%u, %u, %u), block (%u, %u, %u)", d->grid[0], d->grid[1],
                 d->grid[2], d->block[0], d->block[1], d->block[2]);
        return 1;
    }
    if (!t_stacks.reserve(nthreads)) {
        snprintf(err, err_len, "could not map %zu fiber stacks", nthreads);
        return 1;
    }
    const u64 nblocks = (u64)d->grid[0] * d->grid[1] * d->grid[2];
    check_begin(L, (u32)nblocks, err, err_len);
    prof_begin(L, (u32)nthreads);
    Checker& c = t_chk;
    Block b;
    b.fibers.resize(nthreads);
    b.body = body;
    b.arg = arg;
    t_block = &b;
    t_grid_dim = dim3{d->grid[0], d->grid[1], d->grid[2]};
    t_block_dim = dim3{d->block[0], d->block[1], d->block[2]};
    const u32 schedule = L ? L->schedule : Forward;
    u64 kernel_hash = 1469598103934665603ull;
    if (L && L->kernel)
        for (const char* p = L->kernel; *p; ++p) kernel_hash = (kernel_hash ^ (u8)*p) * 1099511628211ull;
    std::vector<u32> order(nthreads);
    u64 serial = 0;
    int rc = 0;
    for (unsigned bz = 0; bz < d->grid[2] && !rc; ++bz)
        for (unsigned by = 0; by < d->grid[1] && !rc; ++by)
            for (unsigned bx = 0; bx < d->grid[0] && !rc; ++bx, ++serial) {
                t_block_idx = uint3{bx, by, bz};
                c.blk = L ? L->blk_base + (u32)serial : 0;
                c.clock = 1;
                c.bep = 1;
                safe_reset(c);
                for (u32& e : c.wep) e = 1;
                b.abort = false;
                for (size_t i = 0; i < nthreads; ++i) {
                    Fiber& f = b.fibers[i];
                    f.idx = uint3{(unsigned)(i % d->block[0]), (unsigned)(i / d->block[0] % d->block[1]),
                                  (unsigned)(i / ((size_t)d->block[0] * d->block[1]))};
                    f.tid = (int)i;
                    f.lane = (int)(i & 31);
                    f.warp = (int)(i >> 5);
                    f.state = Ready;
                    f.wmask = 0;
                    f.wop = 0;
                    f.site = 0;
                    f.copies.clear();
                    f.committed = 0;
                    f.warp0 = &b.fibers[i & ~(size_t)31];
                    f.warp_lanes = (int)(nthreads - (i & ~(size_t)31) < 32 ? nthreads - (i & ~(size_t)31) : 32);
                    ctx_make(&f.ctx, t_stacks.get(i), t_stacks.usable(), fiber_main);
                }
                for (u64 round = 0;; ++round) {
                    for (size_t i = 0; i < nthreads; ++i) order[i] = (u32)i;
                    if (schedule == Reverse) {
                        std::reverse(order.begin(), order.end());
                    } else if (schedule == Seeded) {
                        u64 s = mix(L->seed ^ mix(kernel_hash ^ mix(serial ^ mix(round))));
                        for (size_t i = nthreads; i > 1; --i) {
                            s = mix(s);
                            std::swap(order[i - 1], order[s % i]);
                        }
                    }
                    for (u32 i : order) {
                        Fiber& f = b.fibers[i];
                        if (f.state == Ready && !b.abort) {
                            t_cur = &f;
                            ctx_switch(&b.sched, &f.ctx);
                        }
                    }
                    if (b.abort) {
                        rc = 1;
                        break;
                    }
                    bool done = false;
                    if (!release(b, nthreads, &done, err, err_len)) {
                        rc = 1;
                        break;
                    }
                    if (done) break;
                }
                prof_block_end();
            }
    prof_end(L);
    t_block = nullptr;
    t_cur = nullptr;
    if (!rc && c.init_found && L) {
        L->found = c.init_found;
        L->npc = c.init_npc;
        L->pc[0] = c.init_pc;
        snprintf(err, err_len, "%s", c.init_msg);
        rc = 1;
    }
    c.L = nullptr;
    c.on = 0;
    wgemu_tls_chk = nullptr;
    return rc;
}

// Calls `kernel` with its arguments read from `args` (cuLaunchKernel's convention: args[i] points
// to the i-th argument's value).
template <class... A>
struct Call {
    void (*kernel)(A...);
    void** args;
    template <size_t... I>
    void invoke(std::index_sequence<I...>) {
        kernel(*static_cast<typename std::remove_reference<A>::type*>(args[I])...);
    }
    static void body(void* self) { static_cast<Call*>(self)->invoke(std::index_sequence_for<A...>{}); }
};

template <class... A>
inline int launch(const LaunchDims* d, void (*kernel)(A...), void** args, char* err, size_t err_len, LaunchCtx* L) {
    Call<A...> c{kernel, args};
    return run(d, &Call<A...>::body, &c, err, err_len, L);
}

// ---- cp.async (kernels/mma.cuh) ----
// Queues a copy of `bytes` from global `src` to shared `dst` (`src_bytes` read, the rest zero).
WGEMU_RT static void cp_async_issue(void* dst, const void* src, int bytes, int src_bytes, bool cg) {
    const uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    static const Checker none{};
    const Checker& c = wgemu_tls_chk ? *wgemu_tls_chk : none;
    Fiber* me = t_cur;
    if (c.on & CheckAlign) {
        const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
        if (!(bytes == 4 || bytes == 8 || bytes == 16) || (cg && bytes != 16))
            report(CheckAlign, pc, 0, "%s issues cp.async.%s of %d bytes at @0@ (ca copies 4, 8 or 16, cg only 16)",
                   who(me->tid).s, cg ? "cg" : "ca", bytes);
        if (src_bytes < 0 || src_bytes > bytes)
            report(CheckAlign, pc, 0, "%s issues cp.async of %d bytes with source size %d at @0@ (0 to %d allowed)",
                   who(me->tid).s, bytes, src_bytes, bytes);
        if (d % (uintptr_t)bytes)
            report(CheckAlign, pc, 0, "%s issues cp.async of %d bytes to %s, not %d-byte aligned, at @0@",
                   who(me->tid).s, bytes, where(d, d - c.sh_lo < c.sh_span).s, bytes);
        if (src_bytes > 0 && s % (uintptr_t)bytes)
            report(CheckAlign, pc, 0, "%s issues cp.async of %d bytes from %s, not %d-byte aligned, at @0@",
                   who(me->tid).s, bytes, where(s, false).s, bytes);
        if (d - c.sh_lo >= c.sh_span)
            report(CheckAlign, pc, 0, "%s issues cp.async into %s, which is not shared memory, at @0@",
                   who(me->tid).s, where(d, false).s);
    }
    prof_cp_async(dst, src, bytes, src_bytes, pc);
    if (c.on) {
        if (src_bytes > 0) access_range(src, (size_t)src_bytes, ARead, pc);
        access_range(dst, (size_t)bytes, AWrite, pc);  // a write of this interval (races, stage reuse)
        if (c.on & CheckAsync) mark_pending((uintptr_t)dst, (size_t)bytes, pc, true);
    }
    me->copies.push_back(PendingCopy{dst, src, bytes, src_bytes, me->committed});
}

WGEMU_RT static void cp_async_commit() { ++t_cur->committed; }

// cp.async.wait_group n: retires this thread's committed groups but the newest n. The copies are
// performed here, so data read before the wait is stale in the emulator as it may be on a GPU.
WGEMU_RT static void cp_async_wait(int n) {
    const uintptr_t pc = (uintptr_t)__builtin_return_address(0);
    Fiber* me = t_cur;
    std::vector<PendingCopy>& q = me->copies;
    size_t keep = 0;
    for (size_t i = 0; i < q.size(); ++i) {
        const PendingCopy& cp = q[i];
        if (cp.group < me->committed && me->committed - cp.group > (unsigned)n) {
            unsigned char tmp[16] = {0};
            if (cp.src_bytes > 0) std::memcpy(tmp, cp.src, (size_t)std::min(cp.src_bytes, cp.bytes));
            if (checks_on() & CheckAsync) mark_pending((uintptr_t)cp.dst, (size_t)cp.bytes, pc, false);
            if (checks_on()) access_range(cp.dst, (size_t)cp.bytes, AWrite, pc);  // the copy lands now
            std::memcpy(cp.dst, tmp, (size_t)cp.bytes);
        } else {
            q[keep++] = cp;
        }
    }
    q.resize(keep);
}

// ---- atomics: one indivisible step (fibers never interleave inside one) ----
template <class T, class F>
WGEMU_RT T atomic_rmw(T* p, uintptr_t pc, F f) {
    if (checks_on()) access((uintptr_t)p, sizeof(T), AAtomic, pc, true);
    const T old = *p;
    *p = f(old);
    return old;
}

}  // namespace wgemu

#define threadIdx (::wgemu_tls_cur->idx)
#define blockIdx (::wgemu::t_block_idx)
#define blockDim (::wgemu::t_block_dim)
#define gridDim (::wgemu::t_grid_dim)
#define WGEMU_PC ((uintptr_t)__builtin_return_address(0))

// ---- barriers, warp operations ----
WGEMU_RT static void __syncthreads() {
    ::wgemu_tls_cur->site = WGEMU_PC;
    ::wgemu::park(::wgemu::WaitBlock);
}
WGEMU_RT static void __syncwarp(unsigned mask = 0xffffffffu) { ::wgemu::warp_wait(mask, ::wgemu::OpSyncwarp, WGEMU_PC); }
inline void __threadfence() {}
inline void __threadfence_block() {}

// The source lane of a shuffle within segments of `width` lanes (CUDA's rules: a source past the
// caller's segment gives the caller's own value, signalled here by -1).
inline int wgemu_seg(int width) { return (width <= 0 || width > 32) ? 32 : width; }
template <class T>
WGEMU_RT T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    const int w = wgemu_seg(width), lane = ::wgemu_tls_cur->lane;
    return ::wgemu::shuffle(mask, v, (lane & ~(w - 1)) + (src & (w - 1)), WGEMU_PC);
}
template <class T>
WGEMU_RT T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int w = wgemu_seg(width), lane = ::wgemu_tls_cur->lane;
    const int s = (lane & (w - 1)) + (int)delta < w ? lane + (int)delta : -1;
    return ::wgemu::shuffle(mask, v, s, WGEMU_PC);
}
template <class T>
WGEMU_RT T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    const int w = wgemu_seg(width), lane = ::wgemu_tls_cur->lane;
    const int s = (lane & (w - 1)) >= (int)delta ? lane - (int)delta : -1;
    return ::wgemu::shuffle(mask, v, s, WGEMU_PC);
}
template <class T>
WGEMU_RT T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    const int w = wgemu_seg(width), lane = ::wgemu_tls_cur->lane, s = lane ^ lane_mask;
    return ::wgemu::shuffle(mask, v, s < (lane & ~(w - 1)) + w ? s : -1, WGEMU_PC);
}
WGEMU_RT static unsigned __ballot_sync(unsigned mask, int pred) { return ::wgemu::vote(mask, pred, WGEMU_PC); }
WGEMU_RT static int __any_sync(unsigned mask, int pred) { return ::wgemu::vote(mask, pred, WGEMU_PC) != 0; }
WGEMU_RT static int __all_sync(unsigned mask, int pred) { return ::wgemu::vote(mask, pred, WGEMU_PC) == mask; }

// ---- atomics ----
#define WGEMU_ATOMIC(name, T, expr)                                                          \
    WGEMU_RT static T name(T* p, T v) {                                                      \
        return ::wgemu::atomic_rmw(p, WGEMU_PC, [v](T old) -> T { return (T)(expr); }); \
    }
WGEMU_ATOMIC(atomicAdd, float, old + v)
WGEMU_ATOMIC(atomicAdd, double, old + v)
WGEMU_ATOMIC(atomicAdd, int, old + v)
WGEMU_ATOMIC(atomicAdd, unsigned int, old + v)
WGEMU_ATOMIC(atomicAdd, unsigned long long, old + v)
WGEMU_ATOMIC(atomicSub, int, old - v)
WGEMU_ATOMIC(atomicSub, unsigned int, old - v)
WGEMU_ATOMIC(atomicMax, int, old < v ? v : old)
WGEMU_ATOMIC(atomicMax, unsigned int, old < v ? v : old)
WGEMU_ATOMIC(atomicMin, int, v < old ? v : old)
WGEMU_ATOMIC(atomicMin, unsigned int, v < old ? v : old)
WGEMU_ATOMIC(atomicExch, float, v)
WGEMU_ATOMIC(atomicExch, int, v)
WGEMU_ATOMIC(atomicExch, unsigned int, v)
WGEMU_ATOMIC(atomicOr, unsigned int, old | v)
WGEMU_ATOMIC(atomicAnd, unsigned int, old & v)
#undef WGEMU_ATOMIC
#define WGEMU_CAS(T)                                                                                \
    WGEMU_RT static T atomicCAS(T* p, T cmp, T v) {                                                 \
        return ::wgemu::atomic_rmw(p, WGEMU_PC, [cmp, v](T old) -> T { return old == cmp ? v : old; }); \
    }
WGEMU_CAS(int)
WGEMU_CAS(unsigned int)
WGEMU_CAS(unsigned long long)
#undef WGEMU_CAS

// ---- the instrumentation's hooks (see the header comment) ----
namespace wgemu {
// The general path of a hook: everything but the common cases of `hook` below.
__attribute__((noinline, no_sanitize("thread"))) static void access_outlined(uintptr_t a, size_t size, Access k,
                                                                            uintptr_t pc, bool natural) {
    access(a, size, k, pc, natural);
}
__attribute__((noinline, cold, no_sanitize("thread"))) static void prof_access_outlined(uintptr_t a, size_t size,
                                                                                       bool write, uintptr_t pc) {
    prof_access(a, size, write, pc);
}

// A read within one word that needs nothing more: not of shared or device memory, or a read that
// `read_inline` records. Its state is in the caller's registers, so the hook that
// inlines it needs no stack frame when it returns true.
__attribute__((always_inline, no_sanitize("thread"))) static inline bool read_done(uintptr_t a, size_t n, bool natural, uintptr_t pc,
                                                                                   Checker& c) {
    if (natural && (a & (n - 1))) return false;
    uintptr_t off = a - c.sh_lo;
    Rec* sh = c.sh;
    uintptr_t sw = NO_WORD;
    if (off < c.sh_span) {
        sw = off >> 2;
        if (safe_test(c, sw)) return true;
    } else {
        off = a - c.ar_lo;
        if (off >= c.ar_span) return true;  // a register spill, a parameter, host data
        sh = c.gsh;
    }
    if ((off & 3) + n > 4) return false;
    const Fiber* const me = t_cur;
    if (!me) return true;
    return read_inline(sh[off >> 2], ((1u << n) - 1u) << (off & 3), c, me, sw, pc);
}

// A hook's body: the common cases inline (the fiber's own stack, an unchecked launch, a read that
// needs no check), the rest in `access_outlined`. The stack pointer stands for the frame: a fiber's
// stack is followed by FIBER_STACK inaccessible bytes, so [sp, sp + FIBER_STACK) is stack.
template <size_t N, Access K, bool NATURAL>
__attribute__((always_inline, no_sanitize("thread"))) static inline void hook(uintptr_t a, uintptr_t pc) {
    if (__builtin_expect(__atomic_load_n(&g_prof_any, __ATOMIC_RELAXED), 0)) prof_access_outlined(a, N, K != ARead, pc);
#if defined(__x86_64__)
    uintptr_t sp;
    __asm__("movq %%rsp, %0" : "=r"(sp));
#else
    const uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
#endif
    if (a - sp < FIBER_STACK) return;
    Checker* const cp = wgemu_tls_chk;  // null unless a checked launch runs on this host thread
    if (!cp) return;
    if (K == ARead && N <= 4 && read_done(a, N, NATURAL, pc, *cp)) return;
    access_outlined(a, N, K, pc, NATURAL);
}
}  // namespace wgemu

#define WGEMU_HOOKS(N)                                                                                      \
    extern "C" WGEMU_HOOK void __tsan_read##N(void* p) {                                                      \
        ::wgemu::hook<N, ::wgemu::ARead, true>((uintptr_t)p, WGEMU_PC);                                     \
    }                                                                                                       \
    extern "C" WGEMU_HOOK void __tsan_write##N(void* p) {                                                     \
        ::wgemu::hook<N, ::wgemu::AWrite, true>((uintptr_t)p, WGEMU_PC);                                    \
    }                                                                                                       \
    extern "C" WGEMU_HOOK void __tsan_unaligned_read##N(void* p) {                                            \
        ::wgemu::hook<N, ::wgemu::ARead, false>((uintptr_t)p, WGEMU_PC);                                    \
    }                                                                                                       \
    extern "C" WGEMU_HOOK void __tsan_unaligned_write##N(void* p) {                                           \
        ::wgemu::hook<N, ::wgemu::AWrite, false>((uintptr_t)p, WGEMU_PC);                                   \
    }
WGEMU_HOOKS(1)
WGEMU_HOOKS(2)
WGEMU_HOOKS(4)
WGEMU_HOOKS(8)
WGEMU_HOOKS(16)
#undef WGEMU_HOOKS
extern "C" WGEMU_HOOK void __tsan_read_range(void* p, unsigned long n) {
    ::wgemu::prof_access((uintptr_t)p, n, false, WGEMU_PC);
    ::wgemu::access_range(p, n, ::wgemu::ARead, WGEMU_PC);
}
extern "C" WGEMU_HOOK void __tsan_write_range(void* p, unsigned long n) {
    ::wgemu::prof_access((uintptr_t)p, n, true, WGEMU_PC);
    ::wgemu::access_range(p, n, ::wgemu::AWrite, WGEMU_PC);
}
extern "C" WGEMU_HOOK void __tsan_init() {}
extern "C" WGEMU_HOOK void __tsan_func_entry(void*) {}
extern "C" WGEMU_HOOK void __tsan_func_exit() {}
extern "C" WGEMU_HOOK void __tsan_vptr_update(void*, void*) {}
extern "C" WGEMU_HOOK void __tsan_vptr_read(void*) {}

// One exported entry point per kernel: wgemu_entry_<name>(dims, args, err, err_len, ctx) -> 0 | 1.
#define WGEMU_ENTRY(name)                                                                          \
    extern "C" __attribute__((visibility("default"))) int wgemu_entry_##name(                    \
        const ::wgemu::LaunchDims* d, void** args, char* err, size_t n,                            \
                                      ::wgemu::LaunchCtx* ctx) {                                   \
        return ::wgemu::launch(d, &name, args, err, n, ctx);                                       \
    }
