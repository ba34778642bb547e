// SPDX-License-Identifier: GPL-2.0
/*
 * For tests/stale_kernel.rs only: bpf_crib_stale_probe() exists in no
 * kernel or module; that test adds it to a copy of kfuncs/ and checks that
 * the module booted in the guest is the edited one. Returns what the kfunc
 * returns, or -ENOENT when the loaded kfunc set has no such kfunc.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

extern __u32 bpf_crib_stale_probe(void) __ksym __weak;

SEC("syscall")
int crib_stale_probe(void *ctx)
{
	if (!bpf_ksym_exists(bpf_crib_stale_probe))
		return -2; /* -ENOENT */
	return bpf_crib_stale_probe();
}
