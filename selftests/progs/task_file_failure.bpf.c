// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: misuse of the task_file iterator, its getters,
 * bpf_fget_task() and the file references they hand out must be rejected at
 * load time, each with the exact message of the 7.3 verifier
 * (kernel/bpf/verifier.c). Register numbers in the messages are those of
 * the kfunc argument (R1 = first argument), which the calling convention
 * fixes whatever the compiler does around the call.
 */
#include "task_file_common.h"

char _license[] SEC("license") = "GPL";

/* an iterator that is not on the BPF stack (it lives in .bss) */
struct bpf_iter_task_file tf_global_it;

/* ---- iterator state ---------------------------------------------------- */

SEC("syscall")
__description("missing destroy: the iterator's reference leaks at exit")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int tf_missing_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	return item ? item->fd : 0;
}

SEC("syscall")
__description("missing destroy on one path only (early return from the loop)")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int tf_missing_destroy_one_path(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while ((item = bpf_iter_task_file_next(&it))) {
		if (item->fd == 2)
			return 1;	/* leaves without destroy */
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("next() on an iterator that was never initialized")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_next_uninit(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_next(&it);
	return 0;
}

SEC("syscall")
__description("get_fd() on an iterator that was never initialized")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_fd_uninit(void *ctx)
{
	struct bpf_iter_task_file it;

	return bpf_iter_task_file_get_fd(&it);
}

SEC("syscall")
__description("get_file() on an iterator that was never initialized")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_file_uninit(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f;

	f = bpf_iter_task_file_get_file(&it);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("destroy() on an iterator that was never initialized")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_destroy_uninit(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("next() after destroy()")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_next_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_iter_task_file_destroy(&it);
	bpf_iter_task_file_next(&it);
	return 0;
}

SEC("syscall")
__description("get_fd() after destroy()")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_fd_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_iter_task_file_next(&it);
	bpf_iter_task_file_destroy(&it);
	return bpf_iter_task_file_get_fd(&it);
}

SEC("syscall")
__description("get_file() after destroy()")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_file_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_iter_task_file_next(&it);
	bpf_iter_task_file_destroy(&it);
	f = bpf_iter_task_file_get_file(&it);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("double destroy()")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_double_destroy(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_iter_task_file_destroy(&it);
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("new() on an iterator that is already initialized")
__failure __msg("expected uninitialized iter_task_file as R1")
int tf_new_twice(void *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, cur);
	bpf_iter_task_file_new(&it, cur);
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("iterator state outside the BPF stack (global variable)")
__failure __msg("R1 expected pointer to an iterator on stack")
int tf_iter_not_on_stack(void *ctx)
{
	bpf_iter_task_file_new(&tf_global_it, bpf_get_current_task_btf());
	bpf_iter_task_file_destroy(&tf_global_it);
	return 0;
}

SEC("syscall")
__description("get_fd() given an iterator of another type (bpf_iter_num)")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_fd_wrong_iter_type(void *ctx)
{
	struct bpf_iter_num it;
	int ret;

	bpf_iter_num_new(&it, 0, 4);
	ret = bpf_iter_task_file_get_fd((struct bpf_iter_task_file *)&it);
	bpf_iter_num_destroy(&it);
	return ret;
}

/* ---- references ---------------------------------------------------------- */

SEC("syscall")
__description("bpf_fget_task() reference never put")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int tf_fget_task_leak(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0);
	return f ? 1 : 0;
}

SEC("syscall")
__description("bpf_fget_task() reference put twice")
__failure __msg(TF_MSG_PUT_UNREFERENCED)
int tf_fget_task_double_put(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0);
	if (!f)
		return 0;
	bpf_crib_put_file(f);
	bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("get_file() reference never put (break out of the loop with it)")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int tf_get_file_leak(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f = NULL;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f)
			break;
	}
	bpf_iter_task_file_destroy(&it);
	return f ? 1 : 0;
}

