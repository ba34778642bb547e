/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the sock_*.bpf.c verifier-acceptance cases (issue 7, item 8):
 * bpf_iter_task_file_get_socket() / bpf_crib_put_socket() and the socket
 * queue iterator (bpf_iter_sock_queue_*).
 *
 * The cases run in the task of the runner (crib cases / the verifier test
 * batch), which keeps sockets with known queued data open while they run
 * (harness/src/cases/run.rs, SocketFixtures):
 *  - a unix stream pair: the second end holds SOCK_FIX_UNIX_MSG, sent as one
 *    message with one passed fd (SCM_RIGHTS), the first end holds nothing;
 *  - a UDP socket on 127.0.0.1 that sent SOCK_FIX_UDP_MSG to itself: one
 *    datagram, source 127.0.0.1 and its own port;
 *  - a TCP connection over lo: the accepted end holds SOCK_FIX_TCP_MSG unread,
 *    and the listener stays open (a queue walk refuses it with -EINVAL).
 * The strings must stay equal to SOCK_FIX_*_MSG there.
 */
#ifndef __SOCK_COMMON_H
#define __SOCK_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "crib_kfuncs.h"
#include "crib_test.h"

#define SOCK_FIX_UNIX_MSG	"crib sock fixture: one unix stream message, one fd"
#define SOCK_FIX_UDP_MSG	"crib sock fixture: one udp datagram to itself"
#define SOCK_FIX_TCP_MSG	\
	"crib sock fixture: tcp bytes the server side has not read yet, over lo, 0123456789"
#define SOCK_FIX_LEN(msg)	(sizeof(msg) - 1)

/* From include/linux/socket.h, include/linux/net.h, uapi/linux/in.h. */
#define SOCK_AF_UNIX		1
#define SOCK_AF_INET		2
#define SOCK_TYPE_STREAM	1
#define SOCK_IPPROTO_TCP	6
#define SOCK_IPPROTO_UDP	17
#ifndef EPROTONOSUPPORT
#define EPROTONOSUPPORT		93
#endif

/* The largest element payload the byte-comparing cases take. */
#define SQ_DATA_MAX		128

enum sock_fix_kind {
	SOCK_K_OTHER,
	SOCK_K_UNIX,	/* AF_UNIX, SOCK_STREAM */
	SOCK_K_UDP,	/* AF_INET, UDP */
	SOCK_K_TCP,	/* AF_INET, TCP */
};

/* Which fixture kind @sock is, from sock->sk (trusted or NULL). */
static __always_inline int sock_fix_kind(struct socket *sock)
{
	struct sock *sk = sock->sk;
	int family;

	if (!sk)
		return SOCK_K_OTHER;
	family = sk->__sk_common.skc_family;
	if (family == SOCK_AF_UNIX && sk->sk_type == SOCK_TYPE_STREAM)
		return SOCK_K_UNIX;
	if (family == SOCK_AF_INET && sk->sk_protocol == SOCK_IPPROTO_UDP)
		return SOCK_K_UDP;
	if (family == SOCK_AF_INET && sk->sk_protocol == SOCK_IPPROTO_TCP)
		return SOCK_K_TCP;
	return SOCK_K_OTHER;
}

/* Is anything queued on @sock (a walk of all its queues yields an element)? */
static __always_inline bool sock_has_data(struct socket *sock)
{
	struct bpf_iter_sock_queue q;
	bool ret;

	bpf_iter_sock_queue_new(&q, sock, 0);
	ret = bpf_iter_sock_queue_next(&q) != NULL;
	bpf_iter_sock_queue_destroy(&q);
	return ret;
}

/*
 * A new reference to the first socket of current with fixture kind @kind
 * and data queued (put it with bpf_crib_put_socket()), or NULL.
 */
static __always_inline struct socket *sock_fix_find(int kind)
{
	struct bpf_iter_task_file it;
	struct socket *sock, *found = NULL;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		if (sock_fix_kind(sock) == kind && sock_has_data(sock)) {
			found = sock;
			break;
		}
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	return found;
}

#endif /* __SOCK_COMMON_H */
