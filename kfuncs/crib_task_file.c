// SPDX-License-Identifier: GPL-2.0
/*
 * CRIB: open-coded iterator over the files of one task, bpf_fget_task() and
 * the file reference kfuncs that go with them.
 *
 * Lifetimes and locking
 * ---------------------
 * The iterator state lives on the BPF program's stack. The verifier makes
 * the program call bpf_iter_task_file_destroy() on every path once
 * bpf_iter_task_file_new() was called, and it makes every file reference
 * handed out by a KF_ACQUIRE kfunc (bpf_fget_task(),
 * bpf_iter_task_file_get_file()) be released with bpf_crib_put_file()
 * before the program exits. struct file has no kptr destructor, so such a
 * reference cannot be stashed in a map either. No reference taken here
 * therefore outlives one BPF_PROG_RUN of the program.
 *
 * While the iterator is initialized it holds
 *  - one reference on the task (get_task_struct() in _new(), dropped in
 *    _destroy()), so the task_struct stays valid across the walk;
 *  - at most one file reference: the current element's. _next() drops the
 *    previous element's file before it looks up the next one, _destroy()
 *    drops the last one.
 *
 * The descriptor table is never locked by the iterator across calls: each
 * step is one fget_task_next(), which looks at task->files under
 * task_lock() and the table under RCU and takes a reference only on a file
 * that is still installed at that index after the reference is taken. A
 * close() or dup2() racing with the walk therefore either happens before
 * the lookup (the old file is not seen) or after it (the iterator holds a
 * reference on the file that was installed at that moment, which stays a
 * valid struct file until the reference is dropped); a file is never seen
 * after its last reference is gone. An exiting task has task->files cleared
 * under task_lock() and yields nothing more.
 *
 * fput() of a reference taken here may be the last one when the target
 * closed the descriptor meanwhile. In the task context BPF_PROG_RUN runs in,
 * fput() then queues __fput() as task work of the task that runs the
 * program, which runs when it returns to user space, i.e. after the program
 * run; none of these kfuncs calls into a file's f_op. fput() is safe in the
 * atomic context of a non-sleepable program, so none of these kfuncs
 * sleeps.
 *
 * Permission is checked against the task that runs the program (current),
 * in bpf_iter_task_file_new() and bpf_fget_task(), see crib_files_access().
 * Built in, the check is the one /proc/<pid>/fd and /proc/<pid>/fdinfo
 * make; the module cannot call ptrace_may_access() and makes a stricter
 * check instead (kfuncs/README.md in the CRIB repository has the
 * comparison).
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/build_bug.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/pid.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>

#include "crib.h"

/*
 * Kernel view of struct bpf_iter_task_file. next_fd is the index the next
 * lookup starts at, or one of the two markers below once the walk is over.
 * exec_id is the low half of the task's self_exec_id when access was last
 * granted.
 */
struct bpf_iter_task_file_kern {
	struct bpf_iter_task_file_item item;
	unsigned int next_fd;
	u32 exec_id;
} __aligned(8);

/* Walk finished: end of the table, or a failed _new(). */
#define CRIB_ITER_DONE		UINT_MAX
/* Walk stopped: the task execed and access was denied on the recheck. */
#define CRIB_ITER_DENIED	(UINT_MAX - 1)

#ifdef MODULE
/*
 * ptrace_may_access() is not exported. Allow what it allows without any
 * credential check (the caller's own thread group) and otherwise require
 * CAP_SYS_PTRACE in the initial user namespace, which implies the
 * CAP_SYS_PTRACE in the target's credential and exec user namespaces that
 * ptrace_may_access() falls back to. Linux security modules are not
 * consulted.
 */
static bool crib_may_read_files(struct task_struct *task)
{
	return same_thread_group(task, current) || capable(CAP_SYS_PTRACE);
}

/*
 * fget_task() is not exported either: look up from @fd with the exported
 * fget_task_next() and keep the result only if it is at @fd itself.
 */
static struct file *crib_fget_task(struct task_struct *task, unsigned int fd)
{
	unsigned int found = fd;
	struct file *file;

	file = fget_task_next(task, &found);
	if (file && found != fd) {
		fput(file);
		file = NULL;
	}
	return file;
}
#else
/* What /proc/<pid>/fd/<n> and /proc/<pid>/fdinfo require. */
static bool crib_may_read_files(struct task_struct *task)
{
	return ptrace_may_access(task, PTRACE_MODE_READ_FSCREDS);
}

