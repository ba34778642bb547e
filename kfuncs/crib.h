/* SPDX-License-Identifier: GPL-2.0 */
/*
 * CRIB (Checkpoint/Restore In eBPF) kfuncs: definitions shared by the kfunc
 * sources. Built in-tree under kernel/bpf/crib/ and out-of-tree as the
 * crib_kfuncs module; the .c and .h files are identical in both.
 */
#ifndef _CRIB_H
#define _CRIB_H

#include <linux/btf.h>
#include <linux/types.h>

/*
 * Open-coded iterator over the files of one task.
 *
 * struct bpf_iter_task_file is the opaque state a BPF program keeps on its
 * stack; struct bpf_iter_task_file_item is what bpf_iter_task_file_next()
 * returns a pointer to (it lives inside that state). Programs find both in
 * the kernel's (or the module's) BTF, or use their own copy with CO-RE;
 * which kfuncs exist they test with bpf_ksym_exists().
 */
struct task_struct;
struct file;

/*
 * In-tree, KF_ITER_NEXT_SCOPED (include/linux/btf.h) makes the verifier
 * treat the pointers in the element returned by bpf_iter_task_file_next()
 * as trusted until the next next()/destroy() on that iterator. A stock
 * kernel lacks the flag: the module then leaves them untrusted (readable
 * with probe loads) and bpf_iter_task_file_get_file() is the way to a
 * trusted file.
 */
#ifndef KF_ITER_NEXT_SCOPED
#define KF_ITER_NEXT_SCOPED	0
#endif
/* Whether the verifier ends the element's pointers with the step */
#define CRIB_ITER_SCOPED	(KF_ITER_NEXT_SCOPED != 0)

struct bpf_iter_task_file_item {
	struct task_struct *task;
	struct file *file;
	unsigned int fd;
};

struct bpf_iter_task_file {
	__u64 __opaque[4];
} __aligned(8);

/* The current element's file of a task_file iterator, or NULL. */
struct file *crib_iter_task_file_cur(struct bpf_iter_task_file *it);

/*
 * Open-coded iterator over the queued packets of one socket.
 *
 * Queues, in the order a walk yields them. CRIB_SQ_TCP_* are the queues of
 * a TCP socket, CRIB_SQ_UDP_* of a UDP one (IPv4 or IPv6),
 * CRIB_SQ_UNIX_RECV of any AF_UNIX socket; every socket has an error
 * queue. bpf_iter_sock_queue_new() takes a mask of (1 << queue), 0 for
 * all of them.
 */
enum crib_sock_queue {
	CRIB_SQ_TCP_RECV,	/* in order, not yet read; skip: already read */
	CRIB_SQ_TCP_OFO,	/* out of order, beyond rcv_nxt */
	CRIB_SQ_TCP_RTX,	/* sent, not yet acked; skip: already acked */
	CRIB_SQ_TCP_WRITE,	/* not yet sent */
	CRIB_SQ_UDP_RECV,	/* one datagram each, oldest first */
	CRIB_SQ_UDP_CORK,	/* corked, not yet sent; skip: header room */
	CRIB_SQ_UNIX_RECV,	/* one message (dgram) or chunk (stream) each */
	CRIB_SQ_ERROR,		/* sk_error_queue; data: the packet as queued */
	CRIB_SQ_NR,
};

#define CRIB_SQ_ALL		((1U << CRIB_SQ_NR) - 1)

/* bpf_iter_sock_queue_item.flags */
#define CRIB_SQ_F_FIN		BIT(0)		/* TCP: carries a FIN */
#define CRIB_SQ_F_SYN		BIT(1)		/* TCP: carries a SYN */
#define CRIB_SQ_F_OOB		BIT(2)		/* unix stream: the OOB byte */
#define CRIB_SQ_F_V6		BIT(3)		/* UDP: src_addr is IPv6 */

/*
 * One queued packet. len bytes of data follow the first skip bytes of the
 * packet (bytes already read or acked, or header room); read them with
 * bpf_iter_sock_queue_read(). For TCP, [seq, end_seq) is the packet's
 * sequence range, skipped bytes and SYN/FIN included. For UDP receive,
 * src_addr/src_port is the sender (IPv4 in the first 4 bytes unless
 * CRIB_SQ_F_V6). For unix, nr_fds is the number of files passed with the
 * message (SCM_RIGHTS). In-tree, skb is the private copy the element was
 * taken into, trusted until the next next()/destroy(); the module leaves
 * it NULL.
 */
struct bpf_iter_sock_queue_item {
	struct sk_buff *skb;
	__u32 queue;
	__u32 len;
	__u32 skip;
	__u32 seq;
	__u32 end_seq;
	__u32 flags;
	__u32 nr_fds;
	__u16 src_port;		/* network byte order */
	__u16 __pad;
	__u8 src_addr[16];
};

struct bpf_iter_sock_queue {
	__u64 __opaque[9];
} __aligned(8);

/*
 * What bpf_iter_sock_queue_get_info() copies out: taken with the queues,
 * under the same locks, so for TCP the sequence numbers and the queued
 * lengths are consistent with each other.
 */
struct crib_sock_queue_info {
	__u32 nr[CRIB_SQ_NR];		/* elements per queue */
	__u64 bytes[CRIB_SQ_NR];	/* data bytes (len) per queue */
	__u32 snd_una;			/* TCP, at the snapshot */
	__u32 snd_nxt;
	__u32 write_seq;
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 cork_len;			/* UDP: corked payload bytes */
};

#endif /* _CRIB_H */
