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
 *
 * Permission is checked against the task that runs the program (current):
 * in bpf_iter_task_file_new(), again before every step of
 * bpf_iter_task_file_next(), and in bpf_fget_task(), see
 * crib_access_lock(). Each check and the lookup that follows it are made
 * under the target's exec_update_lock held for reading, as pidfd_getfd()
 * does, so an exec that changes the target's credentials comes entirely
 * before or entirely after both; a credential change or PR_SET_DUMPABLE
 * without exec is caught by the next step's check. The lock is never held
 * across program code. Built in, the check is the one pidfd_getfd() makes;
 * the module cannot call ptrace_may_access() and makes a stricter check
 * instead (kfuncs/README.md in the CRIB repository has the comparison).
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/build_bug.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/dcache.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/limits.h>
#include <linux/minmax.h>
#include <linux/pid.h>
#include <linux/ptrace.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>

#include "crib.h"

/*
 * Kernel view of struct bpf_iter_task_file. next_fd is the index the next
 * lookup starts at, or CRIB_ITER_DONE once the walk is over. err is 0, or
 * why a walk was stopped before the end of the table (a failed check of
 * crib_access_lock() in bpf_iter_task_file_next()).
 */
struct bpf_iter_task_file_kern {
	struct bpf_iter_task_file_item item;
	unsigned int next_fd;
	int err;
} __aligned(8);

/* Walk over: end of the table, a failed _new(), or stopped (err). */
#define CRIB_ITER_DONE		UINT_MAX

#ifdef MODULE
/*
 * ptrace_may_access() is not exported. Allow what it allows without any
 * credential check (the caller's own thread group) and otherwise require
 * CAP_SYS_PTRACE in the initial user namespace. That implies the
 * CAP_SYS_PTRACE in the target's credential and exec user namespaces that
 * ptrace_may_access() falls back to in every mode, so this is at least as
 * strict on credentials and dumpability as PTRACE_MODE_ATTACH_REALCREDS
 * (what pidfd_getfd() requires, see below). Linux security modules are not
 * consulted: Yama's ptrace_scope 3 and SELinux, AppArmor or Smack ptrace
 * rules do not stop a CAP_SYS_PTRACE holder here.
 */
static bool crib_may_access_files(struct task_struct *task)
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
/*
 * pidfd_getfd() (__pidfd_fget() in kernel/pid.c) hands out a file of
 * another task only with PTRACE_MODE_ATTACH_REALCREDS: the caller can then
 * read through it although it might not have been allowed to open it.
 * Every file these kfuncs yield can be read that way: the current
 * element's item->file is trusted (KF_ITER_NEXT_SCOPED), the files from
 * bpf_iter_task_file_get_file() and bpf_fget_task() are acquired, and
 * bpf_dynptr_from_file() reads through either. So all of them require what
 * pidfd_getfd() requires. The PTRACE_MODE_READ_FSCREDS of procfs
 * (proc_fdinfo_permission(), call_proc_get_link()) is enough there only
 * because opening /proc/<pid>/fd/<n> opens the file anew, with the
 * caller's own permission check on the inode; nothing here does that.
 */
static bool crib_may_access_files(struct task_struct *task)
{
	return ptrace_may_access(task, PTRACE_MODE_ATTACH_REALCREDS);
}

static struct file *crib_fget_task(struct task_struct *task, unsigned int fd)
{
	return fget_task(task, fd);
}
#endif

/*
 * crib_access_lock() - check that current may have the files of @task
 * @task: the task whose files are to be looked up
 *
 * On success, returns with @task's exec_update_lock held for reading; the
 * caller looks up what it needs and then calls crib_access_unlock(), as
 * __pidfd_fget() does. begin_new_exec() holds that lock for writing from
 * before it replaces the descriptor table and closes the close-on-exec
 * files until after commit_creds(), so the check and the lookup see the
 * task both before such an exec or both after it.
 *
 * Only a trylock: these kfuncs may be called from non-sleepable programs
 * and inside bpf_rcu_read_lock() sections, like the task_vma iterator,
 * which uses mmap_read_trylock() for the same reason. The read side fails
 * only while a writer holds or waits for the lock, i.e. while @task is in
 * the middle of an exec.
 *
 * Return: 0, -ESRCH if @task has no pid in the pid namespace of current
 * (outside of it, or already reaped), -EINVAL for a kernel thread, which
 * has no descriptor table of its own, -EBUSY if @task is executing a new
 * program, -EACCES if access is denied.
 */
