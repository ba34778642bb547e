//! CRIB test harness: locate the kernels `scripts/build` made, boot them under QEMU with
//! vmtest, load and run BPF programs, decode their records and compare them with ground truth.

pub mod bench;
pub mod cases;
pub mod cli;
pub mod criu_dump;
pub mod criu_parity;
pub mod dump;
pub mod errno;
pub mod fd_bench;
pub mod file_read;
pub mod globals;
pub mod hello;
pub mod kernel;
pub mod kernel_dir;
pub mod loader;
pub mod per_run;
pub mod records;
pub mod settings;
pub mod sock_bench;
pub mod sock_dump;
pub mod sock_truth;
pub mod target;
pub mod test_support;
pub mod truth;
pub mod vm;

/// Directory holding the BPF objects build.rs compiled from `selftests/progs/`.
pub const BPF_DIR: &str = env!("CRIB_BPF_DIR");
