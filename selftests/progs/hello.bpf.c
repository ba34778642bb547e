// SPDX-License-Identifier: GPL-2.0
/*
 * The first program through the whole chain: run once with BPF_PROG_RUN,
 * look up the caller's ctx->fd with a CRIB kfunc (the module's on a stock
 * kernel), and report that file's inode number and who ran the program
 * through the ring buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_records.h"
#include "crib_kfuncs.h"

char _license[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

SEC("syscall")
int crib_hello(struct crib_hello_ctx *ctx)
{
	struct crib_rec_hello *rec;
	__u64 id = bpf_get_current_pid_tgid();
	__u64 ugid = bpf_get_current_uid_gid();
	struct file *file;
	__u64 ino = 0;

	file = bpf_fget_task(bpf_get_current_task_btf(), ctx->fd);
	if (file) {
		ino = file->f_inode->i_ino;
		bpf_crib_put_file(file);
	}

	rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec)
		return -28; /* -ENOSPC */
	rec->hdr.type = CRIB_REC_HELLO;
	rec->hdr.size = sizeof(*rec);
	rec->hdr.seq = 0;
	rec->cookie = ctx->cookie;
	rec->ino = ino;
	rec->pid = (__u32)id;
	rec->tgid = id >> 32;
	rec->uid = (__u32)ugid;
	bpf_get_current_comm(rec->comm, sizeof(rec->comm));
	bpf_ringbuf_submit(rec, 0);
	return 0;
}