SEC("syscall")
__description("get_file() reference put twice")
__failure __msg(TF_MSG_PUT_UNREFERENCED)
int tf_get_file_double_put(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f) {
			bpf_crib_put_file(f);
			bpf_crib_put_file(f);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("put of item->file, a pointer the program holds no reference on")
__failure __msg(TF_MSG_PUT_UNREFERENCED)
int tf_put_unreferenced_item_file(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		bpf_crib_put_file(item->file);
		break;
	}
	return 0;
}

/* ---- NULL checks -------------------------------------------------------- */

SEC("syscall")
__description("next() result dereferenced without a NULL check")
/*
 * The verifier walks the "iteration over" branch of next() first, where R0
 * is the constant NULL (a scalar 0), so the load is refused on that path.
 */
__failure __msg("R{{[0-9]}} invalid mem access 'scalar'")
int tf_next_no_null_check(void *ctx)
{
	struct bpf_iter_task_file it;
	struct bpf_iter_task_file_item *item;
	int fd;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	item = bpf_iter_task_file_next(&it);
	fd = item->fd;
	bpf_iter_task_file_destroy(&it);
	return fd;
}

SEC("syscall")
__description("bpf_fget_task() result dereferenced without a NULL check")
__failure __msg("invalid mem access 'trusted_ptr_or_null_'")
int tf_fget_task_no_null_check(void *ctx)
{
	struct file *f;
	int flags;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0);
	flags = f->f_flags;
	bpf_crib_put_file(f);
	return flags;
}

