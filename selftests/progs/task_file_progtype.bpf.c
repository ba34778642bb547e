// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: who may call the CRIB kfuncs.
 *
 * - They are registered for BPF_PROG_TYPE_SYSCALL only, so a tracing
 *   (tp_btf, fentry), kprobe or socket filter program that calls one is
 *   rejected at the call with "calling kernel function <name> is not
 *   allowed" (check_kfunc_call(), kernel/bpf/verifier.c). The check comes
 *   before any argument check, so the first CRIB call in program order is
 *   the one named.
 * - Capabilities, in the runner's unprivileged mode (CAP_SYS_ADMIN,
 *   CAP_NET_ADMIN, CAP_PERFMON and CAP_BPF dropped for the load, then those
 *   of __caps_unpriv() given back; the test run has them all again, as in
 *   test_loader): a SYSCALL program needs CAP_BPF to load at all
 *   (task_file_harness.bpf.c of the CRIB repository checks that), and
 *   reading the item (a kernel struct through a BTF pointer) needs
 *   CAP_PERFMON too. These cases hold on both kernels: the runner resolves
 *   the kfuncs (bpf_object__prepare()) before it drops the capabilities, so
 *   on the stock kernel, where they live in the module's BTF, libbpf still
 *   finds them (listing module BTF needs CAP_SYS_ADMIN). The run-time
 *   permission check of _new() (-EACCES for a task the caller may not
 *   ptrace-read) cannot be reached from here, since the run keeps
 *   CAP_SYS_PTRACE: the dump tests cover it.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/* loop counters: globals, see task_file_success.bpf.c */
int tf_n, tf_bad;

/* ---- program types ------------------------------------------------------ */

SEC("tp_btf/sys_enter")
__description("tracing (tp_btf) program calling bpf_iter_task_file_new()")
__failure __msg("calling kernel function bpf_iter_task_file_new is not allowed")
int tf_tp_btf_iter(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf())
		tf_n++;
	return tf_n;
}

SEC("fentry/vfs_read")
__description("tracing (fentry) program calling bpf_fget_task()")
__failure __msg("calling kernel function bpf_fget_task is not allowed")
int tf_fentry_fget_task(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

SEC("fentry/vfs_read")
__description("tracing (fentry) program calling the get_fd() getter")
__failure __msg(TF_MSG_GET_FD_NOT_ALLOWED)
int tf_fentry_get_fd(void *ctx)
{
	struct bpf_iter_task_file it;

	/* rejected at the call, before the iterator argument is looked at */
	return bpf_iter_task_file_get_fd(&it);
}

SEC("kprobe/vfs_read")
__description("kprobe program calling bpf_iter_task_file_new()")
__failure __msg("calling kernel function bpf_iter_task_file_new is not allowed")
int tf_kprobe_iter(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf())
		tf_n++;
	return tf_n;
}

SEC("kprobe/vfs_read")
__description("kprobe program calling bpf_fget_task()")
__failure __msg("calling kernel function bpf_fget_task is not allowed")
int tf_kprobe_fget_task(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

SEC("socket")
__description("socket filter program calling bpf_iter_task_file_new()")
__failure __msg("calling kernel function bpf_iter_task_file_new is not allowed")
int tf_socket_iter(void *ctx)
{
	struct bpf_iter_task_file it;

	/* no task in a socket filter; the call is refused first */
	bpf_iter_task_file_new(&it, NULL);
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("socket")
__description("socket filter program calling bpf_fget_task()")
__failure __msg("calling kernel function bpf_fget_task is not allowed")
int tf_socket_fget_task(void *ctx)
{
	struct file *f;

	/* refused at the call, before the NULL task is looked at */
	f = bpf_fget_task(NULL, 0);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

/* ---- capabilities ------------------------------------------------------- */

SEC("syscall")
__description("CAP_BPF only: get_fd() walk of own files by bpf_for(), runs")
__caps_unpriv(CAP_BPF)
__success_unpriv __retval_unpriv(0)
int tf_unpriv_bpf_walk_own_fds(void *ctx)
{
	struct bpf_iter_task_file it;
	struct task_struct *t;
	int i;

	/*
	 * bpf_get_current_task_btf() needs CAP_PERFMON, bpf_task_from_pid()
	 * does not
	 */
	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	if (!t)
		return 1;
	tf_n = 0;
	tf_bad = 0;
	bpf_iter_task_file_new(&it, t);
	/*
	 * Not "while (next())": without CAP_PERFMON the verifier also walks
	 * the speculative path into the loop body after next() returned NULL,
	 * and on 7.3 that path meets itself at the loop head with the
	 * iterator drained and reports "infinite loop detected" (bpf_repeat()
	 * over bpf_iter_num does the same). The bpf_for() counter changes on
	 * every round, so its loop converges.
	 */
	bpf_for(i, 0, 1 << 20) {
		if (!bpf_iter_task_file_next(&it))
			break;
		if (bpf_iter_task_file_get_fd(&it) < 0)
			tf_bad++;
		tf_n++;
	}
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(t);
	if (tf_n == 0)
		return 2;
	return tf_bad ? 3 : 0;
}

SEC("syscall")
__description("CAP_BPF only: reading the item needs CAP_PERFMON")
__caps_unpriv(CAP_BPF)
__failure_unpriv
__msg_unpriv(TF_MSG_ITEM_NEEDS_PERFMON)
int tf_unpriv_bpf_read_item(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *t;
	int sum = 0;

	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	if (!t)
		return 0;
	bpf_iter_task_file_new(&it, t);
	while ((item = bpf_iter_task_file_next(&it)))
		sum += item->fd;
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(t);
	return sum;
}