static int crib_access_lock(struct task_struct *task)
{
	if (!task_pid_vnr(task))
		return -ESRCH;
	if (task->flags & PF_KTHREAD)
		return -EINVAL;
	if (!down_read_trylock(&task->signal->exec_update_lock))
		return -EBUSY;
	if (!crib_may_access_files(task)) {
		up_read(&task->signal->exec_update_lock);
		return -EACCES;
	}
	return 0;
}

static void crib_access_unlock(struct task_struct *task)
{
	up_read(&task->signal->exec_update_lock);
}

/*
 * A reference lives for the rest of the program and can reach
 * bpf_dynptr_from_file(), whose reads in a sleepable program (SYSCALL
 * programs are) go through __kernel_read(), i.e. the file's ->read_iter.
 * That is a harmless look only where pread(2) would be one: a file open
 * for reading whose reads at an offset do not consume anything. So
 * references are handed out only for what pread(2) accepts (FMODE_PREAD:
 * cleared by stream_open() and nonseekable_open(), as for tracefs's
 * trace_pipe or a FUSE file opened with FOPEN_STREAM, which are regular
 * files whose reads consume data) and, of those, only regular files:
 * pipes, sockets, ttys, eventfd, signalfd and timerfd are not pread-able,
 * and character devices may be but their reads can have side effects. A
 * file without FMODE_READ would trip a WARN in __kernel_read(); O_PATH
 * files were opened without any access check. The iterator still lists
 * every file, as /proc/<pid>/fd does.
 */
static bool crib_file_shareable(const struct file *file)
{
	return (file->f_mode & FMODE_READ) && (file->f_mode & FMODE_PREAD) &&
	       S_ISREG(file_inode(file)->i_mode);
}

struct file *crib_iter_task_file_cur(struct bpf_iter_task_file *it)
{
	return ((struct bpf_iter_task_file_kern *)it)->item.file;
}

__bpf_kfunc_start_defs();

/**
 * bpf_iter_task_file_new() - initialize an iterator over a task's files
 * @it: the iterator state, on the program's stack
 * @task: the task whose descriptor table to walk
 *
 * Takes a reference on @task for the life of the iterator if current may
 * have its files (see crib_access_lock()). The iterator is initialized in
 * every case; when this fails, bpf_iter_task_file_next() yields nothing.
 * bpf_iter_task_file_destroy() must be called either way.
 *
 * Return: 0, -ESRCH if @task has no pid in current's pid namespace or has
 * no descriptor table any more (it exited), -EINVAL if @task is a kernel
 * thread, -EBUSY if @task is in the middle of an exec, -EACCES if current
 * may not have @task's files.
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
	kit->err = 0;

	err = crib_access_lock(task);
	if (err)
		return err;
	task_lock(task);
	has_files = !!task->files;
	task_unlock(task);
	crib_access_unlock(task);
	if (!has_files)
		return -ESRCH;

	kit->item.task = get_task_struct(task);
	kit->next_fd = 0;
	return 0;
}

/**
 * bpf_iter_task_file_next() - advance to the task's next open file
 * @it: the iterator state
 *
 * Drops the reference on the previous element's file, checks again that
 * current may have the task's files, and takes a reference on the file
 * installed at the lowest descriptor above the previous one, with the
 * check and the lookup under the task's exec_update_lock. So access lost
 * since the previous step, by an exec of a setuid program, a credential
 * change or PR_SET_DUMPABLE, stops the walk before its next element. A
 * stopped walk is not an end of the table:
 * bpf_iter_task_file_get_fd() then returns the reason.
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
	int err;

	if (kit->item.file) {
		fput(kit->item.file);
		kit->item.file = NULL;
	}
	if (!task || fd == CRIB_ITER_DONE)
		return NULL;

	err = crib_access_lock(task);
	if (err) {
		kit->err = err;
		kit->next_fd = CRIB_ITER_DONE;
		return NULL;
	}
	file = fget_task_next(task, &fd);
	crib_access_unlock(task);
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
 * Also tells a walk that was stopped from one that reached the end of the
 * table: call it after bpf_iter_task_file_next() returned NULL.
 *
 * Return: the descriptor number of the current element; if there is none,
 * the reason bpf_iter_task_file_next() stopped the walk before the end of
 * the table: -EACCES (access lost: the task executed a setuid program,
 * changed its credentials or became non-dumpable), -EBUSY (the task was
 * in the middle of an exec), -ESRCH (the task was reaped); otherwise
 * -ENOENT (before the first or after the last element, or after a failed
 * bpf_iter_task_file_new()).
 */
