// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark: what one bpf_iter_task_file_get_file()/bpf_crib_put_file()
 * pair costs per use of the current file (harness/src/bench.rs, `crib
 * bench`). Every program walks the fd table of ctx->pid once and times the
 * walk with bpf_ktime_get_ns(), from before bpf_iter_task_file_new() to
 * after bpf_iter_task_file_destroy(); the task lookup is outside the timed
 * region. The four modes differ only in what they do per element:
 *
 *   1 crib_bench_walk          read item->fd
 *   2 crib_bench_get_put       get_file(), put
 *   3 crib_bench_get_dynptr    get_file(), bpf_dynptr_from_file(),
 *                              bpf_dynptr_file_discard(), put
 *   4 crib_bench_scoped_dynptr bpf_dynptr_from_file(item->file),
 *                              bpf_dynptr_file_discard(); no get/put
 *
 * Mode 4 needs KF_ITER_NEXT_SCOPED (kernel-patches/0001), which makes
 * item->file trusted for the current step; the stock verifier rejects it
 * ("R1 must be referenced or trusted"), so it is a program of its own that
 * the harness loads separately. Modes 3 and 4 do the same work but for the
 * get/put pair, so their difference is its price.
 *
 * Every mode also reads item->fd and sums the fds, so the harness can check
 * that all modes walked the same table. Files for which get_file() returns
 * NULL (the module hands out only what it may: see kfuncs/README.md) and
 * bpf_dynptr_from_file() failures (kernel-patches/0001: -EBADF for files not
 * open for reading, -EINVAL for files that are not regular) are counted,
 * and the first CRIB_BENCH_MAX_FAILS are kept in bench_fails. The target's
 * own files are regular and read-only, so only its inherited stdio may
 * fail.
 *
 * Return value: 0, -ESRCH when ctx->pid names no task in the caller's pid
 * namespace, or the error of bpf_iter_task_file_new().
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_bench.h"
#include "crib_kfuncs.h"

char _license[] SEC("license") = "GPL";

#define ESRCH	3

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CRIB_BENCH_MAX_FAILS);
	__type(key, __u32);
	__type(value, struct crib_bench_fail);
} bench_fails SEC(".maps");

extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

/*
 * Off the fast path: only files that fail get here. The counters live in
 * ctx memory, which the verifier does not track, so the loop still
 * converges.
 */
static __always_inline void note_fail(struct crib_bench_ctx *ctx, __u32 fd,
				      __u32 kind, int err)
{
	struct crib_bench_fail *f;
	__u32 i = ctx->nr_nofile + ctx->nr_err;

	if (kind == CRIB_BENCH_NOFILE)
		ctx->nr_nofile++;
	else
		ctx->nr_err++;
	if (i >= CRIB_BENCH_MAX_FAILS)
		return;
	f = bpf_map_lookup_elem(&bench_fails, &i);
	if (f) {
		f->fd = fd;
		f->kind = kind;
		f->err = err;
	}
}

/*
 * The counters below are plain registers: nothing branches on them inside
 * the loop, so they stay imprecise and the iterator loop converges.
 */

SEC("syscall")
int crib_bench_walk(struct crib_bench_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *task;
	__u64 t0, t1, sum = 0;
	__u32 n = 0;
	int err;

	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	t0 = bpf_ktime_get_ns();
	err = bpf_iter_task_file_new(&it, task);
	while ((item = bpf_iter_task_file_next(&it))) {
		sum += item->fd;
		n++;
	}
	bpf_iter_task_file_destroy(&it);
	t1 = bpf_ktime_get_ns();
	bpf_task_release(task);

	ctx->nr_fds = n;
	ctx->fd_sum = sum;
	ctx->walk_ns = t1 - t0;
	return err;
}

SEC("syscall")
int crib_bench_get_put(struct crib_bench_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *task;
	struct file *f;
	__u64 t0, t1, sum = 0;
	__u32 n = 0;
	int err;

	ctx->nr_nofile = 0;
	ctx->nr_err = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	t0 = bpf_ktime_get_ns();
	err = bpf_iter_task_file_new(&it, task);
	while ((item = bpf_iter_task_file_next(&it))) {
		sum += item->fd;
		n++;
		f = bpf_iter_task_file_get_file(&it);
		if (!f) {
			note_fail(ctx, item->fd, CRIB_BENCH_NOFILE, 0);
			continue;
		}
		bpf_crib_put_file(f);
	}
	bpf_iter_task_file_destroy(&it);
	t1 = bpf_ktime_get_ns();
	bpf_task_release(task);

	ctx->nr_fds = n;
	ctx->fd_sum = sum;
	ctx->walk_ns = t1 - t0;
	return err;
}

SEC("syscall")
int crib_bench_get_dynptr(struct crib_bench_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *task;
	struct bpf_dynptr d;
	struct file *f;
	__u64 t0, t1, sum = 0;
	__u32 n = 0;
	int err, derr;

	ctx->nr_nofile = 0;
	ctx->nr_err = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	t0 = bpf_ktime_get_ns();
	err = bpf_iter_task_file_new(&it, task);
	while ((item = bpf_iter_task_file_next(&it))) {
		sum += item->fd;
		n++;
		f = bpf_iter_task_file_get_file(&it);
		if (!f) {
			note_fail(ctx, item->fd, CRIB_BENCH_NOFILE, 0);
			continue;
		}
		derr = bpf_dynptr_from_file(f, 0, &d);
		if (derr)
			note_fail(ctx, item->fd, CRIB_BENCH_DYNPTR, derr);
		bpf_dynptr_file_discard(&d);
		bpf_crib_put_file(f);
	}
	bpf_iter_task_file_destroy(&it);
	t1 = bpf_ktime_get_ns();
	bpf_task_release(task);

	ctx->nr_fds = n;
	ctx->fd_sum = sum;
	ctx->walk_ns = t1 - t0;
	return err;
}

/* Patched kernel only (KF_ITER_NEXT_SCOPED); the stock verifier rejects it. */
SEC("syscall")
int crib_bench_scoped_dynptr(struct crib_bench_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *task;
	struct bpf_dynptr d;
	__u64 t0, t1, sum = 0;
	__u32 n = 0;
	int err, derr;

	ctx->nr_nofile = 0;
	ctx->nr_err = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	t0 = bpf_ktime_get_ns();
	err = bpf_iter_task_file_new(&it, task);
	while ((item = bpf_iter_task_file_next(&it))) {
		sum += item->fd;
		n++;
		derr = bpf_dynptr_from_file(item->file, 0, &d);
		if (derr)
			note_fail(ctx, item->fd, CRIB_BENCH_DYNPTR, derr);
		bpf_dynptr_file_discard(&d);
	}
	bpf_iter_task_file_destroy(&it);
	t1 = bpf_ktime_get_ns();
	bpf_task_release(task);

	ctx->nr_fds = n;
	ctx->fd_sum = sum;
	ctx->walk_ns = t1 - t0;
	return err;
}
