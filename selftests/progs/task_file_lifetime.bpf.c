// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: what the current element's pointers may be
 * used for, and for how long.
 *
 * The kfunc that needs a trusted struct file * is bpf_dynptr_from_file()
 * (common kfunc set, so SYSCALL programs may call it); the dynptr it makes
 * is referenced and has to be given back with bpf_dynptr_file_discard().
 *
 * Two kernels, two answers:
 * - stock 7.3 + module: item->file and item->task are plain field loads of
 *   a trusted pointer, hence PTR_UNTRUSTED, and a kfunc rejects them with
 *   "R<n> must be referenced or trusted" whether the element is current or
 *   stale. The module path is bpf_iter_task_file_get_file(): a referenced
 *   file, valid until it is put, independent of the iterator.
 * - patched kernel (KF_ITER_NEXT_SCOPED on bpf_iter_task_file_next(), the
 *   verifier change, kernel-patches/0001): item->file/item->task are
 *   trusted until the next next()/destroy() on that iterator. Then every
 *   copy is invalidated like a released pointer: a kfunc sees a scalar
 *   ("R1 is scalar expected STRUCT file"), and the verifier's diagnosis
 *   names the cause ("iterator advance invalidated this pointer",
 *   "iterator destroy invalidated this pointer").
 * __crib_flavor() restricts a case to the kernel it describes; cases
 * without it hold on both.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/* loop counters: globals, see task_file_success.bpf.c */
int tf_n, tf_bad;

/* ---- the module path: get_file() + put, valid on both kernels ---------- */

SEC("syscall")
__description("current file to a trusted-pointer kfunc via get_file(): dynptr, discard, put")
__success __retval(0)
int tf_get_file_to_trusted_kfunc(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_dynptr d;
	struct file *f;

	tf_n = 0;
	tf_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (!f)
			continue;	/* only regular files open for reading */
		if (bpf_dynptr_from_file(f, 0, &d))
			tf_bad++;
		bpf_dynptr_file_discard(&d);
		bpf_crib_put_file(f);
		tf_n++;
	}
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

SEC("syscall")
__description("a get_file() reference stays usable after next() moved on")
__success __retval(0)
int tf_get_file_survives_next(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_dynptr d;
	struct file *f = NULL;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f)
			break;
	}
	while (bpf_iter_task_file_next(&it))
		;
	bpf_iter_task_file_destroy(&it);
	if (!f)
		return 1;
	if (bpf_dynptr_from_file(f, 0, &d))
		ret = 2;
	bpf_dynptr_file_discard(&d);
	bpf_crib_put_file(f);
	return ret;
}

SEC("syscall")
__description("a get_file() reference may be put after destroy()")
__success __retval(0)
int tf_get_file_put_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f = NULL;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f)
			break;
	}
	bpf_iter_task_file_destroy(&it);
	if (!f)
		return 1;
	bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("put of a get_file() reference while a dynptr made from it is live")
__failure __msg("Leaking reference id={{[0-9]+}} alloc_insn={{[0-9]+}}. Release it first.")
int tf_put_file_under_live_dynptr(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_dynptr d;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f) {
			bpf_dynptr_from_file(f, 0, &d);
			bpf_crib_put_file(f);
			bpf_dynptr_file_discard(&d);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/* ---- the current element's own pointers ---------------------------------- */

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

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: current item->file goes straight to a trusted-pointer kfunc")
__crib_flavor("patched")
__success __retval(0)
int tf_patched_item_file_to_trusted_kfunc(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_dynptr d;

	tf_n = 0;
	tf_bad = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		struct file *f = item->file;
		int err = bpf_dynptr_from_file(f, 0, &d);
		int want = 0;

		/* kernel-patches/0002: only regular files open for reading */
		if (!(f->f_mode & TF_FMODE_READ))
			want = -EBADF;
		else if ((f->f_inode->i_mode & TF_S_IFMT) != TF_S_IFREG)
			want = -EINVAL;
		if (err != want)
			tf_bad++;
		bpf_dynptr_file_discard(&d);
		if (!want)
			tf_n++;
	}
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
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

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: current item->task goes to bpf_fget_task(), same file comes back")
__crib_flavor("patched")
__success __retval(0)
int tf_patched_item_task_to_trusted_kfunc(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct file *f;

	tf_n = 0;
	tf_bad = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		f = bpf_fget_task(item->task, item->fd);
		if (!f)
			continue;	/* not a regular file open for reading */
		if (f != item->file)
			tf_bad++;
		bpf_crib_put_file(f);
		tf_n++;
	}
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

/* ---- a stale element: after next() / destroy() ----------------------------- */

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

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: item->file saved before next() is invalidated by that next()")
__crib_flavor("patched")
__failure
__msg("R1 is scalar expected STRUCT file")
__msg("iterator advance invalidated this pointer")
int tf_patched_stale_file_after_next(void *ctx)
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

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: item->file saved before destroy() is invalidated by destroy()")
__crib_flavor("patched")
__failure
__msg("R1 is scalar expected STRUCT file")
__msg("iterator destroy invalidated this pointer")
int tf_patched_stale_file_after_destroy(void *ctx)
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

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: item->task saved before next() is invalidated by that next()")
__crib_flavor("patched")
__failure
__msg("R1 is scalar expected STRUCT task_struct")
__msg("iterator advance invalidated this pointer")
int tf_patched_stale_task_after_next(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	struct task_struct *t;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		t = item->task;
		bpf_iter_task_file_next(&it);
		f = bpf_fget_task(t, 0);
		if (f)
			bpf_crib_put_file(f);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}
