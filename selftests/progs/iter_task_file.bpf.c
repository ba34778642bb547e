// SPDX-License-Identifier: GPL-2.0
/*
 * The upstream, no-new-kfunc baseline of the fd-dump benchmark
 * (harness/src/fd_bench, `crib bench-fds`): a seq_file iterator over the
 * files of one process (SEC("iter/task_file"), linked with
 * bpf_iter_link_info.task.pid), read through the iterator fd. It emits the
 * same binary records as dump_files.bpf.c with CRIB_DUMP_F_PATHS, through
 * bpf_seq_write() instead of a ring buffer: per fd one struct crib_rec_file
 * and one struct crib_rec_path (bpf_d_path(), which iterator programs may
 * call), then, when the iterator calls the program a last time with no file,
 * one struct crib_rec_end. So the harness decodes both with the same code.
 *
 * The records carry no sequence numbers and the end record no count (0s):
 * ctx->meta->seq_num also advances for an element that did not fit in the
 * seq_file buffer and is shown again by the next read(), so it cannot number
 * them. The harness numbers them in stream order (fd_bench/iter.rs).
 *
 * The field reads are those of dump_files.bpf.c (crib_fill_file() and
 * crib_fd_cloexec() of crib_dump.h) on purpose: the benchmark compares the two
 * ways of getting the same fields, not two different sets of reads.
 *
 * Also here: crib_count_syscalls, a raw_syscalls:sys_enter tracepoint
 * program that counts the system calls of a process tree (the benchmark
 * process, its children and grandchildren: lsof forks helpers), keyed by
 * tgid. The benchmark attaches it only for a separate, untimed run of each
 * method.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "crib_records.h"
#include "crib_dump.h"

char _license[] SEC("license") = "GPL";

/* Where a path record is built before bpf_seq_write() copies it out. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct crib_rec_path);
} iter_path_buf SEC(".maps");

SEC("iter/task_file")
int crib_iter_task_file(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct crib_rec_file rec = {};
	struct crib_rec_path *p;
	__u32 zero = 0, size;
	long n;

	if (!task || !file) {
		/* The last call, after the last element: the end record. */
		struct crib_rec_end end = {};

		end.hdr.type = CRIB_REC_END;
		end.hdr.size = sizeof(end);
		bpf_seq_write(seq, &end, sizeof(end));
		return 0;
	}

	rec.hdr.type = CRIB_REC_FILE;
	rec.hdr.size = sizeof(rec);
	crib_fill_file(&rec, file, ctx->fd);
	/* iterator programs run in an RCU read-side section */
	rec.cloexec = crib_fd_cloexec(task, ctx->fd);

	p = bpf_map_lookup_elem(&iter_path_buf, &zero);
	if (!p)
		return 0;
	n = bpf_d_path(&file->f_path, p->path, sizeof(p->path));
	size = offsetof(struct crib_rec_path, path);
	if (n > 0)
		size += n;
	barrier_var(size);
	if (size > sizeof(*p))
		size = offsetof(struct crib_rec_path, path);
	p->hdr.type = CRIB_REC_PATH;
	p->hdr.size = size;
	p->hdr.seq = 0;
	p->fd = ctx->fd;
	p->error = n < 0 ? n : 0;

	/* Both or neither: a record pair that does not fit is shown again. */
	bpf_seq_write(seq, &rec, sizeof(rec));
	bpf_seq_write(seq, p, size);
	return 0;
}

/* tgid -> system calls entered while the counter was attached. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} syscall_counts SEC(".maps");

/* Key 0: the tgid whose process tree is counted (set by the harness before attaching). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} count_cfg SEC(".maps");

SEC("tp_btf/sys_enter")
int BPF_PROG(crib_count_syscalls, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *t = task;
	__u32 tgid = task->tgid, zero = 0, *want;
	__u64 one = 1, *v;
	bool ours = false;
	int i;

	want = bpf_map_lookup_elem(&count_cfg, &zero);
	if (!want || !*want)
		return 0;
	/* The process itself, its children and grandchildren. */
	for (i = 0; i < 3; i++) {
		if (BPF_CORE_READ(t, tgid) == *want) {
			ours = true;
			break;
		}
		t = BPF_CORE_READ(t, real_parent);
		if (!t)
			break;
	}
	if (!ours)
		return 0;
	v = bpf_map_lookup_elem(&syscall_counts, &tgid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&syscall_counts, &tgid, &one, BPF_NOEXIST);
	return 0;
}