__bpf_kfunc int bpf_iter_task_file_get_fd(struct bpf_iter_task_file *it__iter)
{
	struct bpf_iter_task_file_kern *kit = (void *)it__iter;

	if (kit->item.file)
		return kit->item.fd;
	return kit->err ?: -ENOENT;
}

/**
 * bpf_iter_task_file_get_file() - new reference to the iterator's current file
 * @it__iter: an initialized iterator
 *
 * Unlike the file pointer in the element returned by
 * bpf_iter_task_file_next(), the result is a referenced pointer that other
 * kfuncs accept, and it stays valid after the iterator moves on. It must be
 * released with bpf_crib_put_file(). Access was checked when the iterator
 * took the current element.
 *
 * Return: the current element's file with its reference count raised, or
 * NULL if there is no current element or it is not a regular file open
 * for reading with pread(2) semantics (see crib_file_shareable()).
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
 * bpf_iter_task_file_get_path() - path of the iterator's current file
 * @it__iter: an initialized iterator
 * @buf: where the path is written
 * @buf__sz: size of @buf in bytes
 *
 * Writes the path of the current element's file the way readlink(2) of
 * /proc/<pid>/fd/<fd> shows it to the task running the program
 * (do_proc_readlink() in fs/proc/base.c): d_path() relative to that task's
 * root, " (deleted)" after the name of an unlinked file, and for files
 * that have no name in a file system tree, the name their dentry
 * operations give ("pipe:[<ino>]", "socket:[<ino>]",
 * "anon_inode:[eventfd]"). At most PATH_MAX bytes are used, as procfs
 * does, so a path procfs cannot show fails here too. Unlike readlink(2),
 * the result is NUL-terminated.
 *
 * No check beyond the iterator's own is made, as for
 * bpf_iter_task_file_get_fd(): procfs shows that link after
 * ptrace_may_access(PTRACE_MODE_READ_FSCREDS) (proc_fd_access_allowed()),
 * and the iterator took the current element after crib_access_lock()
 * allowed it; built in, that is PTRACE_MODE_ATTACH_REALCREDS, which
 * implies the procfs check (the module's check is described at
 * crib_may_access_files()). d_path() takes no sleeping lock, so this may
 * be called from non-sleepable programs too.
 *
 * Return: the length of the path including the terminating NUL; -EINVAL
 * if @buf__sz is 0, -ENOENT if there is no current element, -ENAMETOOLONG
 * if the path does not fit in @buf (or in PATH_MAX bytes).
 */
__bpf_kfunc int bpf_iter_task_file_get_path(struct bpf_iter_task_file *it__iter,
					    char *buf, size_t buf__sz)
{
	struct bpf_iter_task_file_kern *kit = (void *)it__iter;
	int size = min_t(size_t, buf__sz, PATH_MAX);
	char *path;
	int len;

	if (!size)
		return -EINVAL;
	if (!kit->item.file)
		return -ENOENT;
	path = d_path(&kit->item.file->f_path, buf, size);
	if (IS_ERR(path))
		return PTR_ERR(path);
	len = buf + size - path;
	memmove(buf, path, len);
	return len;
}

/**
 * bpf_fget_task() - get a reference to the file at a task's descriptor
 * @task: the task whose descriptor table to look in
 * @fd: the descriptor number
 *
 * Makes the same permission check as bpf_iter_task_file_new(), under the
 * task's exec_update_lock. The reference must be released with
 * bpf_crib_put_file().
 *
 * Return: the file installed at @fd with a new reference, or NULL if
 * nothing is installed there, it is not a regular file open for reading
 * with pread(2) semantics,
 * @task has no descriptor table, is in the middle of an exec, or current
 * may not have @task's files.
 */
__bpf_kfunc struct file *bpf_fget_task(struct task_struct *task,
				       unsigned int fd)
{
	struct file *file;

	if (crib_access_lock(task))
		return NULL;
	file = crib_fget_task(task, fd);
	crib_access_unlock(task);
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