static struct file *crib_fget_task(struct task_struct *task, unsigned int fd)
{
	return fget_task(task, fd);
}
#endif

/*
 * crib_files_access() - may current look at the files of @task?
 *
 * Return: 0, -ESRCH if @task has no pid in the pid namespace of current
 * (outside of it, or already reaped), -EINVAL for a kernel thread, which
 * has no descriptor table of its own, -EACCES if access is denied.
 */
static int crib_files_access(struct task_struct *task)
{
	if (!task_pid_vnr(task))
		return -ESRCH;
	if (task->flags & PF_KTHREAD)
		return -EINVAL;
	if (!crib_may_read_files(task))
		return -EACCES;
	return 0;
}

/*
 * A reference lives for the rest of the program and can reach
 * bpf_dynptr_from_file(), whose reads in a sleepable program (SYSCALL
 * programs are) go through __kernel_read(), i.e. the file's ->read_iter.
 * For a regular file open for reading that is what pread(2) on it gives,
 * without moving f_pos. For anything else it is not a harmless look:
 * pipes, sockets, ttys, eventfd, signalfd, timerfd and most devices would
 * have data consumed; O_WRONLY files trip a WARN in __kernel_read() and
 * O_PATH files were opened without any access check. So references are
 * handed out only for regular files open for reading. The iterator still
 * lists every file, as /proc/<pid>/fd does.
 */
static bool crib_file_shareable(const struct file *file)
{
	return (file->f_mode & FMODE_READ) &&
	       S_ISREG(file_inode(file)->i_mode);
}

static u32 crib_exec_id(struct task_struct *task)
{
	return lower_32_bits(READ_ONCE(task->self_exec_id));
}

__bpf_kfunc_start_defs();

/**
 * bpf_iter_task_file_new() - initialize an iterator over a task's files
 * @it: the iterator state, on the program's stack
 * @task: the task whose descriptor table to walk
 *
 * Takes a reference on @task for the life of the iterator if current may
 * look at its files (see crib_files_access()). The iterator is initialized
 * in every case; when this fails, bpf_iter_task_file_next() yields nothing.
 * bpf_iter_task_file_destroy() must be called either way.
 *
 * Return: 0, -ESRCH if @task has no pid in current's pid namespace or has
 * no descriptor table any more (it exited), -EINVAL if @task is a kernel
 * thread, -EACCES if current may not look at @task's files.
 */
__bpf_kfunc int bpf_iter_task_file_new(struct bpf_iter_task_file *it,
				       struct task_struct *task)
{
	struct bpf_iter_task_file_kern *kit = (void *)it;
	bool has_files;
	int err;

	BUILD_BUG_ON(sizeof(struct bpf_iter_task_file_kern) !=
		     sizeof(struct bpf_iter_task_file));
	BUILD_BUG_ON(__alignof__(struct bpf_iter_task_file_kern) !=
		     __alignof__(struct bpf_iter_task_file));

	kit->item.task = NULL;
	kit->item.file = NULL;
	kit->item.fd = 0;
	kit->next_fd = CRIB_ITER_DONE;
	kit->exec_id = 0;

	err = crib_files_access(task);
	if (err)
		return err;

	task_lock(task);
	has_files = !!task->files;
	task_unlock(task);
	if (!has_files)
		return -ESRCH;

	kit->item.task = get_task_struct(task);
	kit->next_fd = 0;
	kit->exec_id = crib_exec_id(task);
	return 0;
}

/**
 * bpf_iter_task_file_next() - advance to the task's next open file
 * @it: the iterator state
 *
 * Drops the reference on the previous element's file, then takes one on
 * the file installed at the lowest descriptor above the previous one. If
 * the task has executed a new program since access was last checked,
 * checks again first and stops the walk if access is now denied
 * (bpf_iter_task_file_get_fd() then reports -EACCES).
 *
 * The element's task and file are held by the iterator; in-tree the
 * verifier lets them be passed to kfuncs taking trusted pointers for
 * exactly this step (KF_ITER_NEXT_SCOPED). Every file is listed, O_PATH
 * included: kfuncs that read a file's contents check what they read
 * themselves (bpf_dynptr_from_file() takes only regular files open for
 * reading).
 *
 * Return: the current element, valid until the next call of
 * bpf_iter_task_file_next() or bpf_iter_task_file_destroy() on @it, or
 * NULL at the end of the table, after a failed bpf_iter_task_file_new(),
 * or when the walk was stopped.
 */
