// SPDX-License-Identifier: GPL-2.0
/*
 * The smallest cases for a CRIB kfunc (which program types may call one),
 * and for the runner itself (ordered __msg, {{regex}}, __not_msg,
 * __log_level, __retval, unprivileged mode).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_kfuncs.h"
#include "crib_test.h"

char _license[] SEC("license") = "GPL";

/*
 * A CRIB kfunc from a SYSCALL program, with a result fixed by the kfunc's
 * contract: the getter reports -ENOENT before next() gave an element.
 */
SEC("syscall")
__description("a CRIB kfunc from a SYSCALL program: get_fd() before next() is -ENOENT")
__success __retval(-2)
int get_fd_before_next(void *ctx)
{
	struct bpf_iter_task_file it;
	int fd;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	fd = bpf_iter_task_file_get_fd(&it);
	bpf_iter_task_file_destroy(&it);
	return fd;
}

/* The kfunc set is registered for BPF_PROG_TYPE_SYSCALL only. */
SEC("socket")
__description("bpf_iter_task_file_get_fd() is not callable from a socket filter")
__failure __msg("calling kernel function bpf_iter_task_file_get_fd is not allowed")
int get_fd_from_socket(struct __sk_buff *skb)
{
	struct bpf_iter_task_file it;

	/* refused at the call, before the iterator argument is looked at */
	return bpf_iter_task_file_get_fd(&it);
}

/* ... nor from tracing programs. */
SEC("kprobe/do_sys_openat2")
__description("bpf_iter_task_file_get_fd() is not callable from a kprobe")
__failure __msg("calling kernel function bpf_iter_task_file_get_fd is not allowed")
int get_fd_from_kprobe(void *ctx)
{
	struct bpf_iter_task_file it;

	return bpf_iter_task_file_get_fd(&it);
}

/*
 * Level 2 adds the liveness dump and the state after every instruction: the
 * helper's result is an unknown scalar, the mask bounds it to 16 bits.
 */
SEC("syscall")
__description("level-2 log shows the helper call and the bounded result")
__success __log_level(2)
__msg("Live regs before insn:")
__msg("0: (85) call bpf_get_prandom_u32#7{{ +}}; R0{{(_w)?}}=scalar()")
__msg("1: (54) w0 &= 65535{{ +}}; R0{{(_w)?}}=scalar(smin=smin32=0,smax=umax=smax32=umax32=0xffff,var_off=(0x0; 0xffff))")
__msg("processed 3 insns")
__retval(POINTER_VALUE)
int prandom_masked(void *ctx)
{
	return bpf_get_prandom_u32() & 0xffff;
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
