/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the task_file iterator's verifier-acceptance cases. One source,
 * two builds: these files are the CRIB repository's selftests/progs/
 * task_file_*.bpf.c, and the series carries them byte for byte as
 * tools/testing/selftests/bpf/progs/crib_task_file_*.c.
 *
 * In-tree (bpf_misc.h is next to this file): test_loader's annotations
 * from bpf_misc.h; the CRIB kfuncs' prototypes and iterator types come from
 * the vmlinux.h of a kernel with the series, and the vmlinux kfuncs the
 * cases call (bpf_task_from_pid(), bpf_rcu_read_lock(), bpf_iter_task_*(),
 * bpf_dynptr_from_file(), ...) from the same vmlinux.h.
 *
 * In the CRIB harness: the same annotations from crib_test.h and the CRIB
 * kfuncs from crib_kfuncs.h, which also serve the out-of-tree module on a
 * kernel without the series, whose vmlinux.h has neither.
 */
#ifndef __TASK_FILE_COMMON_H
#define __TASK_FILE_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#if __has_include("bpf_misc.h")
#include "bpf_misc.h"
/*
 * The CRIB harness's own annotations, which test_loader does not have: the
 * kernel a case is for (in-tree, always the one with the series) and the
 * errno of a load refused before the verifier runs.
 */
#define __crib_flavor(name)
#define __crib_load_errno(err)
#define __crib_load_errno_unpriv(err)
#else
#include "crib_kfuncs.h"
#include "crib_test.h"
#endif

/* Largest pid the pid-walking nested case looks at. */
#define TF_MAX_PID	4096

/*
 * From include/linux/fs.h, uapi/linux/stat.h and errno.h (vmlinux.h carries
 * no macros).
 */
#define TF_FMODE_READ	((fmode_t)(1 << 0))
#define TF_S_IFMT	00170000
#define TF_S_IFREG	0100000
#ifndef EBADF
#define EBADF		9
#endif
#ifndef EINVAL
#define EINVAL		22
#endif
#ifndef ENAMETOOLONG
#define ENAMETOOLONG	36
#endif

/* Verifier messages longer than a line. */
#define TF_MSG_LEAK_RELEASE_FIRST "Leaking reference id={{[0-9]+}} alloc_insn={{[0-9]+}}. Release it first."
#define TF_MSG_UNRELEASED "Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}"
#define TF_MSG_EXIT_LEAK "BPF_EXIT instruction in main prog would lead to reference leak"
#define TF_MSG_PUT_UNREFERENCED "release kfunc bpf_crib_put_file expects referenced PTR_TO_BTF_ID passed to R1"
#define TF_MSG_WRITE_ELEM "R{{[0-9]}} cannot write into iterator element ptr_bpf_iter_task_file_item"
#define TF_MSG_NEEDS_RCU "kernel func bpf_iter_task_new requires RCU critical section protection"
#define TF_MSG_STACK_READ_16 "invalid read from stack R2 off{{(=-[0-9]+ size=| -[0-9]+[+][0-9]+ size )}}16"
#define TF_MSG_ITEM_NEEDS_PERFMON "'struct bpf_iter_task_file_item' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN"
#define TF_MSG_GET_FD_NOT_ALLOWED "calling kernel function bpf_iter_task_file_get_fd is not allowed"

/*
 * Cases that need a file reference count on at least one regular file open
 * for reading in the table of the task that runs them: the CRIB runner keeps
 * its own executable open, prog_tests/crib_task_file.c opens /proc/self/exe.
 */

#endif /* __TASK_FILE_COMMON_H */
