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
 */
static __always_inline __u32 crib_fd_cloexec(struct task_struct *task, __u32 fd)
{
	struct files_struct *files;
	struct fdtable *fdt;
	unsigned long *bits;
	unsigned long word = 0;
	__u32 max_fds;

	files = BPF_CORE_READ(task, files);
	fdt = BPF_CORE_READ(files, fdt);
	max_fds = BPF_CORE_READ(fdt, max_fds);
	if (fd < max_fds) {
		bits = BPF_CORE_READ(fdt, close_on_exec);
		bpf_probe_read_kernel(&word, sizeof(word), bits + fd / 64);
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
 * open as @fd, with CO-RE probe reads: the file's flags, mode and position,
 * its inode, device, kind and mount, and for a socket its family, type and
 * protocol, for an anonymous inode its name.
 */
static __always_inline void crib_fill_file(struct crib_rec_file *rec,
					   struct file *file, __u32 fd)
{
	struct inode *inode;
	struct super_block *sb;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	unsigned long magic;

	inode = BPF_CORE_READ(file, f_inode);
	sb = BPF_CORE_READ(inode, i_sb);
	magic = BPF_CORE_READ(sb, s_magic);

	rec->fd = fd;
	rec->f_flags = BPF_CORE_READ(file, f_flags);
	rec->f_mode = BPF_CORE_READ(file, f_mode);
	rec->f_pos = BPF_CORE_READ(file, f_pos);
	rec->i_mode = BPF_CORE_READ(inode, i_mode);
	rec->ino = BPF_CORE_READ(inode, i_ino);
	rec->dev = BPF_CORE_READ(sb, s_dev);
	rec->rdev = BPF_CORE_READ(inode, i_rdev);
	rec->kind = crib_file_kind(rec->i_mode, magic);
	/* fdinfo's mnt_id: real_mount(f_path.mnt)->mnt_id */
	vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
	rec->mnt_id = BPF_CORE_READ(mnt, mnt_id);

	if (magic == SOCKFS_MAGIC) {
		/* sock_alloc_file(): private_data is the struct socket */
		struct socket *sock = BPF_CORE_READ(file, private_data);
		struct sock *sk = BPF_CORE_READ(sock, sk);

		rec->sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
		rec->sk_type = BPF_CORE_READ(sk, sk_type);
		rec->sk_protocol = BPF_CORE_READ(sk, sk_protocol);
	} else if (magic == PID_FS_MAGIC) {
		/* pidfs dentries are nameless; procfs shows them as [pidfd] */
		__builtin_memcpy(rec->anon_name, "[pidfd]", sizeof("[pidfd]"));
	} else if (magic == ANON_INODE_FS_MAGIC) {
		const unsigned char *name = BPF_CORE_READ(file, f_path.dentry, d_name.name);

		bpf_probe_read_kernel_str(rec->anon_name, sizeof(rec->anon_name), name);
	}
}

#endif /* __CRIB_DUMP_H */
