# Source this (bash) to make NVRTC available to `cargo test --test nvrtc_compile` without a CUDA
# toolkit: pip-installs the `nvidia-cuda-nvrtc` wheel if it is missing, then puts its lib directory
# (nvidia/cu13/lib for the CUDA 13 wheel, nvidia/cuda_nvrtc/lib for CUDA 12 wheels) on
# LD_LIBRARY_PATH and exports WGAN_REQUIRE_NVRTC=1 so the test fails rather than skips.
#   source .ci/nvrtc-env.sh && cargo test --test nvrtc_compile

_wgan_py="${PYTHON:-python3}"
_wgan_nvrtc_dir() {
    "$_wgan_py" - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = []
try:
    roots += site.getsitepackages()
except Exception:
    pass
try:
    roots.append(site.getusersitepackages())
except Exception:
    pass
roots += [p for p in sys.path if p.endswith("site-packages")]
for root in roots:
    for sub in ("nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib", "nvidia/cu12/lib"):
        d = os.path.join(root, sub)
        if glob.glob(os.path.join(d, "libnvrtc.so*")):
            print(d)
            sys.exit(0)
sys.exit(1)
PY
}

_wgan_dir="$(_wgan_nvrtc_dir)"
if [ -z "$_wgan_dir" ]; then
    echo "nvrtc-env: installing nvidia-cuda-nvrtc with pip" >&2
    "$_wgan_py" -m pip install --quiet nvidia-cuda-nvrtc >&2 || echo "nvrtc-env: pip install failed" >&2
    _wgan_dir="$(_wgan_nvrtc_dir)"
fi
if [ -n "$_wgan_dir" ]; then
    export LD_LIBRARY_PATH="$_wgan_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export WGAN_REQUIRE_NVRTC=1
    echo "nvrtc-env: NVRTC from $_wgan_dir" >&2
else
    echo "nvrtc-env: no NVRTC found; tests/nvrtc_compile.rs will skip" >&2
fi
unset _wgan_dir _wgan_py
unset -f _wgan_nvrtc_dir
