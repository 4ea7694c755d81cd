//! Decisions the CUDA host code makes from what the machine reports, as pure functions tested
//! with those reports as inputs (no GPU needed):
//!
//! - Which NVRTC library is opened for which driver (docs/CUDA.md, "Finding NVRTC"): an NVRTC of
//!   a newer CUDA major version than the driver supports makes code the driver refuses at module
//!   load, so under a driver only a fitting library is taken (`nvrtc::plan`). The last of these
//!   tests run the whole search against the NVRTC installed here (the CI wheel's
//!   `libnvrtc.so.13`) with a pretended driver version.
//! - Which precision matrix products run at on a GPU of a given compute capability
//!   (`precision::resolve`): TF32/BF16 need sm_80. tests/gpu_cli.rs checks the command line on
//!   the emulator standing for an sm_75 device.

use wgan::backend::cuda::nvrtc::{self, choose_for, fits, name_major, plan, NVRTC_CANDIDATES};
use wgan::backend::precision::{default_for, resolve, sm_of, supported};
use wgan::backend::Precision;

#[test]
fn library_names_give_their_major_version() {
    assert_eq!(name_major("libnvrtc.so.13"), Some(13));
    assert_eq!(name_major("libnvrtc.so.12"), Some(12));
    assert_eq!(name_major("libnvrtc.so.11.2"), Some(11));
    assert_eq!(name_major("/usr/local/cuda-12.4/lib64/libnvrtc.so.12"), Some(12));
    assert_eq!(name_major("libnvrtc.so"), None);
    assert_eq!(name_major("/opt/nvrtc/libnvrtc.so"), None);
}

#[test]
fn a_driver_supports_nvrtc_up_to_its_own_major_version() {
    assert!(fits(12, 12040) && fits(11, 12040) && fits(12, 13000) && fits(13, 13000) && fits(13, 13020));
    assert!(!fits(13, 12090), "NVRTC 13 under a CUDA 12.9 driver (before 580)");
    assert!(!fits(12, 11080));
    assert_eq!(nvrtc::cuda_version_text(12040), "12.4");
    assert_eq!(nvrtc::cuda_version_text(13000), "13.0");
}

#[test]
fn without_a_driver_every_candidate_is_tried_newest_first() {
    assert_eq!(plan(NVRTC_CANDIDATES, None).unwrap(), NVRTC_CANDIDATES);
}