__bpf_kfunc struct bpf_iter_task_file_item *
bpf_iter_task_file_next(struct bpf_iter_task_file *it)
{
	struct bpf_iter_task_file_kern *kit = (void *)it;
	struct task_struct *task = kit->item.task;
	unsigned int fd = kit->next_fd;
	struct file *file;

	if (kit->item.file) {
		fput(kit->item.file);
		kit->item.file = NULL;
	}
	if (!task || fd >= CRIB_ITER_DENIED)
		return NULL;

	if (unlikely(crib_exec_id(task) != kit->exec_id)) {
		kit->exec_id = crib_exec_id(task);
		if (crib_files_access(task)) {
			kit->next_fd = CRIB_ITER_DENIED;
			return NULL;
		}
	}

	file = fget_task_next(task, &fd);
	if (!file) {
		kit->next_fd = CRIB_ITER_DONE;
		return NULL;
	}

	kit->item.file = file;
	kit->item.fd = fd;
	kit->next_fd = fd + 1;
	return &kit->item;
}

/**
 * bpf_iter_task_file_destroy() - release an iterator over a task's files
 * @it: the iterator state
 *
 * Drops the current element's file reference, if any, and the task
 * reference.
 */
__bpf_kfunc void bpf_iter_task_file_destroy(struct bpf_iter_task_file *it)
{
	struct bpf_iter_task_file_kern *kit = (void *)it;

	if (kit->item.file)
		fput(kit->item.file);
	if (kit->item.task)
		put_task_struct(kit->item.task);
	kit->item.file = NULL;
	kit->item.task = NULL;
	kit->next_fd = CRIB_ITER_DONE;
}

/**
 * bpf_iter_task_file_get_fd() - descriptor of the iterator's current file
 * @it__iter: an initialized iterator
 *
 * Return: the descriptor number of the current element, -ENOENT if there is
 * no current element (before the first or after the last
 * bpf_iter_task_file_next(), or after a failed bpf_iter_task_file_new()),
 * -EACCES if the walk was stopped by a failed permission recheck.
 */
__bpf_kfunc int bpf_iter_task_file_get_fd(struct bpf_iter_task_file *it__iter)
{
	struct bpf_iter_task_file_kern *kit = (void *)it__iter;

	if (kit->item.file)
		return kit->item.fd;
	return kit->next_fd == CRIB_ITER_DENIED ? -EACCES : -ENOENT;
}

/**
 * bpf_iter_task_file_get_file() - new reference to the iterator's current file
 * @it__iter: an initialized iterator
 *
 * Unlike the file pointer in the element returned by
 * bpf_iter_task_file_next(), the result is a referenced pointer that other
 * kfuncs accept, and it stays valid after the iterator moves on. It must be
 * released with bpf_crib_put_file().
 *
 * Return: the current element's file with its reference count raised, or
 * NULL if there is no current element or it is not a regular file open
 * for reading.
 */
__bpf_kfunc struct file *
bpf_iter_task_file_get_file(struct bpf_iter_task_file *it__iter)
{
	struct bpf_iter_task_file_kern *kit = (void *)it__iter;

	/* The iterator holds a reference, so the count cannot be zero. */
	if (!kit->item.file || !crib_file_shareable(kit->item.file))
		return NULL;
	return get_file(kit->item.file);
}

/**
 * bpf_fget_task() - get a reference to the file at a task's descriptor
 * @task: the task whose descriptor table to look in
 * @fd: the descriptor number
 *
 * Makes the same permission check as bpf_iter_task_file_new(). The
 * reference must be released with bpf_crib_put_file().
 *
 * Return: the file installed at @fd with a new reference, or NULL if
 * nothing is installed there, it is not a regular file open for reading,
 * @task has no descriptor table, or current may not look at @task's files.
 */
__bpf_kfunc struct file *bpf_fget_task(struct task_struct *task,
				       unsigned int fd)
{
	struct file *file;

	if (crib_files_access(task))
		return NULL;
	file = crib_fget_task(task, fd);
	if (file && !crib_file_shareable(file)) {
		fput(file);
		return NULL;
	}
	return file;
}

/**
 * bpf_crib_put_file() - release a file reference obtained from CRIB kfuncs
 * @file: a file returned by bpf_fget_task() or bpf_iter_task_file_get_file()
 *
 * If this is the last reference, the file is released after the program
 * run, from task work of the task running the program.
 */
__bpf_kfunc void bpf_crib_put_file(struct file *file)
{
	fput(file);
}

__bpf_kfunc_end_defs();
