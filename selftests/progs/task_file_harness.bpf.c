// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases of the CRIB harness only, which the series does
 * not carry as in-tree selftests (the other task_file_*.bpf.c files, whose
 * cases hold on the kernel with the series and have a __msg each):
 *
 * - what a kernel without the series (stock 7.3 + the CRIB module) says
 *   where the series' verifier change (KF_ITER_NEXT_SCOPED) makes a
 *   difference. On stock, item->file and item->task are plain field loads
 *   of a trusted pointer, hence PTR_UNTRUSTED: a kfunc or a global
 *   subprogram that wants a trusted pointer rejects them whether the
 *   element is current or stale. The module path is
 *   bpf_iter_task_file_get_file(): a referenced file, valid until it is
 *   put, independent of the iterator (task_file_lifetime.bpf.c);
 * - a load refused before the verifier runs, which leaves no log for a
 *   __msg: __crib_load_errno checks its errno instead.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/* loop counters: globals, see task_file_success.bpf.c */
int tf_n, tf_bad;

/* ---- stock: writes (task_file_failure.bpf.c) ---------------------------- */

SEC("syscall")
__description("stock: writing through the item (item->fd = 0)")
__crib_flavor("stock")
__failure __msg("only read is supported")
int tf_stock_write_item(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		item->fd = 0;
		break;
	}
	return 0;
}

/* ---- stock: the element's pointers (task_file_lifetime.bpf.c) ---------- */

SEC("syscall")
__description("stock: current item->file to a trusted-pointer kfunc is rejected (untrusted load)")
__crib_flavor("stock")
__failure __msg("R1 must be referenced or trusted")
int tf_stock_item_file_to_trusted_kfunc(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_dynptr d;

	tf_bad = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		if (bpf_dynptr_from_file(item->file, 0, &d))
			tf_bad++;
		bpf_dynptr_file_discard(&d);
	}
	return tf_bad;
}

SEC("syscall")
__description("stock: current item->task to a trusted-pointer kfunc is rejected")
__crib_flavor("stock")
__failure __msg("R1 must be referenced or trusted")
int tf_stock_item_task_to_trusted_kfunc(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct file *f;

	tf_bad = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		f = bpf_fget_task(item->task, item->fd);
		if (!f) {
			tf_bad++;
			continue;
		}
		bpf_crib_put_file(f);
	}
	return tf_bad;
}

SEC("syscall")
__description("stock: item->file saved before next() is rejected by a trusted-pointer kfunc")
__crib_flavor("stock")
__failure __msg("R1 must be referenced or trusted")
int tf_stock_stale_file_after_next(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	struct bpf_dynptr d;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		f = item->file;
		bpf_iter_task_file_next(&it);
		bpf_dynptr_from_file(f, 0, &d);
		bpf_dynptr_file_discard(&d);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("stock: item->file saved before destroy() is rejected by a trusted-pointer kfunc")
__crib_flavor("stock")
__failure __msg("R1 must be referenced or trusted")
int tf_stock_stale_file_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	struct bpf_dynptr d;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (!item) {
		bpf_iter_task_file_destroy(&it);
		return 0;
	}
	f = item->file;
	bpf_iter_task_file_destroy(&it);
	bpf_dynptr_from_file(f, 0, &d);
	bpf_dynptr_file_discard(&d);
	return 0;
}

/* ---- stock: the review's cases (task_file_scoped.bpf.c) ---------------- */

__noinline int tf_global_readable(struct file *f __arg_trusted)
{
	return (f->f_mode & TF_FMODE_READ) ? 1 : 0;
}

SEC("syscall")
__description("stock: current item->file to a global subprogram's __arg_trusted")
__crib_flavor("stock")
__failure __msg("R1 type=untrusted_ptr_ expected=ptr_, trusted_ptr_, rcu_ptr_")
int tf_stock_global_subprog_arg_trusted(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf())
		tf_n += tf_global_readable(item->file);
	return tf_n > 0 ? 0 : 1;
}

SEC("syscall")
__description("stock: an iterator created from item->task")
__crib_flavor("stock")
__failure __msg("R2 must be referenced or trusted")
int tf_stock_iter_from_elem(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it, it2;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		bpf_iter_task_file_new(&it2, item->task);
		bpf_iter_task_file_destroy(&it2);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/* ---- capabilities (task_file_progtype.bpf.c) ---------------------------- */

/*
 * Without CAP_BPF, bpf_prog_load() (kernel/bpf/syscall.c) refuses every type
 * but socket filters and cgroup skb programs with -EPERM before the verifier
 * runs: there is no log for __msg, so the errno is what says the load failed
 * for this reason and not another (EINVAL, E2BIG, a verifier rejection).
 */
SEC("syscall")
__description("unprivileged: no capabilities at all, a SYSCALL program does not load")
__failure_unpriv __crib_load_errno_unpriv(EPERM)
int tf_unpriv_no_caps(void *ctx)
{
	struct bpf_iter_task_file it;

	tf_n = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it))
		tf_n++;
	bpf_iter_task_file_destroy(&it);
	return tf_n;
}
