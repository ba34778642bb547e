/* SPDX-License-Identifier: GPL-2.0 */
/*
 * CRIB (Checkpoint/Restore In eBPF) kfuncs: definitions shared by the kfunc
 * sources. Built in-tree under kernel/bpf/crib/ and out-of-tree as the
 * crib_kfuncs module; the .c and .h files are identical in both.
 */
#ifndef _CRIB_H
#define _CRIB_H

#include <linux/btf.h>
#include <linux/types.h>

/*
 * ABI version of the CRIB kfunc set as seen by BPF programs: major in the
 * upper 16 bits, minor in the lower 16. A minor bump adds kfuncs or
 * iterator fields; a major bump changes existing ones.
 */
#define CRIB_ABI_MAJOR	1
#define CRIB_ABI_MINOR	1
#define CRIB_ABI_VERSION	((CRIB_ABI_MAJOR << 16) | CRIB_ABI_MINOR)

/*
 * Open-coded iterator over the files of one task (ABI 1.1).
 *
 * struct bpf_iter_task_file is the opaque state a BPF program keeps on its
 * stack; struct bpf_iter_task_file_item is what bpf_iter_task_file_next()
 * returns a pointer to (it lives inside that state). Both layouts are part
 * of the ABI: programs built against the module find them in the module's
 * BTF, or in their own copy of the declarations.
 */
struct task_struct;
struct file;

/*
 * In-tree, KF_ITER_NEXT_SCOPED (include/linux/btf.h) makes the verifier
 * treat the pointers in the element returned by bpf_iter_task_file_next()
 * as trusted until the next next()/destroy() on that iterator. A stock
 * kernel lacks the flag: the module then leaves them untrusted (readable
 * with probe loads) and bpf_iter_task_file_get_file() is the way to a
 * trusted file.
 */
#ifndef KF_ITER_NEXT_SCOPED
#define KF_ITER_NEXT_SCOPED	0
#endif

struct bpf_iter_task_file_item {
	struct task_struct *task;
	struct file *file;
	unsigned int fd;
};

struct bpf_iter_task_file {
	__u64 __opaque[4];
} __aligned(8);

#endif /* _CRIB_H */
