/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by the dump programs (dump_files.bpf.c, dump_socks.bpf.c) and the
 * iter/task_file baseline of the fd-dump benchmark (iter_task_file.bpf.c).
 * Include after vmlinux.h, bpf_helpers.h, bpf_core_read.h and crib_records.h.
 */
#ifndef __CRIB_DUMP_H
#define __CRIB_DUMP_H

#ifndef ENOSPC
#define ENOSPC 28
#endif

/*
 * Write the end record of a dump into ring buffer @rb: the dump's @error,
 * @nr records written before it and @dropped ones that did not fit.
 * Returns 0, or -ENOSPC if even the end record did not fit.
 */
static __always_inline int crib_emit_end(void *rb, int error, __u32 seq,
					 __u32 nr, __u32 dropped)
{
	struct crib_rec_end *end;

	end = bpf_ringbuf_reserve(rb, sizeof(*end), 0);
	if (!end)
		return -ENOSPC;
	__builtin_memset(end, 0, sizeof(*end));
	end->hdr.type = CRIB_REC_END;
	end->hdr.size = sizeof(*end);
	end->hdr.seq = seq;
	end->error = error;
	end->nr_records = nr;
	end->nr_dropped = dropped;
	bpf_ringbuf_submit(end, 0);
	return 0;
}

/* uapi/linux/magic.h: file systems whose files procfs shows as "anon_inode:" */
#define ANON_INODE_FS_MAGIC	0x09041934
#define PID_FS_MAGIC		0x50494446
#define SOCKFS_MAGIC		0x534F434B

/* uapi/linux/stat.h */
#define S_IFMT		00170000
#define S_IFSOCK	0140000
#define S_IFLNK		0120000
#define S_IFREG		0100000
#define S_IFBLK		0060000
#define S_IFDIR		0040000
#define S_IFCHR		0020000
#define S_IFIFO		0010000

/*
 * FD_CLOEXEC of @task's @fd: it lives in the task's fdtable bitmap, not in
 * the file. The fdtable is replaced (and the old one freed after an RCU grace
 * period) when the table grows, so the caller must be in an RCU read-side
 * section. The bit is read after the file was picked: a concurrent
 * close()+open() of the same fd can make it belong to the newer file, as
 * with /proc/<pid>/fdinfo.
 *
 * @task may be trusted or not (bpf_core_cast()): the loads below are plain
 * CO-RE loads, which the verifier turns into faulting-safe BPF_PROBE_MEM
 * loads where the pointer is untrusted. close_on_exec is a pointer to a
 * scalar type, which the verifier does not track: bpf_rdonly_cast() to void
 * makes it read-only untrusted memory, loaded the same way at any offset.
 */
static __always_inline __u32 crib_fd_cloexec(struct task_struct *task, __u32 fd)
{
	struct fdtable *fdt = task->files->fdt;
	unsigned long *bits;
	unsigned long word = 0;

	if (fd < fdt->max_fds) {
		bits = bpf_rdonly_cast(fdt->close_on_exec, 0);
		word = bits[fd / 64];
	}
	return (word >> (fd % 64)) & 1;
}

static __always_inline __u32 crib_file_kind(__u32 i_mode, unsigned long magic)
{
	if (magic == ANON_INODE_FS_MAGIC || magic == PID_FS_MAGIC)
		return CRIB_FILE_ANON;
	switch (i_mode & S_IFMT) {
	case S_IFREG:
		return CRIB_FILE_REG;
	case S_IFDIR:
		return CRIB_FILE_DIR;
	case S_IFIFO:
		return CRIB_FILE_FIFO;
	case S_IFSOCK:
		return CRIB_FILE_SOCK;
	case S_IFCHR:
		return CRIB_FILE_CHR;
	case S_IFBLK:
		return CRIB_FILE_BLK;
	case S_IFLNK:
		return CRIB_FILE_LNK;
	}
	return CRIB_FILE_OTHER;
}

/*
 * Fill @rec (all but its header and cloexec, crib_fd_cloexec()) from @file,
 * open as @fd: the file's flags, mode and position, its inode, device, kind
 * and mount, and for a socket its family, type and protocol, for an
 * anonymous inode its name.
 *
 * @file may be trusted (iter/task_file's ctx->file, the patched kernel's
 * iterator element) or untrusted (bpf_core_cast() of an address): every
 * field is a plain CO-RE load, which for an untrusted pointer the verifier
 * emits as a BPF_PROBE_MEM load (one instruction, a fault fixed up to 0)
 * instead of a bpf_probe_read_kernel() call per field. The caller holds a
 * reference on @file for as long as this runs.
 */
static __always_inline void crib_fill_file(struct crib_rec_file *rec,
					   struct file *file, __u32 fd)
{
	struct inode *inode = file->f_inode;
	struct super_block *sb = inode->i_sb;
	unsigned long magic = sb->s_magic;
	struct mount *mnt;

	rec->fd = fd;
	rec->f_flags = file->f_flags;
	rec->f_mode = file->f_mode;
	rec->f_pos = file->f_pos;
	rec->i_mode = inode->i_mode;
	rec->ino = inode->i_ino;
	rec->dev = sb->s_dev;
	rec->rdev = inode->i_rdev;
	rec->kind = crib_file_kind(rec->i_mode, magic);
	/* fdinfo's mnt_id: real_mount(f_path.mnt)->mnt_id */
	mnt = bpf_core_cast((void *)file->f_path.mnt -
			    bpf_core_field_offset(struct mount, mnt), struct mount);
	rec->mnt_id = mnt->mnt_id;

	if (magic == SOCKFS_MAGIC) {
		/* sock_alloc_file(): private_data is the struct socket */
		struct socket *sock = bpf_core_cast(file->private_data, struct socket);
		struct sock *sk = sock->sk;

		rec->sk_family = sk->__sk_common.skc_family;
		rec->sk_type = sk->sk_type;
		rec->sk_protocol = sk->sk_protocol;
	} else if (magic == PID_FS_MAGIC) {
		/* pidfs dentries are nameless; procfs shows them as [pidfd] */
		__builtin_memcpy(rec->anon_name, "[pidfd]", sizeof("[pidfd]"));
	} else if (magic == ANON_INODE_FS_MAGIC) {
		bpf_probe_read_kernel_str(rec->anon_name, sizeof(rec->anon_name),
					  file->f_path.dentry->d_name.name);
	}
}

#endif /* __CRIB_DUMP_H */
