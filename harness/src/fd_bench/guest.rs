//! Where the benchmark ran: kernel release, CPUs, and KVM or TCG (from CPUID's hypervisor leaf
//! inside the guest: KVM signs it "KVMKVMKVM", QEMU's TCG "TCGTCGTCGTCG").

use serde::Serialize;

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub kernel_release: String,
    /// CRIB_FLAVOR the VM runner set (stock or patched), if any
    pub flavor: Option<String>,
    /// "kvm", "tcg", "bare metal" or `"unknown hypervisor <signature>"`
    pub accel: String,
    /// The CPUID hypervisor signature, when there is one
    pub hypervisor_signature: Option<String>,
    pub cpus: usize,
    pub cpu_model: Option<String>,
    /// How this harness was built ([`HARNESS_BUILD`])
    pub harness_build: String,
}

/// Cargo profile and opt-level of this build: user space's share of every dump depends on it
/// (the dev profile is `opt-level = 1`; benchmarks are meant to run a `--release` build).
pub const HARNESS_BUILD: &str = env!("CRIB_HARNESS_BUILD");

impl Machine {
    pub fn probe() -> Machine {
        let kernel_release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let sig = hypervisor_signature();
        let accel = match sig.as_deref() {
            None => "bare metal".to_string(),
            Some(s) if s.starts_with("KVMKVMKVM") => "kvm".to_string(),
            Some(s) if s.starts_with("TCGTCGTCG") => "tcg".to_string(),
            Some(s) => format!("unknown hypervisor {s:?}"),
        };
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        });
        Machine {
            kernel_release,
            flavor: std::env::var("CRIB_FLAVOR").ok().filter(|f| !f.is_empty()),
            accel,
            hypervisor_signature: sig,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            harness_build: HARNESS_BUILD.to_string(),
        }
    }
}

/// CPUID leaf 0x40000000's signature when leaf 1 says a hypervisor is present.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // __cpuid is safe to call since Rust 1.87
fn hypervisor_signature() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86-64 CPU; leaves past the maximum return zeros or the
    // highest basic leaf, which the hypervisor bit check below tolerates.
    let leaf1 = unsafe { __cpuid(1) };
    if leaf1.ecx & (1 << 31) == 0 {
        return None;
    }
    // SAFETY: as above; with the hypervisor bit set, 0x40000000 is the hypervisor's leaf.
    let h = unsafe { __cpuid(0x4000_0000) };
    let mut b = Vec::with_capacity(12);
    for r in [h.ebx, h.ecx, h.edx] {
        b.extend_from_slice(&r.to_le_bytes());
    }
    Some(
        String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .to_string(),
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn hypervisor_signature() -> Option<String> {
    None
}
