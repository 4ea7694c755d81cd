//! The `wgan` command: `wgan train`, `wgan sample`, `wgan info`. Every failure is one line on
//! stderr naming the input at fault, and a non-zero exit.

mod cli;

fn main() {
    match cli::run() {
        // Under mpirun: one message, and every rank stopped (src/dist/mod.rs).
        Err(e) => wgan::dist::fail(&e.to_string()),
        Ok(()) => wgan::dist::finalize(),
    }
}
