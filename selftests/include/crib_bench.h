/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Context and error slots of the task_file benchmark
 * (selftests/progs/bench_task_file.bpf.c, harness/src/bench.rs). Included by
 * the BPF program (after vmlinux.h) and by the Rust harness (through
 * bindgen, with crib_records.h), so both sides agree on the layout.
 */
#ifndef __CRIB_BENCH_H
#define __CRIB_BENCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Entries of the bench_fails array map: the first failures of a run. */
#define CRIB_BENCH_MAX_FAILS 64

/*
 * BPF_PROG_RUN context of every benchmark program: pid in, the rest out
 * (the kernel copies a SYSCALL program's context back to the caller).
 */
struct crib_bench_ctx {
	__s32 pid;		/* in: target, in the caller's pid namespace */
	__u32 nr_fds;		/* out: elements the walk returned */
	__u32 nr_nofile;	/* out: bpf_iter_task_file_get_file() returned NULL */
	__u32 nr_err;		/* out: bpf_dynptr_from_file() failed */
	__u64 fd_sum;		/* out: sum of the fds the walk returned */
	__u64 walk_ns;		/* out: bpf_ktime_get_ns() from before _new() to after _destroy() */
};

enum crib_bench_fail_kind {
	CRIB_BENCH_NOFILE = 1,	/* bpf_iter_task_file_get_file() returned NULL */
	CRIB_BENCH_DYNPTR = 2,	/* bpf_dynptr_from_file() failed with err */
};

/* One failure; slot i of bench_fails holds the i-th of a run. */
struct crib_bench_fail {
	__u32 fd;
	__u32 kind;		/* enum crib_bench_fail_kind */
	__s32 err;		/* negative errno (CRIB_BENCH_DYNPTR), else 0 */
	__u32 pad;
};

#endif /* __CRIB_BENCH_H */
