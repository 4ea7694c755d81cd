//! File writing that never leaves a half-written file behind: write to a temporary name in the same
//! folder, flush to disk, then rename over the target (atomic on POSIX file systems).

use crate::error::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling used while `path` is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Calls `fill` on a temporary file, then renames it to `path`; on any error the temporary file is
/// removed and `path` is left as it was.
pub fn atomic_write_with(path: &Path, fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.context(|| format!("cannot write {}", path.display()))
}

/// Creates `dir` (and its parents) and checks that a file can be written in it.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).context(|| format!("cannot create output folder {}", dir.display()))?;
    let probe = dir.join(format!(".wgan-write-test{}", std::process::id()));
    fs::write(&probe, b"ok").context(|| format!("output folder {} is not writable", dir.display()))?;
    let _ = fs::remove_file(probe);
    Ok(())
}
