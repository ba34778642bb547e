// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases for the one kfunc the module has today,
 * bpf_crib_abi_version(), and for the runner itself (ordered __msg,
 * {{regex}}, __not_msg, __log_level, unprivileged mode).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_kfuncs.h"
#include "crib_test.h"

char _license[] SEC("license") = "GPL";

/*
 * CRIB_ABI_VERSION of kfuncs/crib.h: major in bits 31-16. Only the major is
 * pinned here (minor bumps add kfuncs); tests/hello.rs checks the exact value
 * against the header.
 */
SEC("syscall")
__description("bpf_crib_abi_version() from a SYSCALL program: ABI major 1")
__success __retval(1)
int abi_version_retval(void *ctx)
{
	return bpf_crib_abi_version() >> 16;
}

/* The kfunc set is registered for BPF_PROG_TYPE_SYSCALL only. */
SEC("socket")
__description("bpf_crib_abi_version() is not callable from a socket filter")
__failure __msg("calling kernel function bpf_crib_abi_version is not allowed")
int abi_version_from_socket(struct __sk_buff *skb)
{
	return bpf_crib_abi_version();
}

/* ... nor from tracing programs. */
SEC("kprobe/do_sys_openat2")
__description("bpf_crib_abi_version() is not callable from a kprobe")
__failure __msg("calling kernel function bpf_crib_abi_version is not allowed")
int abi_version_from_kprobe(void *ctx)
{
	return bpf_crib_abi_version();
}

/*
 * Level 2 adds the liveness dump and the state after every instruction: the
 * kfunc's u32 result is an unknown scalar, the mask bounds it to 16 bits.
 */
SEC("syscall")
__description("level-2 log shows the kfunc call and the bounded result")
__success __log_level(2)
__msg("Live regs before insn:")
__msg("0: (85) call bpf_crib_abi_version#{{[0-9]+}}{{ +}}; R0{{(_w)?}}=scalar()")
__msg("1: (54) w0 &= 65535{{ +}}; R0{{(_w)?}}=scalar(smin=smin32=0,smax=umax=smax32=umax32=0xffff,var_off=(0x0; 0xffff))")
__msg("processed 3 insns")
__retval(POINTER_VALUE)
int abi_version_minor(void *ctx)
{
	return bpf_crib_abi_version() & 0xffff;
}

/*
 * Ordered messages on a generic rejection: the log walks the instructions
 * in order and ends with the reason. __not_msg checks that the verifier did
 * not complain about r1 before the faulting load.
 */
SEC("syscall")
__description("dereferencing a scalar is rejected, messages in order")
__failure
__msg("0: (b7) r0 = 0")
__msg("1: (b7) r1 = 42")
__not_msg("invalid mem access")
__msg("2: (79) r0 = *(u64 *)(r1 +0)")
__msg("R1 invalid mem access 'scalar'")
__naked int scalar_deref(void)
{
	asm volatile ("					\
	r0 = 0;						\
	r1 = 42;					\
	r0 = *(u64 *)(r1 + 0);				\
	exit;						\
"	::: __clobber_all);
}

/*
 * Reading a stack slot that was never written: root may (CAP_PERFMON allows
 * uninitialized stack reads), an unprivileged user may not.
 */
SEC("socket")
__description("read of a never-written stack slot: allowed for root, rejected unprivileged")
__success __retval(0)
__failure_unpriv __msg_unpriv("invalid read from stack R10 off=-8 size=8")
__naked int uninit_stack_read(void)
{
	asm volatile ("					\
	r0 = *(u64 *)(r10 - 8);				\
	r0 = 0;						\
	exit;						\
"	::: __clobber_all);
}
