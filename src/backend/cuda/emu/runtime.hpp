// runtime.hpp: the CUDA built-ins that kernels/*.cu use, for compiling those files as host C++ and
// running them in the host emulator (src/backend/cuda/emu/mod.rs). Force-included (`-include`) in
// front of each module, so the kernel sources are compiled unchanged.
//
// Execution model. A launch runs its blocks one after another on the calling thread. Each CUDA
// thread of a block is a fiber with its own stack (on x86-64 switched by the few instructions of
// `wgemu_switch` below; elsewhere by ucontext, whose swapcontext costs a system call per switch). The scheduler resumes every runnable
// fiber in thread order until it finishes or reaches a barrier:
//   __syncthreads()      waits until every thread of the block that has not exited is waiting;
//   __shfl_*_sync()      waits until every live lane of its warp is waiting (full-warp shuffles only).
// A fiber runs until it blocks, so a thread reads shared memory written by another thread only
// after a barrier has let that thread run: a missing __syncthreads shows up as wrong results here,
// deterministically. Threads waiting at different barriers (a barrier in divergent code) are
// reported as a deadlock. `__shared__` variables are function statics: one copy per host thread,
// reused by each block in turn (CUDA leaves shared memory uninitialised too).
//
// Not emulated: atomics, dynamic shared memory, partial-warp shuffles, memory-ordering effects
// between blocks (blocks never run concurrently here), and the device's exact math library
// (host libm is used; results agree to an ulp or so, which the tests' tolerances cover).

#pragma once

#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

// ---- vector types and index built-ins ----
struct uint2 {
    unsigned int x, y;
};
struct uint3 {
    unsigned int x, y, z;
};
struct uint4 {
    unsigned int x, y, z, w;
};
struct dim3 {
    unsigned int x, y, z;
};
inline uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static thread_local
#define warpSize 32

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

// What a launch is given by the Rust side (mirrors `LaunchDims` in emu/mod.rs).
struct LaunchDims {
    unsigned int grid[3];
    unsigned int block[3];
};

enum State { Ready, WaitBlock, WaitWarp, Done };

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
inline void ctx_make(Ctx* c, char* stack, size_t size, void (*entry)()) {
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
inline void ctx_make(Ctx* c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}
#endif

struct Fiber {
    Ctx ctx;
    uint3 idx;
    int lane, warp;
    State state;
    alignas(8) unsigned char slot[8];  // a shuffle's outgoing value
};

struct Block {
    std::vector<Fiber> fibers;
    Ctx sched;
    void (*body)(void*);
    void* arg;
};

// Stacks for the fibers of one host thread, reused by every block it runs; each stack has an
// inaccessible guard page below it, so an overflow faults instead of corrupting a neighbour.
struct Stacks {
    char* base = nullptr;
    size_t count = 0, each = 0;
    char* get(size_t i) { return base + i * each + page(); }
    size_t usable() const { return each - page(); }
    static size_t page() { return (size_t)sysconf(_SC_PAGESIZE); }
    ~Stacks() {
        if (base) munmap(base, count * each);
    }
    bool reserve(size_t n) {
        if (n <= count) return true;
        if (base) munmap(base, count * each);
        each = (64u << 10) + page();
        void* p = mmap(nullptr, n * each, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            base = nullptr;
            count = 0;
            return false;
        }
        base = (char*)p;
        count = n;
        for (size_t i = 0; i < n; ++i) mprotect(base + i * each, page(), PROT_NONE);
        return true;
    }
};

inline thread_local Fiber* t_cur = nullptr;
inline thread_local Block* t_block = nullptr;
inline thread_local uint3 t_block_idx;
inline thread_local dim3 t_block_dim, t_grid_dim;
inline thread_local Stacks t_stacks;

// Parks the current fiber in state `s` and returns to the scheduler; returns when released.
inline void park(State s) {
    Fiber* me = t_cur;
    me->state = s;
    ctx_switch(&me->ctx, &t_block->sched);
}

inline void fiber_main() {
    t_block->body(t_block->arg);
    t_cur->state = Done;
    ctx_switch(&t_cur->ctx, &t_block->sched);  // never resumed
}

// The fiber of lane `lane` of the current fiber's warp, or null past the block's last thread.
inline Fiber* lane_fiber(int lane) {
    const size_t i = (size_t)t_cur->warp * 32 + (size_t)lane;
    return i < t_block->fibers.size() ? &t_block->fibers[i] : nullptr;
}

template <class T>
inline T shuffle(T v, int src_lane) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    std::memcpy(t_cur->slot, &v, sizeof(T));
    park(WaitWarp);  // every live lane has published its value
    T r = v;
    if (src_lane >= 0 && src_lane < 32) {
        Fiber* o = lane_fiber(src_lane);
        if (o && o->state != Done) std::memcpy(&r, o->slot, sizeof(T));
    }
    park(WaitWarp);  // every lane has read before any slot is written again
    return r;
}

