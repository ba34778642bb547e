// SPDX-License-Identifier: GPL-2.0
/*
 * Dump one task's file table: one struct crib_rec_file per open fd, then one
 * struct crib_rec_end, through a ring buffer. Run with BPF_PROG_RUN and a
 * struct crib_dump_ctx (target pid in the caller's pid namespace).
 *
 * Return value: 0 when every open fd was reported, else a negative errno:
 * -ESRCH (no such pid in the caller's pid namespace), whatever
 * bpf_iter_task_file_new() refused with (-EACCES, -EBUSY, ...), why
 * bpf_iter_task_file_next() stopped the walk before the end of the table
 * (bpf_iter_task_file_get_fd() after the last next(): -EACCES when access
 * was lost mid-walk, -EBUSY when the target was executing a new program),
 * or -ENOSPC when the ring buffer had no room for some records. The end
 * record carries the same error and the counts, so a reader can tell a
 * complete dump from a partial one even without the return value.
 *
 * With CRIB_DUMP_F_PATHS in the context's flags, every file record is
 * followed by a struct crib_rec_path holding the file's path as readlink of
 * /proc/<pid>/fd/<fd> shows it to the caller (bpf_iter_task_file_get_path();
 * a kernel without that kfunc fails the dump with -EOPNOTSUPP at once).
 *
 * The file pointer of an iterator element is untrusted on a stock kernel:
 * everything below is read through it with CO-RE loads that the verifier
 * makes faulting-safe (crib_fill_file()), which is all a dump needs. The
 * iterator holds the file's reference while we read it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "crib_records.h"
#include "crib_kfuncs.h"
#include "crib_dump.h"

char _license[] SEC("license") = "GPL";

#define ESRCH	3
#define ENOENT	2
#define ENOSPC	28
#define EOPNOTSUPP	95

/*
 * 16 MiB: a file record takes 88 bytes plus the ring buffer's 8-byte header,
 * so about 170,000 fds fit in one run (fewer with paths: a path record is
 * 16 bytes, the path and its NUL, plus the ring buffer's header). A larger table is still walked to the
 * end: the records that do not fit are counted in nr_dropped and the run
 * fails with -ENOSPC.
 */
#define RINGBUF_BYTES	(16 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RINGBUF_BYTES);
} records SEC(".maps");

/* Where a path record is built before it is copied into the ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct crib_rec_path);
} path_buf SEC(".maps");

extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

/* FD_CLOEXEC under RCU (crib_fd_cloexec()): this program is not in one. */
static __always_inline __u32 fd_cloexec(struct task_struct *task, __u32 fd)
{
	__u32 cloexec;

	bpf_rcu_read_lock();
	cloexec = crib_fd_cloexec(task, fd);
	bpf_rcu_read_unlock();
	return cloexec;
}

/*
 * A global function: the verifier checks it once, on its own, instead of once
 * per path through every loop iteration (inlined, the loop body's branches
 * kept the iterator loop from converging: E2BIG). The task and file come in as
 * plain addresses and are cast back to untrusted BTF pointers, read only.
 */
__noinline int fill_file(struct crib_rec_file *rec, __u64 task_addr,
			 __u64 file_addr, __u32 fd)
{
	struct task_struct *task = bpf_core_cast((void *)task_addr, struct task_struct);
	struct file *file = bpf_core_cast((void *)file_addr, struct file);

	/* A global function's pointer arguments may be NULL as far as it knows. */
	if (!rec)
		return -1;
	crib_fill_file(rec, file, fd);
	rec->cloexec = fd_cloexec(task, fd);
	return 0;
}

/*
 * The counters live in global memory, not in registers: a branch on a
 * counter incremented in the loop makes it precise, and the verifier then
 * walks the iterator loop once per value (E2BIG). Values loaded from a map
 * are not tracked across iterations.
 */
__u32 nr_seq, nr_dropped;

/*
 * The path record of the iterator's current file, after its file record.
 * A record that does not fit is counted in nr_dropped.
 */
static __always_inline void emit_path(struct bpf_iter_task_file *it, __u32 fd)
{
	struct crib_rec_path *p;
	__u32 zero = 0, size;
	int n;

	p = bpf_map_lookup_elem(&path_buf, &zero);
	if (!p)
		return;
	n = bpf_iter_task_file_get_path(it, p->path, sizeof(p->path));
	size = offsetof(struct crib_rec_path, path);
	if (n > 0)
		size += n;
	/* Bound what the verifier sees, not what the compiler derived. */
	barrier_var(size);
	if (size > sizeof(*p))
		size = offsetof(struct crib_rec_path, path);
	p->hdr.type = CRIB_REC_PATH;
	p->hdr.size = size;
	p->hdr.seq = nr_seq;
	p->fd = fd;
	p->error = n < 0 ? n : 0;
	if (bpf_ringbuf_output(&records, p, size, BPF_RB_NO_WAKEUP))
		nr_dropped++;
	else
		nr_seq++;
}

SEC("syscall")
int crib_dump_files(struct crib_dump_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct crib_rec_file *rec;
	struct task_struct *task;
	__u64 task_addr = 0, file_addr;
	__u32 seq, dropped;
	bool paths = ctx->flags & CRIB_DUMP_F_PATHS;
	int err;

	if (paths && !bpf_ksym_exists(bpf_iter_task_file_get_path)) {
		crib_emit_end(&records, -EOPNOTSUPP, 0, 0, 0);
		return -EOPNOTSUPP;
	}
	task = bpf_task_from_vpid(ctx->pid);
	if (!task) {
		crib_emit_end(&records, -ESRCH, 0, 0, 0);
		return -ESRCH;
	}

	bpf_probe_read_kernel(&task_addr, sizeof(task_addr), &task);
	nr_seq = 0;
	nr_dropped = 0;
	err = bpf_iter_task_file_new(&it, task);
	while (!err && (item = bpf_iter_task_file_next(&it))) {
		rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
		if (!rec) {
			nr_dropped++;
			continue;
		}
		__builtin_memset(rec, 0, sizeof(*rec));
		rec->hdr.type = CRIB_REC_FILE;
		rec->hdr.size = sizeof(*rec);
		rec->hdr.seq = nr_seq++;
		/* Launder the pointers into scalars for the global function. */
		file_addr = 0;
		bpf_probe_read_kernel(&file_addr, sizeof(file_addr), &item->file);
		fill_file(rec, task_addr, file_addr, item->fd);
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
		if (paths)
			emit_path(&it, item->fd);
	}
	/* next() returned NULL: the end of the table, or a stopped walk. */
	if (!err) {
		err = bpf_iter_task_file_get_fd(&it);
		if (err == -ENOENT || err > 0)
			err = 0;
	}
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(task);

	seq = nr_seq;
	dropped = nr_dropped;
	if (!err && dropped)
		err = -ENOSPC;
	if (crib_emit_end(&records, err, seq, seq, dropped) && !err)
		err = -ENOSPC;
	return err;
}
