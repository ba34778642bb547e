// SPDX-License-Identifier: GPL-2.0
/*
 * KF_ITER_NEXT_SCOPED on the task_file iterator: the current element, its
 * fields and what is derived from them are trusted until the next next() or
 * destroy() of their iterator, wherever that call is made (a bpf_loop
 * callback, a subprogram), and for no longer. The cases a review asked for:
 * next() called from a bpf_loop callback through its context, the element
 * passed to a global subprogram as __arg_trusted, an iterator created from
 * an element, an inode reached from a stale element, and the state pruning
 * case with two iterators.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/* loop counters: globals, see task_file_success.bpf.c */
int tf_n, tf_bad;

/* ---- bpf_loop callbacks that move the iterator through their context ---- */

struct tf_loop_ctx {
	struct bpf_iter_task_file *it;
};

static int tf_loop_step(__u32 i, void *data)
{
	struct tf_loop_ctx *c = data;
	struct bpf_iter_task_file_item *item;

	item = bpf_iter_task_file_next(c->it);
	if (!item)
		return 1;
	if (item->task != bpf_get_current_task_btf())
		tf_bad++;
	tf_n++;
	return 0;
}

SEC("syscall")
__description("bpf_loop callback: next() through its context, then its element")
__crib_flavor("patched")
__success __retval(0)
int tf_loop_cb_next_and_use(void *ctx)
{
	struct bpf_iter_task_file it;
	struct tf_loop_ctx c = { .it = &it };

	tf_n = 0;
	tf_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_loop(1 << 16, tf_loop_step, &c, 0);
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

static int tf_loop_advance(__u32 i, void *data)
{
	struct tf_loop_ctx *c = data;

	bpf_iter_task_file_next(c->it);
	return 1;
}

SEC("syscall")
__description("caller's element after a bpf_loop callback's next() through ctx")
__crib_flavor("patched")
__failure
__msg("invalid mem access 'scalar'")
int tf_loop_cb_next_then_stale_elem(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct tf_loop_ctx c = { .it = &it };
	int fd = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		bpf_loop(1, tf_loop_advance, &c, 0);
		fd = item->fd;
	}
	bpf_iter_task_file_destroy(&it);
	return fd;
}

/* ---- a global subprogram taking the file as __arg_trusted ---------------- */

__noinline int tf_global_readable(struct file *f __arg_trusted)
{
	return (f->f_mode & TF_FMODE_READ) ? 1 : 0;
}

SEC("syscall")
__description("current item->file to a global subprogram's __arg_trusted")
__crib_flavor("patched")
__success __retval(0)
int tf_global_subprog_arg_trusted(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf())
		tf_n += tf_global_readable(item->file);
	/* the runner holds its own executable open for reading */
	return tf_n > 0 ? 0 : 1;
}

SEC("syscall")
__description("item->file saved before next() to a global __arg_trusted")
__crib_flavor("patched")
__failure
__msg("R1 type=scalar expected=ptr_, trusted_ptr_, rcu_ptr_")
int tf_global_subprog_stale_file(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct file *f;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		f = item->file;
		bpf_iter_task_file_next(&it);
		ret = tf_global_readable(f);
	}
	bpf_iter_task_file_destroy(&it);
	return ret;
}

/* ---- an iterator created from an element --------------------------------- */

SEC("syscall")
__description("iterator from item->task, walked and destroyed within the step")
__crib_flavor("patched")
__success __retval(0)
int tf_iter_from_elem(void *ctx)
{
	struct bpf_iter_task_file_item *item, *inner;
	struct bpf_iter_task_file it, it2;

	tf_n = 0;
	tf_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		bpf_iter_task_file_new(&it2, item->task);
		while ((inner = bpf_iter_task_file_next(&it2))) {
			if (inner->task != item->task)
				tf_bad++;
			tf_n++;
		}
		bpf_iter_task_file_destroy(&it2);
	}
	bpf_iter_task_file_destroy(&it);
	if (tf_n == 0)
		return 1;
	return tf_bad ? 2 : 0;
}