// Runs every block of a launch. Returns 0, or 1 with a message in `err`.
inline int run(const LaunchDims* d, void (*body)(void*), void* arg, char* err, size_t err_len) {
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
    Block b;
    b.fibers.resize(nthreads);
    b.body = body;
    b.arg = arg;
    t_block = &b;
    t_grid_dim = dim3{d->grid[0], d->grid[1], d->grid[2]};
    t_block_dim = dim3{d->block[0], d->block[1], d->block[2]};
    for (unsigned bz = 0; bz < d->grid[2]; ++bz)
        for (unsigned by = 0; by < d->grid[1]; ++by)
            for (unsigned bx = 0; bx < d->grid[0]; ++bx) {
                t_block_idx = uint3{bx, by, bz};
                for (size_t i = 0; i < nthreads; ++i) {
                    Fiber& f = b.fibers[i];
                    f.idx = uint3{(unsigned)(i % d->block[0]), (unsigned)(i / d->block[0] % d->block[1]),
                                  (unsigned)(i / ((size_t)d->block[0] * d->block[1]))};
                    f.lane = (int)(i & 31);
                    f.warp = (int)(i >> 5);
                    f.state = Ready;
                    ctx_make(&f.ctx, t_stacks.get(i), t_stacks.usable(), fiber_main);
                }
                for (;;) {
                    for (Fiber& f : b.fibers)
                        if (f.state == Ready) {
                            t_cur = &f;
                            ctx_switch(&b.sched, &f.ctx);
                        }
                    // Nothing is runnable: release a warp whose live lanes all wait at a shuffle,
                    // else the whole block if every live thread waits at __syncthreads.
                    bool any_live = false, released = false, all_block = true;
                    for (size_t w = 0; w * 32 < nthreads; ++w) {
                        bool live = false, all_warp = true;
                        for (size_t i = w * 32; i < std::min(nthreads, w * 32 + 32); ++i) {
                            const State s = b.fibers[i].state;
                            if (s == Done) continue;
                            live = true;
                            if (s != WaitWarp) all_warp = false;
                            if (s != WaitBlock) all_block = false;
                        }
                        any_live |= live;
                        if (live && all_warp) {
                            for (size_t i = w * 32; i < std::min(nthreads, w * 32 + 32); ++i)
                                if (b.fibers[i].state == WaitWarp) b.fibers[i].state = Ready;
                            released = true;
                        }
                    }
                    if (!any_live) break;
                    if (released) continue;
                    if (all_block) {
                        for (Fiber& f : b.fibers)
                            if (f.state == WaitBlock) f.state = Ready;
                        continue;
                    }
                    snprintf(err, err_len,
                             "deadlock in block (%u, %u, %u): threads wait at different barriers "
                             "(__syncthreads or a shuffle in divergent code)",
                             bx, by, bz);
                    t_block = nullptr;
                    return 1;
                }
            }
    t_block = nullptr;
    t_cur = nullptr;
    return 0;
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
inline int launch(const LaunchDims* d, void (*kernel)(A...), void** args, char* err, size_t err_len) {
    Call<A...> c{kernel, args};
    return run(d, &Call<A...>::body, &c, err, err_len);
}

}  // namespace wgemu

#define threadIdx (::wgemu::t_cur->idx)
#define blockIdx (::wgemu::t_block_idx)
#define blockDim (::wgemu::t_block_dim)
#define gridDim (::wgemu::t_grid_dim)

inline void __syncthreads() { ::wgemu::park(::wgemu::WaitBlock); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::wgemu::park(::wgemu::WaitWarp); }
template <class T>
inline T __shfl_sync(unsigned, T v, int src, int = 32) {
    return ::wgemu::shuffle(v, src & 31);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int = 32) {
    return ::wgemu::shuffle(v, ::wgemu::t_cur->lane + (int)delta);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int = 32) {
    return ::wgemu::shuffle(v, ::wgemu::t_cur->lane - (int)delta);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int = 32) {
    return ::wgemu::shuffle(v, ::wgemu::t_cur->lane ^ mask);
}

// One exported entry point per kernel: wgemu_entry_<name>(dims, args, err, err_len) -> 0 | 1.
#define WGEMU_ENTRY(name)                                                                               \
    extern "C" int wgemu_entry_##name(const ::wgemu::LaunchDims* d, void** args, char* err, size_t n) { \
        return ::wgemu::launch(d, &name, args, err, n);                                                 \
    }
