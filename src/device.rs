//! Choosing the device: `--device auto|cpu|cuda|cuda:N|emulated`. `auto` takes the first CUDA GPU
//! when one works and otherwise falls back to the CPU with a one-line notice; `cuda` fails with the
//! reason. `emulated` is the CUDA backend with its kernels on the host emulator (slow: for checking
//! the CUDA code path end to end without a GPU).

use crate::backend::cpu::Cpu;
use crate::backend::cuda::Cuda;
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
    /// The CUDA backend on the host emulator ([`Cuda::emulated`]).
    Emulated,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            "emulated" => Ok(DeviceChoice::Emulated),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("expected auto, cpu, cuda, cuda:N or emulated, got {s:?}")),
            },
        }
    }
}

/// An opened device.
pub enum Device {
    Cpu(Cpu<f32>),
    Cuda(Cuda),
}

impl Device {
    pub fn name(&self) -> String {
        use crate::backend::Backend;
        match self {
            Device::Cpu(b) => b.name(),
            Device::Cuda(b) => b.name(),
        }
    }
}

/// Opens the chosen device. `notice` receives the one-line fallback message of `auto`.
pub fn open(choice: DeviceChoice, notice: impl FnOnce(&str)) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu(Cpu::new())),
        DeviceChoice::Cuda(n) => {
            Cuda::new(n).map(Device::Cuda).map_err(|e| crate::Error(format!("--device cuda:{n}: {e}")))
        }
        DeviceChoice::Emulated => {
            Cuda::emulated().map(Device::Cuda).map_err(|e| crate::Error(format!("--device emulated: {e}")))
        }
        DeviceChoice::Auto => match Cuda::new(0) {
            Ok(c) => Ok(Device::Cuda(c)),
            Err(e) => {
                notice(&format!("note: no usable CUDA GPU ({e}); training on the CPU"));
                Ok(Device::Cpu(Cpu::new()))
            }
        },
    }
}
