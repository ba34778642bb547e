// SPDX-License-Identifier: GPL-2.0
/*
 * Read the first bytes of every file of one task through
 * bpf_dynptr_from_file(), the one kfunc available to SYSCALL programs that
 * reads a file's contents, and report per fd what happened (struct
 * crib_rec_read). Context: struct crib_dump_ctx. Return: 0, or the negative
 * errno of bpf_iter_task_file_new(), the reason a walk was stopped before
 * the end of the table (bpf_iter_task_file_get_fd(): -EACCES, -EBUSY), or
 * -ENOSPC.
 *
 * read_via_get_file: the module's path on any kernel, a reference from
 *   bpf_iter_task_file_get_file() (NULL unless a regular file open for
 *   reading), then put.
 * read_via_item_file: the in-tree path, item->file passed directly; it loads
 *   only where bpf_iter_task_file_next() has KF_ITER_NEXT_SCOPED (patched).
 *
 * The harness compares the outcome with how each fd was opened: on the
 * patched kernel bpf_dynptr_from_file() refuses files without FMODE_READ
 * (-EBADF) and files that are not regular (-EINVAL, kernel-patches/0001).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_records.h"
#include "crib_kfuncs.h"

char _license[] SEC("license") = "GPL";

#define ENOENT	2
#define ESRCH	3
#define ENOSPC	28

/* Far below the table sizes the harness uses (a handful of fds). */
#define READ_MAX_FDS	1024

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} reads SEC(".maps");

extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

__u32 nr_seq;

static __always_inline int emit(__u32 fd, __u32 stage, int err, struct bpf_dynptr *d)
{
	struct crib_rec_read *r;

	r = bpf_ringbuf_reserve(&reads, sizeof(*r), 0);
	if (!r)
		return -ENOSPC;
	__builtin_memset(r, 0, sizeof(*r));
	r->hdr.type = CRIB_REC_READ;
	r->hdr.size = sizeof(*r);
	r->hdr.seq = nr_seq++;
	r->fd = fd;
	if (stage == CRIB_READ_OK) {
		err = bpf_dynptr_read(r->head, CRIB_READ_HEAD, d, 0, 0);
		if (err)
			stage = CRIB_READ_READ;
		else
			r->len = CRIB_READ_HEAD;
	}
	r->stage = stage;
	r->err = err;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* Read through @file, then emit. @file is trusted: referenced or scoped. */
static __always_inline int read_file(__u32 fd, struct file *file)
{
	struct bpf_dynptr d;
	int err, ret;

	err = bpf_dynptr_from_file(file, 0, &d);
	ret = emit(fd, err ? CRIB_READ_DYNPTR : CRIB_READ_OK, err, &d);
	bpf_dynptr_file_discard(&d);
	return ret;
}

/*
 * Walk the task's files; read each through a get_file() reference or, with
 * @via_item (a constant, so the other branch is compiled out and the stock
 * verifier never sees it), through item->file.
 */
static __always_inline int read_all(struct crib_dump_ctx *ctx, bool via_item)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	struct task_struct *task;
	struct file *file;
	int err, ret = 0;

	nr_seq = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	err = bpf_iter_task_file_new(&it, task);
	while (!err && (item = bpf_iter_task_file_next(&it))) {
		if (item->fd >= READ_MAX_FDS)
			break;
		if (via_item) {
			ret = read_file(item->fd, item->file);
		} else {
			file = bpf_iter_task_file_get_file(&it);
			if (file) {
				ret = read_file(item->fd, file);
				bpf_crib_put_file(file);
			} else {
				ret = emit(item->fd, CRIB_READ_NO_REF, 0, NULL);
			}
		}
		if (ret)
			break;
	}
	/* Stopped walk (access lost, exec in progress), not the end? */
	if (!err && !ret) {
		ret = bpf_iter_task_file_get_fd(&it);
		if (ret == -ENOENT || ret >= 0)
			ret = 0;
	}
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(task);
	return err ?: ret;
}

SEC("syscall")
int read_via_get_file(struct crib_dump_ctx *ctx)
{
	return read_all(ctx, false);
}

SEC("syscall")
int read_via_item_file(struct crib_dump_ctx *ctx)
{
	return read_all(ctx, true);
}