#[test]
fn a_cuda_12_driver_never_gets_nvrtc_13() {
    let p = plan(NVRTC_CANDIDATES, Some(12040)).unwrap();
    assert_eq!(p, ["libnvrtc.so.12", "libnvrtc.so", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0"]);
    // The unversioned name stays: its version is checked once it is opened.
    let p = plan(NVRTC_CANDIDATES, Some(11080)).unwrap();
    assert_eq!(p, ["libnvrtc.so", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0"]);
}

#[test]
fn a_cuda_13_driver_tries_every_candidate() {
    assert_eq!(plan(NVRTC_CANDIDATES, Some(13000)).unwrap(), NVRTC_CANDIDATES);
    assert_eq!(plan(NVRTC_CANDIDATES, Some(13020)).unwrap(), NVRTC_CANDIDATES);
}

#[test]
fn no_fitting_candidate_says_what_to_install() {
    let e = plan(&["libnvrtc.so.13"], Some(12040)).unwrap_err();
    assert!(e.contains("the driver supports CUDA 12.4; install NVRTC 12 (pip install nvidia-cuda-nvrtc-cu12)"), "{e}");
    assert!(e.contains("upgrade the driver to 580+"), "{e}");
    let e = plan(&["libnvrtc.so.13", "libnvrtc.so.12"], Some(11040)).unwrap_err();
    assert!(e.contains("CUDA 11.4; install NVRTC 11 (pip install nvidia-cuda-nvrtc-cu11)"), "{e}");
}

/// The NVRTC found here, if any: (library, version).
fn installed() -> Option<(String, (i32, i32))> {
    match choose_for(None, NVRTC_CANDIDATES, None) {
        Ok(v) => Some(v),
        Err(e) if std::env::var("WGAN_REQUIRE_NVRTC").as_deref() == Ok("1") => {
            panic!("WGAN_REQUIRE_NVRTC=1 but NVRTC cannot be opened: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no NVRTC here ({e})");
            None
        }
    }
}

#[test]
fn the_search_skips_an_nvrtc_newer_than_the_driver() {
    let Some((lib, (major, _))) = installed() else { return };
    // A driver of the same major takes it.
    let (got, (m, _)) = choose_for(None, NVRTC_CANDIDATES, Some(major * 1000)).unwrap();
    assert_eq!((got.as_str(), m), (lib.as_str(), major));
    // A driver one major older must not: another, older NVRTC or an error saying what to install.
    let older = (major - 1) * 1000 + 40;
    match choose_for(None, NVRTC_CANDIDATES, Some(older)) {
        Ok((other, (m, _))) => assert!(m < major, "{other} is NVRTC {m} under a CUDA {} driver", major - 1),
        Err(e) => {
            let e = e.to_string();
            let want = format!("the driver supports CUDA {}.4; install NVRTC {}", major - 1, major - 1);
            assert!(e.contains(&want), "{e}");
        }
    }
}

#[test]
fn an_explicit_library_is_used_whatever_the_driver() {
    let Some((lib, v)) = installed() else { return };
    let pretend_old = (v.0 - 1) * 1000;
    assert_eq!(choose_for(Some(&lib), NVRTC_CANDIDATES, Some(pretend_old)).unwrap(), (lib.clone(), v));
    // A missing explicit library falls back to the search.
    assert_eq!(choose_for(Some("libnvrtc-missing.so.99"), NVRTC_CANDIDATES, Some(v.0 * 1000)).unwrap(), (lib, v));
}

/// A library whose name carries no version (`libnvrtc.so`, as a toolkit's lib64 has) is opened and
/// its own version checked against the driver.
#[test]
fn an_unversioned_library_is_checked_once_opened() {
    let Some((lib, (major, minor))) = installed() else { return };
    // The loader resolves the bare name; a link named libnvrtc.so to that file stands for a
    // toolkit's unversioned library.
    let Some(path) = loaded_path(&lib) else { return eprintln!("skipped: cannot locate {lib}") };
    let dir = std::env::temp_dir().join(format!("wgan-nvrtc-choice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("libnvrtc.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let link = link.to_str().unwrap();
    assert_eq!(choose_for(None, &[link], Some(major * 1000)).unwrap(), (link.to_string(), (major, minor)));
    let e = choose_for(None, &[link], Some((major - 1) * 1000 + 20)).unwrap_err().to_string();
    assert!(e.contains(&format!("install NVRTC {}", major - 1)), "{e}");
    assert!(e.contains(&format!("{link} is NVRTC {major}.{minor}")), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the loader finds `name`: itself when it is a path, else the first LD_LIBRARY_PATH entry
/// that has it.
fn loaded_path(name: &str) -> Option<std::path::PathBuf> {
    if name.contains('/') {
        return Some(name.into());
    }
    let dirs = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    dirs.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.exists())
}

#[test]
fn architecture_names_give_the_compute_capability() {
    assert_eq!(sm_of("sm_75"), Some(75));
    assert_eq!(sm_of("sm_90a"), Some(90));
    assert_eq!(sm_of("sm_120"), Some(120));
    assert_eq!(sm_of("80"), Some(80));
    for bad in ["", "sm_", "sm_7", "host", "sm_8x", "7.5"] {
        assert_eq!(sm_of(bad), None, "{bad:?}");
    }
}

#[test]
fn tensor_core_precisions_need_sm_80() {
    for p in [Precision::Tf32, Precision::Bf16] {
        assert!(!supported(p, Some(75)) && !supported(p, Some(70)) && !supported(p, Some(61)));
        assert!(supported(p, Some(80)) && supported(p, Some(86)) && supported(p, Some(90)) && supported(p, Some(120)));
        assert!(supported(p, None), "the emulator runs every precision");
    }
    assert!(supported(Precision::F32, Some(52)));
    assert_eq!(default_for(Some(75)), Precision::F32);
    assert_eq!(default_for(Some(80)), Precision::Tf32);
    assert_eq!(default_for(None), Precision::Tf32);
}

#[test]
fn the_default_falls_back_to_f32_with_a_notice_before_sm_80() {
    let (p, notice) = resolve(Precision::Tf32, false, Some(75)).unwrap();
    assert_eq!(p, Precision::F32);
    let n = notice.expect("a notice");
    assert!(n.contains("sm_75") && n.contains("f32") && !n.contains('\n'), "{n}");
    // A resumed run's recorded bf16 falls back the same way.
    assert_eq!(resolve(Precision::Bf16, false, Some(70)).unwrap().0, Precision::F32);
    // Where it is supported, the request stands and nothing is said.
    for sm in [Some(80), Some(90), None] {
        for p in Precision::ALL {
            assert_eq!(resolve(p, false, sm).unwrap(), (p, None));
            assert_eq!(resolve(p, true, sm).unwrap(), (p, None));
        }
    }
    assert_eq!(resolve(Precision::F32, true, Some(61)).unwrap(), (Precision::F32, None));
}

#[test]
fn an_explicit_tensor_core_precision_before_sm_80_is_an_error() {
    for (p, name) in [(Precision::Tf32, "tf32"), (Precision::Bf16, "bf16")] {
        let e = resolve(p, true, Some(75)).unwrap_err();
        assert!(e.starts_with(&format!("--precision {name}:")), "{e}");
        assert!(e.contains("sm_75") && e.contains("sm_80") && e.contains("--precision f32"), "{e}");
    }
}
