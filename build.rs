//! Rebuild when a kernel changes: the sources are embedded with `include_str!`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
    if let Ok(dir) = std::fs::read_dir("kernels") {
        for e in dir.flatten() {
            println!("cargo:rerun-if-changed={}", e.path().display());
        }
    }
}
