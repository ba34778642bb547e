// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: how long a socket queue element, and the skb
 * it names, may be used. Two kernels, two answers (as for task_file, see
 * task_file_lifetime.bpf.c):
 * - stock 7.3 + module: bpf_iter_sock_queue_next() has no
 *   KF_ITER_NEXT_SCOPED, so the element is a trusted pointer into the
 *   iterator state on the program's stack with no lifetime the verifier
 *   knows, and item->skb a plain field load, hence PTR_UNTRUSTED (probe
 *   reads). The module makes that safe at run time: it leaves item->skb
 *   NULL, and a stale element shows the iterator's current state (zeroes
 *   once the walk ended or the iterator was destroyed), never freed memory.
 *   The stock cases check both.
 * - patched kernel (KF_ITER_NEXT_SCOPED, kernel-patches/0001): the element
 *   and item->skb are trusted for exactly the current step; next()/destroy()
 *   invalidate every copy ("iterator advance/destroy invalidated this
 *   pointer"), and writes through the element are refused.
 * The patched cases are written against the design; the in-tree kfuncs
 * were not in kernel-patches/ when they were added, so they have not run.
 */
#include "sock_common.h"

char _license[] SEC("license") = "GPL";

int sq_n, sq_bad;

/* ---- writes through the element ---------------------------------------------------- */

SEC("syscall")
__description("stock: writing through the queue element (item->len = 0)")
__crib_flavor("stock")
__failure __msg("only read is supported")
int sq_stock_write_item(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct socket *sock;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_for_each(sock_queue, item, sock, 0) {
		item->len = 0;
		break;
	}
	bpf_crib_put_socket(sock);
	return 0;
}

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: writing through the queue element (item->len = 0), a step-scoped element")
__crib_flavor("patched")
__failure __msg("R{{[0-9]}} cannot write into iterator element ptr_bpf_iter_sock_queue_item")
int sq_patched_write_item(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct socket *sock;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_for_each(sock_queue, item, sock, 0) {
		item->len = 0;
		break;
	}
	bpf_crib_put_socket(sock);
	return 0;
}

/* ---- item->skb ------------------------------------------------------------------------ */

SEC("syscall")
__description("stock: item->skb is NULL for every element of the runner's sockets")
__crib_flavor("stock")
__success __retval(0)
int sq_stock_item_skb_null(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_task_file it;
	struct socket *sock;

	sq_n = 0;
	sq_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		bpf_for_each(sock_queue, item, sock, 0) {
			sq_n++;
			if (item->skb)
				sq_bad++;
		}
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	if (sq_n < 3)
		return 1;	/* the three fixtures' elements */
	return sq_bad ? 2 : 0;
}

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: item->skb is the element's private copy: trusted, skb->len == skip + len")
__crib_flavor("patched")
__success __retval(0)
int sq_patched_item_skb_current(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_task_file it;
	struct socket *sock;
	struct sk_buff *skb;

	sq_n = 0;
	sq_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		bpf_for_each(sock_queue, item, sock, 0) {
			sq_n++;
			skb = item->skb;
			if (!skb)
				sq_bad++;
			else if (skb->len != item->skip + item->len)
				sq_bad++;
		}
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	if (sq_n < 3)
		return 1;
	return sq_bad ? 2 : 0;
}

/* ---- a stale element: after next() / destroy() -------------------------------------------- */

/*
 * The unix fixture has exactly one element: the second next() ends the
 * walk. Stock: the saved element then reads as zeroes (next() cleared it),
 * and its saved skb (NULL) reads as 0 through a probe read.
 */
#define SQ_STALE_AFTER_NEXT(stale_use)						\
	struct bpf_iter_sock_queue_item *item;					\
	struct bpf_iter_sock_queue q;						\
	struct socket *sock;							\
	struct sk_buff *skb __attribute__((unused));			\
	int ret = 0;								\
	__u32 len;								\
										\
	sock = sock_fix_find(SOCK_K_UNIX);					\
	if (!sock)								\
		return 1;							\
	bpf_iter_sock_queue_new(&q, sock, 0);					\
	item = bpf_iter_sock_queue_next(&q);					\
	if (!item) {								\
		ret = 2;							\
	} else {								\
		skb = item->skb;						\
		len = item->len;						\
		if (bpf_iter_sock_queue_next(&q))				\
			ret = 3;						\
		else if (len != SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG))		\
			ret = 4;						\
		else								\
			stale_use;						\
	}									\
	bpf_iter_sock_queue_destroy(&q);					\
	bpf_crib_put_socket(sock);						\
	return ret