SEC("syscall")
__description("iterator from item->task still alive when next() ends the step")
__crib_flavor("patched")
__failure
__msg(TF_MSG_LEAK_RELEASE_FIRST)
int tf_iter_from_elem_outlives_step(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it, it2;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		bpf_iter_task_file_new(&it2, item->task);
		bpf_iter_task_file_next(&it);
		bpf_iter_task_file_destroy(&it2);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/* ---- item->file->f_inode ------------------------------------------------- */

SEC("syscall")
__description("item->file->f_inode read within the step")
__crib_flavor("patched")
__success __retval(0)
int tf_elem_inode_in_step(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	tf_n = 0;
	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		if ((item->file->f_inode->i_mode & TF_S_IFMT) == TF_S_IFREG)
			tf_n++;
	}
	return tf_n > 0 ? 0 : 1;
}

SEC("syscall")
__description("item->file->f_inode kept across next(): stale with its file")
__crib_flavor("patched")
__failure
__msg("invalid mem access 'scalar'")
int tf_elem_inode_after_next(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct inode *inode;
	int mode = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	if (item) {
		inode = item->file->f_inode;
		bpf_iter_task_file_next(&it);
		mode = inode->i_mode;
	}
	bpf_iter_task_file_destroy(&it);
	return mode;
}

/* ---- state pruning with two iterators ----------------------------------- */

/*
 * Two live iterators, one element of each. The path the verifier walks
 * first (no jump) takes it2's element into r6, the jump taken later it1's;
 * both meet at l_join, then next() on it1 ends it1's step and r6 is read.
 * The two states at l_join differ only in which iterator's step r6 belongs
 * to. If the verifier pruned the second path against the first (the same
 * registers, iterator slots equal when their step ids are not compared) it
 * would accept the read of it1's stale element; stacksafe() compares the
 * iterator slots' step ids, so the second path is walked and rejected.
 * it1 is at fp-32, it2 at fp-64 (struct bpf_iter_task_file is 32 bytes);
 * item->fd is at offset 16.
 */
SEC("syscall")
__description("pruning: one of two iterators' elements, stale on one path")
__crib_flavor("patched")
__failure
__msg("R6 invalid mem access 'scalar'")
__naked int tf_pruning_two_iterators(void)
{
	asm volatile ("call %[bpf_get_current_task_btf];"
		      "r7 = r0;"
		      "r1 = r10;"
		      "r1 += -32;"
		      "r2 = r7;"
		      "call %[bpf_iter_task_file_new];"
		      "r1 = r10;"
		      "r1 += -64;"
		      "r2 = r7;"
		      "call %[bpf_iter_task_file_new];"
		      "r1 = r10;"
		      "r1 += -32;"
		      "call %[bpf_iter_task_file_next];"
		      "r8 = r0;"
		      "r1 = r10;"
		      "r1 += -64;"
		      "call %[bpf_iter_task_file_next];"
		      "r9 = r0;"
		      "if r8 == 0 goto l_out%=;"
		      "if r9 == 0 goto l_out%=;"
		      "call %[bpf_get_prandom_u32];"
		      "if r0 == 0 goto l_it1%=;"
		      "r6 = r9;"
		      "goto l_join%=;"
		      "l_it1%=: r6 = r8;"
		      "l_join%=: r1 = r10;"
		      "r1 += -32;"
		      "call %[bpf_iter_task_file_next];"
		      "r0 = *(u32 *)(r6 + 16);"
		      "l_out%=: r1 = r10;"
		      "r1 += -64;"
		      "call %[bpf_iter_task_file_destroy];"
		      "r1 = r10;"
		      "r1 += -32;"
		      "call %[bpf_iter_task_file_destroy];"
		      "r0 = 0;"
		      "exit;"
		      :
		      : __imm(bpf_get_current_task_btf),
			__imm(bpf_get_prandom_u32),
			__imm(bpf_iter_task_file_new),
			__imm(bpf_iter_task_file_next),
			__imm(bpf_iter_task_file_destroy)
		      : __clobber_all);
}
