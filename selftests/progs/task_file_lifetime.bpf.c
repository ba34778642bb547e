// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: what the current element's pointers may be
 * used for, and for how long.
 *
 * The kfunc that needs a trusted struct file * is bpf_dynptr_from_file()
 * (common kfunc set, so SYSCALL programs may call it); the dynptr it makes
 * is referenced and has to be given back with bpf_dynptr_file_discard().
 *
 * With KF_ITER_NEXT_SCOPED on bpf_iter_task_file_next(), item->file and
 * item->task are trusted until the next next()/destroy() on that iterator.
 * Then every copy is invalidated like a released pointer: a kfunc sees a
 * scalar ("R1 is scalar expected STRUCT file"), and the verifier's
 * diagnosis names the cause ("iterator advance invalidated this pointer",
 * "iterator destroy invalidated this pointer").
 *
 * A reference from bpf_iter_task_file_get_file() is valid until it is put,
 * independent of the iterator; it is also the only way to hand the current
 * file to such a kfunc without the flag (the CRIB module on a kernel
 * without this series, whose cases live in task_file_harness.bpf.c of the
 * CRIB repository). __crib_flavor("patched") marks the cases that need the
 * flag.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/* loop counters: globals, see task_file_success.bpf.c */
int tf_n, tf_bad;

/* ---- get_file() + put: valid with and without the flag ------------------ */

SEC("syscall")
__description("get_file() to a trusted-pointer kfunc: dynptr, discard, put")
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
			continue;	/* readable regular files only */
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
__description("put of a get_file() reference while a dynptr of it is live")
__failure __msg(TF_MSG_LEAK_RELEASE_FIRST)
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
__description("patched: current item->file straight to a trusted-pointer kfunc")
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
__description("patched: current item->task to bpf_fget_task(), same file back")
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
			continue;	/* not a readable regular file */
		if (f != item->file)
			tf_bad++;
		bpf_crib_put_file(f);
		tf_n++;
	}
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

/* ---- a stale element: after next() / destroy() -------------------------- */

SEC("syscall")
__description("patched: item->file saved before next() is invalid after it")
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
__description("patched: item->file saved before destroy() is invalid after it")
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

SEC("syscall")
__description("patched: item->task saved before next() is invalid after it")
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
