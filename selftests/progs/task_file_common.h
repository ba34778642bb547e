/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the task_file_*.bpf.c verifier-acceptance cases.
 *
 * The vmlinux kfuncs the cases call (bpf_task_from_pid(), bpf_rcu_read_lock(),
 * bpf_iter_task_*(), bpf_dynptr_from_file(), ...) and BPF_TASK_ITER_ALL_PROCS
 * come from the stock vmlinux.h, which carries kfunc prototypes; the CRIB
 * kfuncs and the iterator layouts come from crib_kfuncs.h.
 */
#ifndef __TASK_FILE_COMMON_H
#define __TASK_FILE_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "crib_kfuncs.h"
#include "crib_test.h"

/* Largest pid the pid-walking nested case looks at. */
#define TF_MAX_PID	4096

/*
 * From include/linux/fs.h, uapi/linux/stat.h and errno.h (vmlinux.h carries
 * no macros).
 */
#define TF_FMODE_READ	((fmode_t)(1 << 0))
#define TF_S_IFMT	00170000
#define TF_S_IFREG	0100000
#define EBADF		9
#define EINVAL		22

/*
 * Cases that need a file reference count on at least one regular file open
 * for reading in the runner's table: the CRIB runner keeps its own
 * executable open for that (crib cases).
 */

#endif /* __TASK_FILE_COMMON_H */
