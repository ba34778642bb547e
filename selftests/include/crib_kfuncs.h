/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * BPF-side declarations of the CRIB kfuncs. vmlinux.h has no module types,
 * so programs that run against the out-of-tree module get the kfunc
 * prototypes and iterator layouts from here. All kfuncs are __weak: a
 * program can test for one with bpf_ksym_exists().
 *
 * Include after vmlinux.h (or the kernel headers) and bpf_helpers.h.
 * Against a patched kernel whose vmlinux.h already has the CRIB types,
 * define CRIB_HAVE_VMLINUX_TYPES before including this header.
 *
 * ABI 1.1 (bpf_crib_abi_version() == 0x10001) added the task_file kfuncs.
 */
#ifndef __CRIB_KFUNCS_H
#define __CRIB_KFUNCS_H

#ifndef CRIB_HAVE_VMLINUX_TYPES
/* Element returned by bpf_iter_task_file_next(); read-only for programs. */
struct bpf_iter_task_file_item {
	struct task_struct *task;
	struct file *file;
	unsigned int fd;
};

/* Opaque iterator state; lives on the program's stack. */
struct bpf_iter_task_file {
	__u64 __opaque[4];
} __attribute__((aligned(8)));
#endif /* CRIB_HAVE_VMLINUX_TYPES */

extern __u32 bpf_crib_abi_version(void) __ksym __weak;

/*
 * Iterate over the open files of @task, in descriptor order.
 * _new: 0, -ESRCH (no pid in the caller's pid namespace, or exited),
 *       -EINVAL (kernel thread), -EBUSY (the task is in the middle of an
 *       exec), -EACCES (no permission: in-tree ptrace_may_access() with
 *       PTRACE_MODE_ATTACH_REALCREDS, as pidfd_getfd(); module: own thread
 *       group or CAP_SYS_PTRACE).
 * _next: the current element, valid until the next _next()/_destroy();
 *        NULL at the end of the table or when the walk was stopped (the
 *        permission check is made again before every element).
 *        _destroy must always be called after _new.
 */
extern int bpf_iter_task_file_new(struct bpf_iter_task_file *it,
				  struct task_struct *task) __ksym __weak;
extern struct bpf_iter_task_file_item *
bpf_iter_task_file_next(struct bpf_iter_task_file *it) __ksym __weak;
extern void bpf_iter_task_file_destroy(struct bpf_iter_task_file *it) __ksym __weak;

/* fd of the current element. Without one: why next() stopped the walk
 * before the end of the table (-EACCES: access lost, e.g. the task became
 * non-dumpable, changed credentials or executed a setuid program; -EBUSY:
 * it was in the middle of an exec; -ESRCH: it was reaped), else -ENOENT.
 * Call it after next() returned NULL to tell a stopped walk from a
 * complete one.
 */
extern int bpf_iter_task_file_get_fd(struct bpf_iter_task_file *it__iter) __ksym __weak;

/* New reference to the current element's file (release with
 * bpf_crib_put_file()), NULL without a current element or unless it is a
 * regular file open for reading (every file is listed by the iterator, but
 * only those are handed out as references).
 */
extern struct file *
bpf_iter_task_file_get_file(struct bpf_iter_task_file *it__iter) __ksym __weak;

/* Reference to the file at @fd of @task (same permission check as _new);
 * NULL if none, not a regular file open for reading, or not permitted.
 */
extern struct file *bpf_fget_task(struct task_struct *task,
				  unsigned int fd) __ksym __weak;

/* Release a file reference from bpf_fget_task()/_get_file(). */
extern void bpf_crib_put_file(struct file *file) __ksym __weak;

#endif /* __CRIB_KFUNCS_H */
