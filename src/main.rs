//! The `wgan` command: `wgan train`, `wgan sample`, `wgan info`. Every failure is one line on
//! stderr naming the input at fault, and a non-zero exit.

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
