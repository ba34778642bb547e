// SPDX-License-Identifier: GPL-2.0
/*
 * Who may have a task's files, and when a walk must stop
 * (harness/tests/permissions.rs). Context: struct crib_perm_ctx; records:
 * struct crib_rec_read (file_read.bpf.c's), through the "perm_reads" ring
 * buffer.
 *
 * perm_walk_pause: walk the task's files, read the first bytes of each
 *   through a bpf_iter_task_file_get_file() reference (the path both kernels
 *   have), one record per element. After pause_after elements it sets
 *   perm_sync.paused and spins until the harness sets perm_sync.resume, so
 *   the harness can change the target (PR_SET_DUMPABLE, setresuid) between
 *   two steps of one walk. Return: 0 when the walk reached the end of the
 *   table, the error of bpf_iter_task_file_new(), or why next() stopped the
 *   walk (bpf_iter_task_file_get_fd()), -ETIME if nobody resumed it.
 * perm_fget_read: bpf_fget_task(task, fd) and, if it handed out a
 *   reference, read the first bytes through it (one record). Return: 1 if a
 *   reference was handed out, 0 if not, -ESRCH without such a pid.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_records.h"
#include "crib_kfuncs.h"

char _license[] SEC("license") = "GPL";

#define ENOENT	2
#define ESRCH	3
#define ENOSPC	28
#define ETIME	62

/* Far below the table sizes the harness uses (a handful of fds). */
#define PERM_MAX_FDS	1024
/* bpf_loop() rounds of the pause: 64 x 2^23 checks, tens of seconds under TCG. */
#define PERM_SPIN_ROUNDS	64
#define PERM_SPIN_LOOPS		(1 << 23)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} perm_reads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct crib_perm_sync);
} perm_sync SEC(".maps");

extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

/*
 * Counters in global memory: a local counter compared in the loop would
 * become precise and keep the iterator loop from converging.
 */
__u32 nr_seq, nr_seen;

static __always_inline int emit(__u32 fd, __u32 stage, int err, struct bpf_dynptr *d)
{
	struct crib_rec_read *r;

	r = bpf_ringbuf_reserve(&perm_reads, sizeof(*r), 0);
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

/* Read through @file (a reference), then emit. */
static __always_inline int read_file(__u32 fd, struct file *file)
{
	struct bpf_dynptr d;
	int err, ret;

	err = bpf_dynptr_from_file(file, 0, &d);
	ret = emit(fd, err ? CRIB_READ_DYNPTR : CRIB_READ_OK, err, &d);
	bpf_dynptr_file_discard(&d);
	return ret;
}

static int spin_cb(__u64 i, void *data)
{
	struct crib_perm_sync *s;
	__u32 key = 0;

	s = bpf_map_lookup_elem(&perm_sync, &key);
	if (!s)
		return 1;
	return *(volatile __u32 *)&s->resume ? 1 : 0;
}

/* Tell the harness we are between two steps; wait until it says go on. */
static __noinline int pause_walk(void)
{
	struct crib_perm_sync *s;
	__u32 key = 0;
	int i;

	s = bpf_map_lookup_elem(&perm_sync, &key);
	if (!s)
		return -ENOENT;
	*(volatile __u32 *)&s->paused = 1;
	for (i = 0; i < PERM_SPIN_ROUNDS; i++) {
		if (*(volatile __u32 *)&s->resume)
			return 0;
		bpf_loop(PERM_SPIN_LOOPS, spin_cb, NULL, 0);
	}
	if (*(volatile __u32 *)&s->resume)
		return 0;
	s->timed_out = 1;
	return -ETIME;
}

SEC("syscall")
int perm_walk_pause(struct crib_perm_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *task;
	struct file *file;
	__u32 pause_after = ctx->pause_after;
	int err, ret = 0;

	nr_seq = 0;
	nr_seen = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	err = bpf_iter_task_file_new(&it, task);
	while (!err && (item = bpf_iter_task_file_next(&it))) {
		if (item->fd >= PERM_MAX_FDS)
			break;
		file = bpf_iter_task_file_get_file(&it);
		if (file) {
			ret = read_file(item->fd, file);
			bpf_crib_put_file(file);
		} else {
			ret = emit(item->fd, CRIB_READ_NO_REF, 0, NULL);
		}
		if (ret)
			break;
		if (++nr_seen == pause_after) {
			ret = pause_walk();
			if (ret)
				break;
		}
	}
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
int perm_fget_read(struct crib_perm_ctx *ctx)
{
	struct task_struct *task;
	struct file *file;
	int ret;

	nr_seq = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task)
		return -ESRCH;
	file = bpf_fget_task(task, ctx->fd);
	bpf_task_release(task);
	if (!file)
		return 0;
	ret = read_file(ctx->fd, file);
	bpf_crib_put_file(file);
	return ret ?: 1;
}
