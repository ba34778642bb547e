// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: programs that use the task_file iterator,
 * its getters and bpf_fget_task() correctly must load, and run with the
 * expected result. Each SEC("syscall") program is one case; it is run with
 * BPF_PROG_RUN without a context, in the task of the runner (which holds at
 * least the program's own fd, so "current" always has files).
 *
 * Retval convention: 0 is success, a small positive number names the check
 * that failed, so a wrong __retval points at the line.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/*
 * Loop counters are globals (.bss), not locals: the return value is made
 * precise at exit, and a local counter that decides it would be precise in
 * every iteration, so the open-coded loop's states would never converge
 * (one state per count, "BPF program is too large" or "The sequence of
 * 8193 jumps is too complex"). A value loaded from a map is an unknown
 * scalar, so the loop converges after one round.
 */
int tf_n, tf_bad, tf_aux;

SEC("syscall")
__description("iterate all files of current: fds ascend, item->task is current")
__success __retval(0)
int tf_iter_all_files_current(void *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	tf_bad = 0;	/* fds out of order */
	tf_aux = -1;	/* previous fd */
	bpf_for_each(task_file, item, cur) {
		if ((int)item->fd <= tf_aux)
			tf_bad++;
		if (item->task != cur)
			tf_bad += 0x100;
		tf_aux = item->fd;
		tf_n++;
	}
	if (tf_n == 0)
		return 1;
	if (tf_bad & 0xff)
		return 2;
	if (tf_bad)
		return 3;
	return 0;
}

SEC("syscall")
__description("early break out of the loop, then destroy (explicit calls)")
__success __retval(0)
int tf_early_break_then_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	int fd = -1;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while ((item = bpf_iter_task_file_next(&it))) {
		fd = item->fd;
		break;
	}
	bpf_iter_task_file_destroy(&it);
	return fd >= 0 ? 0 : 1;
}

SEC("syscall")
__description("early break out of bpf_for_each(): its cleanup destroys")
__success __retval(0)
int tf_early_break_for_each(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		if (++tf_n == 2)
			break;
	}
	return tf_n >= 1 ? 0 : 1;
}

SEC("syscall")
__description("nested: bpf_iter_task (RCU CS) x task_file on an acquired task")
__success __retval(0)
int tf_nested_tasks_rcu_x_files(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct task_struct *pos, *t;

	tf_n = 0;	/* files */
	tf_aux = 0;	/* tasks */
	bpf_rcu_read_lock();
	bpf_for_each(task, pos, NULL, BPF_TASK_ITER_ALL_PROCS) {
		t = bpf_task_acquire(pos);
		if (!t)
			continue;
		tf_aux++;
		bpf_for_each(task_file, item, t)
			tf_n++;
		bpf_task_release(t);
	}
	bpf_rcu_read_unlock();
	if (tf_aux < 2)
		return 1;
	return tf_n > 0 ? 0 : 2;
}

SEC("syscall")
__description("nested: bpf_for() pids + bpf_task_from_pid() x task_file")
__success __retval(0)
int tf_nested_pids_x_files(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct task_struct *t;
	int pid;

	tf_n = 0;	/* files */
	tf_aux = 0;	/* tasks */
	bpf_for(pid, 1, TF_MAX_PID) {
		t = bpf_task_from_pid(pid);
		if (!t)
			continue;
		tf_aux++;
		bpf_for_each(task_file, item, t)
			tf_n++;
		bpf_task_release(t);
	}
	if (tf_aux < 2)
		return 1;
	return tf_n > 0 ? 0 : 2;
}

SEC("syscall")
__description("get_fd() before the first next() returns -ENOENT")
__success __retval(-2)
int tf_get_fd_before_first_next(void *ctx)
{
	struct bpf_iter_task_file it;
	int ret;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	ret = bpf_iter_task_file_get_fd(&it);
	bpf_iter_task_file_destroy(&it);
	return ret; /* -ENOENT */
}

SEC("syscall")
__description("get_fd() after next() returned NULL returns -ENOENT")
__success __retval(-2)
int tf_get_fd_after_end(void *ctx)
{
	struct bpf_iter_task_file it;
	int ret;

	tf_n = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it))
		tf_n++;
	ret = bpf_iter_task_file_get_fd(&it);
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return ret; /* -ENOENT */
}