SEC("syscall")
__description("stock: an element kept past next() reads as the iterator's state (zeroes at the end)")
__crib_flavor("stock")
__success __retval(0)
int sq_stock_stale_item_after_next(void *ctx)
{
	SQ_STALE_AFTER_NEXT(ret = item->len || item->queue || item->skb ? 5 : 0);
}

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: an element kept past next() is invalidated by that next()")
__crib_flavor("patched")
__failure
__msg("R{{[0-9]}} invalid mem access 'scalar'")
__msg("iterator advance invalidated this pointer")
int sq_patched_stale_item_after_next(void *ctx)
{
	SQ_STALE_AFTER_NEXT(ret = item->len || item->queue || item->skb ? 5 : 0);
}

SEC("syscall")
__description("stock: item->skb kept past next() is an untrusted NULL: a probe read gives 0")
__crib_flavor("stock")
__success __retval(0)
int sq_stock_stale_skb_after_next(void *ctx)
{
	SQ_STALE_AFTER_NEXT(ret = skb->len ? 5 : 0);
}

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: item->skb kept past next() is invalidated by that next()")
__crib_flavor("patched")
__failure
__msg("R{{[0-9]}} invalid mem access 'scalar'")
__msg("iterator advance invalidated this pointer")
int sq_patched_stale_skb_after_next(void *ctx)
{
	SQ_STALE_AFTER_NEXT(ret = skb->len ? 5 : 0);
}

/* The same across destroy(): destroy() clears the whole iterator state. */
#define SQ_STALE_AFTER_DESTROY(stale_use)					\
	struct bpf_iter_sock_queue_item *item;					\
	struct bpf_iter_sock_queue q;						\
	struct socket *sock;							\
	struct sk_buff *skb __attribute__((unused));			\
	int ret = 0;								\
										\
	sock = sock_fix_find(SOCK_K_UNIX);					\
	if (!sock)								\
		return 1;							\
	bpf_iter_sock_queue_new(&q, sock, 0);					\
	item = bpf_iter_sock_queue_next(&q);					\
	if (!item) {								\
		bpf_iter_sock_queue_destroy(&q);				\
		bpf_crib_put_socket(sock);					\
		return 2;							\
	}									\
	skb = item->skb;							\
	bpf_iter_sock_queue_destroy(&q);					\
	stale_use;								\
	bpf_crib_put_socket(sock);						\
	return ret

SEC("syscall")
__description("stock: an element kept past destroy() reads as zeroes")
__crib_flavor("stock")
__success __retval(0)
int sq_stock_stale_item_after_destroy(void *ctx)
{
	SQ_STALE_AFTER_DESTROY(ret = item->len || item->seq || item->nr_fds ? 5 : 0);
}

/* Patched kernel: KF_ITER_NEXT_SCOPED (kernel-patches/0001) makes the element trusted for one step. */
SEC("syscall")
__description("patched: item->skb kept past destroy() is invalidated by destroy()")
__crib_flavor("patched")
__failure
__msg("R{{[0-9]}} invalid mem access 'scalar'")
__msg("iterator destroy invalidated this pointer")
int sq_patched_stale_skb_after_destroy(void *ctx)
{
	SQ_STALE_AFTER_DESTROY(ret = skb->len ? 5 : 0);
}