SEC("syscall")
__description("bpf_fget_task() result put without a NULL check")
__failure __msg("Possibly NULL pointer passed to trusted R1")
int tf_fget_task_put_no_null_check(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(bpf_get_current_task_btf(), 0);
	bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("get_file() result put without a NULL check")
__failure __msg("Possibly NULL pointer passed to trusted R1")
int tf_get_file_put_no_null_check(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		bpf_crib_put_file(bpf_iter_task_file_get_file(&it));
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/* ---- writes ------------------------------------------------------------- */

SEC("syscall")
__description("patched: writing through the item (item->fd = 0)")
__crib_flavor("patched")
__failure __msg(TF_MSG_WRITE_ELEM)
int tf_patched_write_item(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		item->fd = 0;
		break;
	}
	return 0;
}

SEC("syscall")
__description("writing through the item's file (item->file->f_pos = 0)")
__failure __msg("only read is supported")
int tf_write_item_file(void *ctx)
{
	struct bpf_iter_task_file_item *item;

	bpf_for_each(task_file, item, bpf_get_current_task_btf()) {
		item->file->f_pos = 0;
		break;
	}
	return 0;
}

/* ---- task argument ------------------------------------------------------ */

SEC("syscall")
__description("new() with a NULL task")
__failure __msg("Possibly NULL pointer passed to trusted R2")
int tf_new_null_task(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, NULL);
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("new() with bpf_task_from_pid()'s result, not NULL-checked")
__failure __msg("Possibly NULL pointer passed to trusted R2")
int tf_new_unchecked_task(void *ctx)
{
	struct bpf_iter_task_file it;
	struct task_struct *t;

	t = bpf_task_from_pid(1);
	bpf_iter_task_file_new(&it, t);
	bpf_iter_task_file_destroy(&it);
	if (t)
		bpf_task_release(t);
	return 0;
}

SEC("syscall")
__description("bpf_fget_task() with a NULL task")
__failure __msg("Possibly NULL pointer passed to trusted R1")
int tf_fget_task_null_task(void *ctx)
{
	struct file *f;

	f = bpf_fget_task(NULL, 0);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("new() with an untrusted task (current->parent)")
__failure __msg("R2 must be referenced or trusted")
int tf_new_untrusted_task(void *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, cur->parent);
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("bpf_fget_task() with an untrusted task (current->parent)")
__failure __msg("R1 must be referenced or trusted")
int tf_fget_task_untrusted_task(void *ctx)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct file *f;

	f = bpf_fget_task(cur->parent, 0);
	if (f)
		bpf_crib_put_file(f);
	return 0;
}

SEC("syscall")
__description("new() on a task after bpf_task_release() dropped it")
__failure __msg("R2 is scalar expected STRUCT task_struct")
int tf_new_released_task(void *ctx)
{
	struct bpf_iter_task_file it;
	struct task_struct *t;

	t = bpf_task_from_pid(1);
	if (!t)
		return 0;
	bpf_task_release(t);
	bpf_iter_task_file_new(&it, t);
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("nested tasks x files without bpf_rcu_read_lock()")
__failure __msg(TF_MSG_NEEDS_RCU)
int tf_nested_tasks_without_rcu(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct task_struct *pos, *t;
	int files = 0;

	bpf_for_each(task, pos, NULL, BPF_TASK_ITER_ALL_PROCS) {
		t = bpf_task_acquire(pos);
		if (!t)
			continue;
		bpf_for_each(task_file, item, t)
			files++;
		bpf_task_release(t);
	}
	return files;
}

/* ---- bpf_iter_task_file_get_path() ------------------------------------- */

/* unknown to the verifier: a value loaded from .bss */
__u32 tf_path_unknown;

/* read-only memory (.rodata, frozen, BPF_F_RDONLY_PROG) */
static const char tf_path_rodata[64] = "read-only";

struct tf_path_small {
	char b[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tf_path_small);
} tf_path_small_map SEC(".maps");

SEC("syscall")
__description("get_path() on an iterator that was never initialized")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_path_uninit(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[16] = {};

	return bpf_iter_task_file_get_path(&it, buf, sizeof(buf));
}

SEC("syscall")
__description("get_path() after destroy()")
__failure __msg("expected an initialized iter_task_file as R1")
int tf_get_path_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[16] = {};

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_iter_task_file_destroy(&it);
	return bpf_iter_task_file_get_path(&it, buf, sizeof(buf));
}

SEC("syscall")
__description("get_path() into a map value smaller than buf__sz")
__failure
__msg("invalid access to map value, value_size=16 off=0 size=32")
__msg("R2 and R3 memory, len pair leads to invalid memory access")
int tf_get_path_map_value_too_small(void *ctx)
{
	struct tf_path_small *v;
	__u32 key = 0;

	v = bpf_map_lookup_elem(&tf_path_small_map, &key);
	if (!v)
		return 0;
	struct bpf_iter_task_file it;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_task_file_get_path(&it, (char *)v, 32);
	bpf_iter_task_file_destroy(&it);
	return ret;
}

SEC("syscall")
/*
 * Two texts of verifier.c, depending on where the compiler puts buf: past
 * the frame, check_stack_access_within_bounds() ("off=-8 size=16"); into
 * the next stack object, check_stack_range_initialized()
 * ("off -112+8 size 16").
 */
__description("get_path() into a stack buffer smaller than buf__sz")
__failure
__msg(TF_MSG_STACK_READ_16)
__msg("R2 and R3 memory, len pair leads to invalid memory access")
int tf_get_path_stack_too_small(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[8] = {};
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_task_file_get_path(&it, buf, 16);
	bpf_iter_task_file_destroy(&it);
	return ret;
}

SEC("syscall")
__description("get_path() with a size the verifier cannot bound")
__failure
__msg("R3 unbounded memory access, use 'var &= const' or 'if (var < const)'")
__msg("R2 and R3 memory, len pair leads to invalid memory access")
int tf_get_path_unbounded_size(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[64] = {};
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_task_file_get_path(&it, buf,
						  tf_path_unknown);
	bpf_iter_task_file_destroy(&it);
	return ret;
}

SEC("syscall")
__description("get_path() into a NULL buffer")
__failure __msg("Possibly NULL pointer passed to trusted R2")
int tf_get_path_null_buf(void *ctx)
{
	struct bpf_iter_task_file it;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_task_file_get_path(&it, NULL, 16);
	bpf_iter_task_file_destroy(&it);
	return ret;
}

SEC("syscall")
__description("get_path() into read-only memory (.rodata)")
__failure
__msg("write into map forbidden, value_size=64 off=0 size=16")
__msg("R2 and R3 memory, len pair leads to invalid memory access")
int tf_get_path_into_rodata(void *ctx)
{
	struct bpf_iter_task_file it;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_task_file_get_path(&it,
						  (char *)tf_path_rodata, 16);
	bpf_iter_task_file_destroy(&it);
	return ret;
}