SEC("syscall")
__description("get_fd() on a live iterator equals the current item's fd")
__success __retval(0)
int tf_get_fd_live(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	tf_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while ((item = bpf_iter_task_file_next(&it))) {
		if (bpf_iter_task_file_get_fd(&it) != (int)item->fd)
			tf_bad++;
		tf_n++;
	}
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

SEC("syscall")
__description("get_file() on a live iterator returns the current file; put")
__success __retval(0)
int tf_get_file_live(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	struct file *f;

	tf_n = 0;
	tf_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while ((item = bpf_iter_task_file_next(&it))) {
		f = bpf_iter_task_file_get_file(&it);
		if (!f)
			continue;	/* readable regular files only */
		if (f != item->file)
			tf_bad++;
		bpf_crib_put_file(f);
		tf_n++;
	}
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

SEC("syscall")
__description("get_file() before the first next() returns NULL")
__success __retval(0)
int tf_get_file_before_first_next(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	f = bpf_iter_task_file_get_file(&it);
	if (f) {
		bpf_crib_put_file(f);
		ret = 1;
	}
	bpf_iter_task_file_destroy(&it);
	return ret;
}

SEC("syscall")
__description("bpf_fget_task() on each fd of current, NULL-checked, put")
__success __retval(0)
int tf_fget_task_then_put(void *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct bpf_iter_task_file_item *item;
	struct file *f;

	tf_n = 0;
	tf_bad = 0;
	bpf_for_each(task_file, item, cur) {
		f = bpf_fget_task(cur, item->fd);
		if (!f)
			continue;	/* not readable regular, or closed */
		if (f != item->file)
			tf_bad++;
		bpf_crib_put_file(f);
		tf_n++;
	}
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

SEC("syscall")
__description("bpf_fget_task() on an fd that is not open returns NULL")
__success __retval(0)
int tf_fget_task_closed_fd(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0x7ffffff0);
	if (f) {
		bpf_crib_put_file(f);
		return 1;
	}
	return 0;
}

SEC("syscall")
__description("bpf_fget_task() on a bpf_task_from_pid() task, both released")
__success __retval(0)
int tf_fget_task_from_pid(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct task_struct *t;
	struct file *f;

	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	if (!t)
		return 1;
	tf_n = 0;
	bpf_for_each(task_file, item, t) {
		f = bpf_fget_task(t, item->fd);
		if (!f)
			continue;
		bpf_crib_put_file(f);
		tf_n++;
	}
	bpf_task_release(t);
	return tf_n > 0 ? 0 : 2;
}

SEC("syscall")
__description("the same stack slot is reusable after destroy()")
__success __retval(0)
int tf_reinit_after_destroy(void *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct bpf_iter_task_file it;

	tf_n = 0;
	tf_aux = 0;
	bpf_iter_task_file_new(&it, cur);
	while (bpf_iter_task_file_next(&it))
		tf_n++;
	bpf_iter_task_file_destroy(&it);

	bpf_iter_task_file_new(&it, cur);
	while (bpf_iter_task_file_next(&it))
		tf_aux++;
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0 || tf_aux == 0)
		return 1;
	return 0;
}

SEC("syscall")
__description("iterator used inside bpf_rcu_read_lock(): nothing in it sleeps")
__success __retval(0)
int tf_iter_in_rcu_cs(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_rcu_read_lock();
	bpf_for_each(task_file, item, bpf_get_current_task_btf())
		tf_n++;
	bpf_rcu_read_unlock();
	return tf_n > 0 ? 0 : 1;
}

/* ---- bpf_iter_task_file_get_path() ------------------------------------- */

char tf_path_buf[4096];

SEC("syscall")
__description("get_path() of every file: NUL at the length, some absolute")
__success __retval(0)
int tf_get_path_every_file(void *ctx)
{
	struct bpf_iter_task_file it;
	int n;

	tf_n = 0;
	tf_bad = 0;	/* a path that is not what the length says */
	tf_aux = 0;	/* absolute paths (the runner's executable, at least) */
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		tf_n++;
		n = bpf_iter_task_file_get_path(&it, tf_path_buf,
						sizeof(tf_path_buf));
		if (n < 2 || n > (int)sizeof(tf_path_buf)) {
			tf_bad++;
			continue;
		}
		if (tf_path_buf[n - 1] != 0 || tf_path_buf[n - 2] == 0)
			tf_bad++;
		if (tf_path_buf[0] == '/')
			tf_aux++;
	}
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	if (tf_bad)
		return 2;
	if (tf_aux == 0)
		return 3;
	return 0;
}

SEC("syscall")
__description("get_path() before the first next() returns -ENOENT")
__success __retval(-2)
int tf_get_path_before_first_next(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[16] = {};
	int ret;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	ret = bpf_iter_task_file_get_path(&it, buf, sizeof(buf));
	bpf_iter_task_file_destroy(&it);
	return ret; /* -ENOENT */
}

SEC("syscall")
__description("get_path() after next() returned NULL returns -ENOENT")
__success __retval(-2)
int tf_get_path_after_end(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[16] = {};
	int ret;

	tf_n = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it))
		tf_n++;
	ret = bpf_iter_task_file_get_path(&it, buf, sizeof(buf));
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return ret; /* -ENOENT */
}

SEC("syscall")
__description("get_path() into one byte: -ENAMETOOLONG (path + NUL: two)")
__success __retval(-36)
int tf_get_path_too_long_for_buf(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[1] = {};
	int ret = 1;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_task_file_get_path(&it, buf, sizeof(buf));
	bpf_iter_task_file_destroy(&it);
	return ret; /* -ENAMETOOLONG */
}

SEC("syscall")
__description("get_path() inside bpf_rcu_read_lock(): d_path() does not sleep")
__success __retval(0)
int tf_get_path_in_rcu_cs(void *ctx)
{
	struct bpf_iter_task_file it;

	tf_n = 0;
	tf_bad = 0;
	bpf_rcu_read_lock();
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		tf_n++;
		if (bpf_iter_task_file_get_path(&it, tf_path_buf,
						sizeof(tf_path_buf)) < 2)
			tf_bad++;
	}
	bpf_iter_task_file_destroy(&it);
	bpf_rcu_read_unlock();
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}
