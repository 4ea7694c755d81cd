//! Runs a kernel given as source text on the emulator, outside any backend: the sanitizer's
//! self-test (tests/emu_sanitizer.rs) launches small broken kernels and their fixed twins this way,
//! the memory profiler's test (tests/emu_profile.rs) kernels whose counts are known by hand.

use std::ffi::c_void;
use std::sync::Arc;

use super::{EmuOptions, Emulator, HostStore, Profile};
use crate::Result;

/// An emulator for kernels given as source.
pub struct SourceRunner {
    emu: Emulator,
}

/// A device buffer of f32.
pub struct DevBuf(Arc<HostStore>);

/// A kernel argument.
pub enum Arg<'a> {
    Buf(&'a DevBuf),
    I64(i64),
    I32(i32),
    U32(u32),
    F32(f32),
    /// A by-value struct argument: its bytes, as 8-byte words.
    Words(Vec<u64>),
}

impl SourceRunner {
    pub fn new(opts: EmuOptions) -> Result<SourceRunner> {
        Ok(SourceRunner { emu: Emulator::with_options(opts)? })
    }

    /// A buffer holding `data` (written by the host: initialised).
    pub fn upload(&self, data: &[f32]) -> DevBuf {
        let b = self.emu.alloc(data.len(), 0.0);
        // SAFETY: the buffer holds data.len() floats.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.addr() as *mut f32, data.len()) };
        self.emu.note_upload(b.addr(), data.len());
        DevBuf(b)
    }

    /// A fresh buffer of `n` floats, never written (NaN poison; uninitialised for the init check).
    pub fn alloc(&self, n: usize) -> DevBuf {
        DevBuf(self.emu.alloc(n, f32::NAN))
    }

    /// What the memory profiler counted since the runner was made or last reset (empty unless
    /// its options profile: [`EmuOptions::profile`]).
    pub fn profile(&self) -> Profile {
        self.emu.profile()
    }

    /// Forgets what the profiler has counted.
    pub fn reset_profile(&self) {
        self.emu.reset_profile();
    }

    /// The buffer's contents.
    pub fn read(&self, b: &DevBuf) -> Vec<f32> {
        // SAFETY: reads the buffer's own elements.
        unsafe { std::slice::from_raw_parts(b.0.addr() as *const f32, b.0.len()) }.to_vec()
    }

    /// Compiles `source` (as module `file`, built on first use; `file` names the cache entry, so
    /// give each distinct source its own name) and launches `kernel` over `grid` × `block`.
    pub fn launch(
        &self,
        file: &'static str,
        source: &str,
        kernel: &str,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &[Arg],
    ) -> Result<()> {
        let lib = self.emu.lib(file, source)?;
        let mut vals: Vec<Vec<u64>> = args
            .iter()
            .map(|a| match a {
                Arg::Buf(b) => vec![b.0.addr()],
                Arg::I64(v) => vec![*v as u64],
                Arg::I32(v) => vec![*v as u32 as u64],
                Arg::U32(v) => vec![*v as u64],
                Arg::F32(v) => vec![v.to_bits() as u64],
                Arg::Words(w) => w.clone(),
            })
            .collect();
        let mut ptrs: Vec<*mut c_void> = vals.iter_mut().map(|v| v.as_mut_ptr() as *mut c_void).collect();
        self.emu.run(&lib, file, kernel, grid, block, &mut ptrs)
    }
}
