//! Data-parallel training: the ranks of a run, their collectives, and what each rank computes.
//!
//! `mpirun -np N wgan train …` (or `srun`) starts N processes, the ranks. Each trains on a
//! contiguous slice of the global batch (`--batch-size` stays the global batch), and the ranks
//! agree after every backward pass, so the N-rank run computes the single-process run:
//!
//! - noise and ε are drawn by global sample index (`Shard::rows`): Philox is counter-based, so
//!   each rank takes its rows of the numbers a single process draws;
//! - real batches are the single process's, sliced (`Shard::slice_host`);
//! - gradients are averaged over ranks before each optimizer step (`Shard::reduce_grads`), so
//!   every rank takes the same step and the optimizer state and the clamp stay identical;
//! - batch norm in training mode takes its statistics over all ranks' rows, running statistics
//!   included (`syncbn`, through `Tape::sync_normalize`);
//! - the gradient penalty is per sample and stays on the rank that holds the sample.
//!
//! The collectives (`Collective`) are MPI's (`--features mpi`, `mpi.rs`); `Comm` wraps one with
//! the deterministic rank-order sum and the time spent communicating. Without MPI, or outside
//! `mpirun`, there is one rank and nothing here runs.

pub mod comm;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod overlap;
pub mod shard;
pub mod syncbn;

pub use comm::{Collective, Comm};
pub use shard::Shard;

/// Whether this binary was built with MPI (`--features mpi`).
pub const HAS_MPI: bool = cfg!(feature = "mpi");
/// Whether this binary was built with NCCL (`--features nccl`).
pub const HAS_NCCL: bool = cfg!(feature = "nccl");

/// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI/PMIx) as
/// one of several ranks: Some(number of ranks), or Some(0) when the launcher gave a rank but not the
/// number (PMIx alone; MPI will tell). Read from the launchers' environment, before MPI is
/// initialised.
pub fn launched_by_mpi() -> Option<usize> {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    // Not SLURM_NTASKS: a batch script run inside an allocation of several tasks has it without
    // being one of them (srun sets PMI_SIZE, or PMIX_RANK and SLURM_STEP_NUM_TASKS, for its ranks).
    let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"].iter().find_map(|k| num(k));
    match size {
        Some(n) if n > 1 => Some(n),
        Some(_) => None,
        None if num("PMIX_RANK").is_some() => Some(num("SLURM_STEP_NUM_TASKS").filter(|&n| n > 1).unwrap_or(0)),
        None => None,
    }
}

/// A line for `wgan info`.
pub fn info_line() -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    format!(
        "distributed: MPI {} (--features mpi), NCCL {} (--features nccl){}",
        yes(HAS_MPI),
        yes(HAS_NCCL),
        match launched_by_mpi() {
            Some(0) => "; launched by an MPI launcher".to_string(),
            Some(n) => format!("; launched as one of {n} ranks"),
            None => String::new(),
        }
    )
}

/// The world of this process, once `init` made one of several ranks.
static WORLD: std::sync::Mutex<Option<std::sync::Arc<Comm>>> = std::sync::Mutex::new(None);

/// Joins the world of ranks when an MPI launcher started this process as one of several: returns
/// the communicator (kept for `world`, `fail` and `finalize`), or None when this process runs
/// alone. A binary built without MPI that an MPI launcher started as one of several ranks fails
/// with what to do.
pub fn init(deterministic: bool, overlap: bool) -> crate::Result<Option<std::sync::Arc<Comm>>> {
    let Some(n) = launched_by_mpi() else { return Ok(None) };
    #[cfg(feature = "mpi")]
    {
        let _ = n;
        let mut comm = Comm::new(Box::new(mpi::Mpi::init()?), deterministic);
        comm.overlap = overlap;
        let comm = std::sync::Arc::new(comm);
        if comm.size() == 1 {
            *WORLD.lock().expect("world lock") = Some(comm);
            finalize();
            return Ok(None);
        }
        *WORLD.lock().expect("world lock") = Some(comm.clone());
        Ok(Some(comm))
    }
    #[cfg(not(feature = "mpi"))]
    {
        let _ = (deterministic, overlap);
        if n == 0 {
            return Ok(None); // a rank of an unknown number: without MPI, this process runs alone
        }
        crate::bail!(
            "this wgan was started by an MPI launcher as one of {n} ranks, but it was built without MPI: \
             build it with `cargo build --release --features mpi` (scripts/install-mpi installs OpenMPI and \
             libclang), or run it without mpirun"
        )
    }
}

/// The world this process belongs to, if it is one rank of several.
pub fn world() -> Option<std::sync::Arc<Comm>> {
    WORLD.lock().ok().and_then(|w| w.clone())
}

/// Leaves the world at the end of a run (MPI_Finalize, once every rank gets here).
pub fn finalize() {
    let w = WORLD.lock().ok().and_then(|mut w| w.take());
    if let Some(c) = w {
        c.barrier();
        drop(c);
    }
}

/// This process's rank as the launcher's environment gives it (before MPI is initialised).
pub fn env_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"]
        .iter()
        .find_map(|k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()))
}

/// Ends the run after an error on this rank: one message, and every rank stopped. Rank 0 reports
/// at once; another rank waits 2 s first, so that an error every rank meets (a bad flag, a
/// missing file) is reported once, by rank 0, whose exit ends the others. The world is aborted
/// (MPI_Abort) so that ranks waiting in a collective stop too.
pub fn fail(message: &str) -> ! {
    let rank = world().map(|c| c.rank()).or_else(|| launched_by_mpi().and(env_rank()));
    match rank {
        None => {
            eprintln!("error: {message}");
            std::process::exit(1)
        }
        Some(r) => {
            if r != 0 {
                std::thread::sleep(std::time::Duration::from_millis(2000));
            }
            let n = world().map(|c| c.size()).or_else(launched_by_mpi).filter(|&n| n > 0);
            let of = n.map(|n| format!(" of {n}")).unwrap_or_default();
            eprintln!("error: rank {r}{of}: {message}");
            match world() {
                Some(c) => c.abort(1),
                None => std::process::exit(1),
            }
        }
    }
}
