// SPDX-License-Identifier: GPL-2.0
/*
 * CRIB: the socket of a file, and an open-coded iterator over the packets
 * queued on a socket.
 *
 * Lifetimes
 * ---------
 * bpf_iter_task_file_get_socket() hands out the current element's socket
 * with a new reference on its file: a socket lives exactly as long as its
 * file, so that reference keeps both the struct socket and its sk valid.
 * bpf_crib_put_socket() drops it. As for files, the verifier makes the
 * program release it before it exits, and struct socket has no kptr
 * destructor, so it cannot be stashed in a map: it never outlives one
 * BPF_PROG_RUN.
 *
 * The queue iterator never hands out a packet of the socket itself.
 * bpf_iter_sock_queue_new() takes a snapshot: with the queue's owner lock
 * held it walks the queues and takes a private copy of each packet into a
 * list that belongs to the iterator alone, then drops the lock before it
 * returns. next() yields the copies one by one and frees the previous one;
 * destroy() frees what is left. So no socket lock is ever held across
 * program code, a walk cannot see a packet change or go away under it, and
 * the socket's queues are never changed by a dump: the application reads
 * the same bytes afterwards.
 *
 * A module on a stock kernel cannot tie a pointer to one step of the walk,
 * so there item->skb stays NULL and a program reads the bytes only through
 * bpf_iter_sock_queue_read(), which reads the current copy: whatever a
 * program keeps from an element it can only read stale values, never freed
 * memory. In-tree, KF_ITER_NEXT_SCOPED makes item->skb a trusted pointer
 * to the current copy for exactly one step.
 *
 * Locking, per queue
 * ------------------
 *  - TCP: every queue (receive, out of order, retransmit, write) is changed
 *    only by the socket's owner; lock_sock() makes us the owner, and
 *    packets arriving meanwhile wait in the backlog. Queued TCP packets are
 *    not immutable, but what changes is their metadata, not their bytes:
 *    the tail of the receive queue takes coalesced data (appended to its
 *    linear tail room or as new frags), the tail of the write queue takes
 *    appended data (new frags, or a last frag grown into the page beyond
 *    its end), unsent packets are split or trimmed in place by rewriting the
 *    frag array (tso_fragment(), tcp_mtu_probe()). Bytes already queued are
 *    never written again by the kernel (pages spliced from a file or sent
 *    with MSG_ZEROCOPY stay the application's to write, as while they wait
 *    to be sent), and a page-frag allocator reuses a page only when it
 *    holds the last reference (skb_page_frag_refill()). So each packet of
 *    the retransmit and write queues is copied with pskb_copy(): a private
 *    sk_buff, linear part and frag array, with a reference on each page (and
 *    on a frag_list, which the stack clones before it changes a shared one).
 *    Packets of the receive and out-of-order queues are only ever grown by
 *    skb_try_coalesce(), which leaves a cloned packet alone, so for them a
 *    clone (shared, refcounted head and frag array) is a private copy: while
 *    the snapshot lives, data arriving for the tail packet goes into a packet
 *    of its own instead, as when a packet tap holds a clone. The write queue
 *    cannot be cloned: tso_fragment() and tcp_mtu_probe() rewrite unsent
 *    packets' frag arrays without checking for clones. GFP_KERNEL, as the
 *    owner may sleep.
 *  - UDP receive: udp_recvmsg() takes no socket lock. It takes the
 *    reader_queue lock, then sk_receive_queue's; so do we. Queued
 *    datagrams are never changed, so a clone (shared, refcounted data) is
 *    a private copy. Datagrams on the per-NUMA staging list (udp_prod_queue)
 *    are not walked: each is being moved to sk_receive_queue by the softirq
 *    that queued the list's first entry, which holds or is about to take
 *    sk_receive_queue's lock; recvmsg() cannot see them yet either, and the
 *    lockless list cannot be walked while that softirq may take it over.
 *  - UDP corked send data: sk_write_queue under lock_sock(), appended to in
 *    place by ip_append_data(): copied whole.
 *  - unix: readers hold u->iolock and advance the consumed count under it;
 *    writers append to the queue under its lock. We take both, in that
 *    order; queued messages are not changed once queued: clones.
 *  - Error queue: its queue lock with interrupts off; clones.
 * All allocations are charged to the dumper's memory cgroup, and a snapshot
 * is limited to CRIB_SQ_MAX_BYTES of packet data.
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/build_bug.h>
#include <linux/file.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/skbuff.h>
#include <linux/skmsg.h>
#include <linux/slab.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <net/af_unix.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>
#include <net/tcp.h>

/* net/unix/af_unix.h: UNIXCB(), for the consumed count and passed files. */
#if IS_ENABLED(CONFIG_UNIX) && __has_include("af_unix.h")
#include "af_unix.h"
#define CRIB_HAVE_UNIXCB	1
#else
#define CRIB_HAVE_UNIXCB	0
#endif

#include "crib.h"

/* At most this many bytes of packets are copied into one snapshot. */
#define CRIB_SQ_MAX_BYTES	(64U << 20)

struct crib_sq_snap {
	struct sk_buff_head skbs;	/* private copies, in walk order */
	struct crib_sock_queue_info info;
	u64 total;			/* skb->len of every copy */
};

/* Kernel view of struct bpf_iter_sock_queue. */
struct bpf_iter_sock_queue_kern {
	struct bpf_iter_sock_queue_item item;
	struct crib_sq_snap *snap;
	struct sk_buff *cur;		/* copy behind item, or NULL */
} __aligned(8);

/*
 * Each copy carries its element in its control block until next() turns it
 * into the program's struct bpf_iter_sock_queue_item.
 */
struct crib_sq_cb {
	u32 queue;
	u32 len;
	u32 skip;
	u32 seq;
	u32 end_seq;
	u32 flags;
	u32 nr_fds;
	__be16 src_port;
	u8 src_addr[16];
};

static struct crib_sq_cb *crib_sq_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct crib_sq_cb) >
		     sizeof_field(struct sk_buff, cb));
	return (struct crib_sq_cb *)skb->cb;
}

/*
 * crib_sq_add() - add a private copy of @skb to @snap as an element of @queue
 *
 * @copy is a clone (for packets not changed while cloned), a copy of the
 * metadata sharing the bytes (TCP send queues) or a full copy of @skb, already
 * allocated. @skip leading bytes of @skb are not data. Returns the element
 * to fill in further, or an ERR_PTR.
 */
static struct crib_sq_cb *
crib_sq_add(struct crib_sq_snap *snap, struct sk_buff *copy,
	    enum crib_sock_queue queue, u32 skip)
{
	struct crib_sq_cb *item;

	if (!copy)
		return ERR_PTR(-ENOMEM);
	snap->total += copy->len;
	if (snap->total > CRIB_SQ_MAX_BYTES) {
		consume_skb(copy);
		return ERR_PTR(-E2BIG);
	}
	skip = min(skip, copy->len);
	memset(copy->cb, 0, sizeof(copy->cb));
	item = crib_sq_cb(copy);
	item->queue = queue;
	item->skip = skip;
	item->len = copy->len - skip;
	snap->info.nr[queue]++;
	snap->info.bytes[queue] += item->len;
	__skb_queue_tail(&snap->skbs, copy);
	return item;
}

static bool crib_sq_want(u32 mask, enum crib_sock_queue queue)
{
	return mask & (1U << queue);
}

/* Data kept away from the socket's own queues: a ULP (kTLS, MPTCP) or a
 * sockmap's psock. Called with the socket locked.
 */
static bool crib_sk_data_elsewhere(struct sock *sk)
{
	bool psock;

	if (inet_csk_has_ulp(sk))
		return true;
	rcu_read_lock();
	psock = !!sk_psock(sk);
	rcu_read_unlock();
	return psock;
}

/*
 * A private copy of a TCP packet (a clone, or pskb_copy(); the bytes are
 * shared, see "Locking, per queue" above). Packets of the write and retransmit
 * queues use skb->tcp_tsorted_anchor (tp->tsorted_sent_queue), which shares
 * its memory with _skb_refdst: copied as it is, the copy would take a
 * reference on a "dst" that is the list's pointer and drop it when freed.
 * TCP clears it around its own clones the same way (__tcp_transmit_skb());
 * the socket is locked, so nothing else looks at the anchor meanwhile.
 */
static struct sk_buff *crib_sq_tcp_copy(struct sk_buff *skb,
					enum crib_sock_queue queue)
{
	struct sk_buff *copy;

	if (queue == CRIB_SQ_TCP_RECV || queue == CRIB_SQ_TCP_OFO)
		return skb_clone(skb, GFP_KERNEL_ACCOUNT);
	tcp_skb_tsorted_save(skb) {
		copy = pskb_copy(skb, GFP_KERNEL_ACCOUNT);
	} tcp_skb_tsorted_restore(skb);
	return copy;
}

static int crib_sq_tcp_one(struct crib_sq_snap *snap, struct sk_buff *skb,
			   enum crib_sock_queue queue, u32 acked)
{
	const struct tcp_skb_cb *tcb = TCP_SKB_CB(skb);
	struct crib_sq_cb *item;
	u32 skip = 0;

	/* Bytes below @acked (copied_seq, snd_una) are read or acked. */
	if (before(tcb->seq, acked))
		skip = acked - tcb->seq;
	item = crib_sq_add(snap, crib_sq_tcp_copy(skb, queue), queue, skip);
	if (IS_ERR(item))
		return PTR_ERR(item);
	item->seq = tcb->seq;
	item->end_seq = tcb->end_seq;
	if (tcb->tcp_flags & TCPHDR_FIN)
		item->flags |= CRIB_SQ_F_FIN;
	if (tcb->tcp_flags & TCPHDR_SYN)
		item->flags |= CRIB_SQ_F_SYN;
	return 0;
}

/* Error queue of any socket; its lock is taken with interrupts off. */
static int crib_sq_error(struct crib_sq_snap *snap, struct sock *sk)
{
	struct sk_buff_head *q = &sk->sk_error_queue;
	struct sk_buff *skb;
	unsigned long flags;
	int err = 0;

	spin_lock_irqsave(&q->lock, flags);
	skb_queue_walk(q, skb) {
		err = PTR_ERR_OR_ZERO(crib_sq_add(snap,
						  skb_clone(skb, GFP_ATOMIC),
						  CRIB_SQ_ERROR, 0));
		if (err)
			break;
	}
	spin_unlock_irqrestore(&q->lock, flags);
	return err;
}

static int crib_sq_tcp(struct crib_sq_snap *snap, struct sock *sk, u32 mask)
{
	struct tcp_sock *tp = tcp_sk(sk);
	struct sk_buff *skb;
	int err = 0;

	lock_sock(sk);
	if (sk->sk_state == TCP_LISTEN) {
		err = -EINVAL;
		goto out;
	}
	if (crib_sk_data_elsewhere(sk)) {
		err = -EOPNOTSUPP;
		goto out;
	}
	snap->info.snd_una = tp->snd_una;
	snap->info.snd_nxt = tp->snd_nxt;
	snap->info.write_seq = tp->write_seq;
	snap->info.rcv_nxt = tp->rcv_nxt;
	snap->info.copied_seq = tp->copied_seq;

	if (crib_sq_want(mask, CRIB_SQ_TCP_RECV)) {
		skb_queue_walk(&sk->sk_receive_queue, skb) {
			err = crib_sq_tcp_one(snap, skb, CRIB_SQ_TCP_RECV,
					      tp->copied_seq);
			if (err)
				goto out;
		}
	}
	if (crib_sq_want(mask, CRIB_SQ_TCP_OFO)) {
		skb_rbtree_walk(skb, &tp->out_of_order_queue) {
			err = crib_sq_tcp_one(snap, skb, CRIB_SQ_TCP_OFO,
					      tp->rcv_nxt);
			if (err)
				goto out;
		}
	}
	if (crib_sq_want(mask, CRIB_SQ_TCP_RTX)) {
		skb_rbtree_walk(skb, &sk->tcp_rtx_queue) {
			err = crib_sq_tcp_one(snap, skb, CRIB_SQ_TCP_RTX,
					      tp->snd_una);
			if (err)
				goto out;
		}
	}
	if (crib_sq_want(mask, CRIB_SQ_TCP_WRITE)) {
		skb_queue_walk(&sk->sk_write_queue, skb) {
			err = crib_sq_tcp_one(snap, skb, CRIB_SQ_TCP_WRITE,
					      tp->snd_una);
			if (err)
				goto out;
		}
	}
	if (crib_sq_want(mask, CRIB_SQ_ERROR))
		err = crib_sq_error(snap, sk);
out:
	release_sock(sk);
	return err;
}

static void crib_sq_udp_src(struct crib_sq_cb *item,
			    const struct sk_buff *skb)
{
	item->src_port = udp_hdr(skb)->source;
	if (skb->protocol == htons(ETH_P_IP)) {
		memcpy(item->src_addr, &ip_hdr(skb)->saddr, 4);
	} else {
		memcpy(item->src_addr, &ipv6_hdr(skb)->saddr, 16);
		item->flags |= CRIB_SQ_F_V6;
	}
}

static int crib_sq_udp_recv_queue(struct crib_sq_snap *snap,
				  struct sk_buff_head *q)
{
	struct crib_sq_cb *item;
	struct sk_buff *skb;

	skb_queue_walk(q, skb) {
		item = crib_sq_add(snap, skb_clone(skb, GFP_ATOMIC),
				   CRIB_SQ_UDP_RECV, 0);
		if (IS_ERR(item))
			return PTR_ERR(item);
		crib_sq_udp_src(item, skb);
	}
	return 0;
}

/*
 * Corked data: each packet of the queue starts with header room for the IP
 * header (and options or extension headers) up to its transport header;
 * the first one also for the UDP header. Called with the socket locked.
 */
static int crib_sq_udp_cork(struct crib_sq_snap *snap, struct sock *sk)
{
	struct sk_buff_head *q = &sk->sk_write_queue;
	struct crib_sq_cb *item;
	struct sk_buff *skb;
	u32 skip;

	skb_queue_walk(q, skb) {
		skip = skb_transport_offset(skb);
		if (skb == skb_peek(q))
			skip += sizeof(struct udphdr);
		item = crib_sq_add(snap, skb_copy(skb, GFP_KERNEL_ACCOUNT),
				   CRIB_SQ_UDP_CORK, skip);
		if (IS_ERR(item))
			return PTR_ERR(item);
	}
	return 0;
}

static int crib_sq_udp(struct crib_sq_snap *snap, struct sock *sk, u32 mask)
{
	struct udp_sock *up = udp_sk(sk);
	int err = 0;

	lock_sock(sk);
	if (crib_sk_data_elsewhere(sk))
		err = -EOPNOTSUPP;
	else if (crib_sq_want(mask, CRIB_SQ_UDP_CORK))
		err = crib_sq_udp_cork(snap, sk);
	/*
	 * up->len is the UDP length of the pending datagram: the first
	 * corked send counts the UDP header too (udp_sendmsg() and
	 * udpv6_sendmsg() add it to ulen before do_append_data).
	 */
	if (READ_ONCE(up->pending))
		snap->info.cork_len = up->len - sizeof(struct udphdr);
	release_sock(sk);
	if (err)
		return err;

	if (crib_sq_want(mask, CRIB_SQ_UDP_RECV)) {
		/* Older datagrams first, locks in udp_recvmsg()'s order. */
		spin_lock_bh(&up->reader_queue.lock);
		err = crib_sq_udp_recv_queue(snap, &up->reader_queue);
		if (!err) {
			spin_lock(&sk->sk_receive_queue.lock);
			err = crib_sq_udp_recv_queue(snap,
						     &sk->sk_receive_queue);
			spin_unlock(&sk->sk_receive_queue.lock);
		}
		spin_unlock_bh(&up->reader_queue.lock);
		if (err)
			return err;
	}
	if (crib_sq_want(mask, CRIB_SQ_ERROR))
		err = crib_sq_error(snap, sk);
	return err;
}

#if CRIB_HAVE_UNIXCB
static int crib_sq_unix(struct crib_sq_snap *snap, struct sock *sk, u32 mask)
{
	struct unix_sock *u = unix_sk(sk);
	struct crib_sq_cb *item;
	struct sk_buff *skb;
	int err = 0;

	if (READ_ONCE(sk->sk_state) == TCP_LISTEN)
		return -EINVAL;
	if (crib_sq_want(mask, CRIB_SQ_UNIX_RECV)) {
		if (mutex_lock_interruptible(&u->iolock))
			return -EINTR;
		spin_lock(&sk->sk_receive_queue.lock);
		skb_queue_walk(&sk->sk_receive_queue, skb) {
			struct scm_fp_list *fp = UNIXCB(skb).fp;

			item = crib_sq_add(snap, skb_clone(skb, GFP_ATOMIC),
					   CRIB_SQ_UNIX_RECV,
					   UNIXCB(skb).consumed);
			if (IS_ERR(item)) {
				err = PTR_ERR(item);
				break;
			}
			item->nr_fds = fp ? fp->count : 0;
#if IS_ENABLED(CONFIG_AF_UNIX_OOB)
			if (skb == READ_ONCE(u->oob_skb))
				item->flags |= CRIB_SQ_F_OOB;
#endif
		}
		spin_unlock(&sk->sk_receive_queue.lock);
		mutex_unlock(&u->iolock);
		if (err)
			return err;
	}
	if (crib_sq_want(mask, CRIB_SQ_ERROR))
		err = crib_sq_error(snap, sk);
	return err;
}
#else
static int crib_sq_unix(struct crib_sq_snap *snap, struct sock *sk, u32 mask)
{
	return -EPROTONOSUPPORT;
}
#endif

static void crib_sq_free(struct crib_sq_snap *snap)
{
	struct sk_buff *skb;

	while ((skb = __skb_dequeue(&snap->skbs)))
		consume_skb(skb);
	kfree(snap);
}

__bpf_kfunc_start_defs();

/**
 * bpf_iter_task_file_get_socket() - socket of the iterator's current file
 * @it__iter: an initialized task_file iterator
 *
 * Access to the file was checked when the iterator took the current
 * element. The socket is returned with a new reference on its file, which
 * keeps the socket and its sock valid; release it with
 * bpf_crib_put_socket(). Protocol state is read from sock->sk by the
 * program itself (CO-RE).
 *
 * Return: the socket of the current element's file, or NULL if there is no
 * current element or its file is not a socket.
 */
__bpf_kfunc struct socket *
bpf_iter_task_file_get_socket(struct bpf_iter_task_file *it__iter)
{
	struct file *file = crib_iter_task_file_cur(it__iter);
	struct socket *sock;

	if (!file)
		return NULL;
	sock = sock_from_file(file);
	if (!sock)
		return NULL;
	/* The iterator holds a reference, so the count cannot be zero. */
	get_file(file);
	return sock;
}

/**
 * bpf_crib_put_socket() - release a socket from bpf_iter_task_file_get_socket()
 * @sock: the socket
 *
 * Drops the reference on the socket's file; if it is the last one, the
 * socket is released after the program run, from task work of the task
 * running the program.
 */
__bpf_kfunc void bpf_crib_put_socket(struct socket *sock)
{
	fput(sock->file);
}

/**
 * bpf_iter_sock_queue_new() - snapshot the packets queued on a socket
 * @it: the iterator state, on the program's stack
 * @sock: the socket, from bpf_iter_task_file_get_socket()
 * @queues: which queues, a mask of (1 << enum crib_sock_queue); 0 for all
 *
 * Takes a private copy of every packet queued on the selected queues of
 * @sock that it has, under the locks each queue's owner takes (see the top
 * of this file), and releases the locks before returning. May sleep. The
 * iterator is initialized in every case; bpf_iter_sock_queue_destroy()
 * must be called either way.
 *
 * Return: 0; -EINVAL for unknown bits in @queues or a listening socket
 * (its queue holds connection requests, not data); -EPROTONOSUPPORT for a
 * socket that is not TCP, UDP or unix (MPTCP, raw, packet, netlink, ...);
 * -EOPNOTSUPP for a socket whose data is kept elsewhere than in its queues
 * (a ULP such as kTLS, or attached to a sockmap); -EINTR if interrupted
 * while waiting for a unix socket's reader; -ENOMEM; -E2BIG if the queues
 * hold more than CRIB_SQ_MAX_BYTES. On error the walk is empty: a dump is
 * never silently partial.
 */
__bpf_kfunc int bpf_iter_sock_queue_new(struct bpf_iter_sock_queue *it,
					struct socket *sock, u32 queues)
{
	struct bpf_iter_sock_queue_kern *kit = (void *)it;
	struct sock *sk = sock->sk;
	struct crib_sq_snap *snap;
	int err;

	BUILD_BUG_ON(sizeof(struct bpf_iter_sock_queue_kern) !=
		     sizeof(struct bpf_iter_sock_queue));
	BUILD_BUG_ON(__alignof__(struct bpf_iter_sock_queue_kern) !=
		     __alignof__(struct bpf_iter_sock_queue));

	memset(kit, 0, sizeof(*kit));
	if (queues & ~CRIB_SQ_ALL)
		return -EINVAL;
	if (!queues)
		queues = CRIB_SQ_ALL;
	if (!sk)
		return -EPROTONOSUPPORT;

	snap = kzalloc_obj(*snap, GFP_KERNEL_ACCOUNT);
	if (!snap)
		return -ENOMEM;
	__skb_queue_head_init(&snap->skbs);

	if (sk_is_tcp(sk))
		err = crib_sq_tcp(snap, sk, queues);
	else if (sk_is_udp(sk))
		err = crib_sq_udp(snap, sk, queues);
	else if (sk_is_unix(sk))
		err = crib_sq_unix(snap, sk, queues);
	else
		err = -EPROTONOSUPPORT;
	if (err) {
		crib_sq_free(snap);
		return err;
	}
	kit->snap = snap;
	return 0;
}

/**
 * bpf_iter_sock_queue_next() - the next packet of the snapshot
 * @it: the iterator state
 *
 * Frees the previous element's copy. Elements come queue by queue in the
 * order of enum crib_sock_queue, and within a queue in queue order
 * (sequence order for TCP).
 *
 * Return: the next element, valid until the next call of
 * bpf_iter_sock_queue_next() or bpf_iter_sock_queue_destroy() on @it, or
 * NULL at the end or after a failed bpf_iter_sock_queue_new().
 */
__bpf_kfunc struct bpf_iter_sock_queue_item *
bpf_iter_sock_queue_next(struct bpf_iter_sock_queue *it)
{
	struct bpf_iter_sock_queue_kern *kit = (void *)it;
	struct crib_sq_cb *cb;
	struct sk_buff *skb;

	if (kit->cur) {
		consume_skb(kit->cur);
		kit->cur = NULL;
	}
	memset(&kit->item, 0, sizeof(kit->item));
	if (!kit->snap)
		return NULL;
	skb = __skb_dequeue(&kit->snap->skbs);
	if (!skb)
		return NULL;

	cb = crib_sq_cb(skb);
	kit->cur = skb;
	/* Only where the verifier ends the pointer's life with the step. */
	kit->item.skb = CRIB_ITER_SCOPED ? skb : NULL;
	kit->item.queue = cb->queue;
	kit->item.len = cb->len;
	kit->item.skip = cb->skip;
	kit->item.seq = cb->seq;
	kit->item.end_seq = cb->end_seq;
	kit->item.flags = cb->flags;
	kit->item.nr_fds = cb->nr_fds;
	kit->item.src_port = cb->src_port;
	memcpy(kit->item.src_addr, cb->src_addr, sizeof(cb->src_addr));
	return &kit->item;
}

/**
 * bpf_iter_sock_queue_destroy() - release a socket queue iterator
 * @it: the iterator state
 *
 * Frees the current copy and every copy not yet walked.
 */
__bpf_kfunc void bpf_iter_sock_queue_destroy(struct bpf_iter_sock_queue *it)
{
	struct bpf_iter_sock_queue_kern *kit = (void *)it;

	if (kit->cur)
		consume_skb(kit->cur);
	if (kit->snap)
		crib_sq_free(kit->snap);
	memset(kit, 0, sizeof(*kit));
}

/**
 * bpf_iter_sock_queue_read() - copy data of the current element
 * @it__iter: an initialized socket queue iterator
 * @offset: offset into the element's data (after its skip bytes)
 * @buf: where to copy to
 * @buf__sz: size of @buf; the verifier checks that @buf has that many bytes
 *
 * Copies min(@buf__sz, len - @offset) bytes, from the element's paged data
 * and frag_list as well as its linear part.
 *
 * Return: the number of bytes copied (0 at the end of the data), -ENOENT
 * without a current element, -EINVAL if @offset is beyond the data.
 */
__bpf_kfunc int bpf_iter_sock_queue_read(struct bpf_iter_sock_queue *it__iter,
					 u32 offset, void *buf, u32 buf__sz)
{
	struct bpf_iter_sock_queue_kern *kit = (void *)it__iter;
	u32 n;

	if (!kit->cur)
		return -ENOENT;
	if (offset > kit->item.len)
		return -EINVAL;
	n = min(buf__sz, kit->item.len - offset);
	if (skb_copy_bits(kit->cur, kit->item.skip + offset, buf, n))
		return -EFAULT;
	return n;
}

/**
 * bpf_iter_sock_queue_get_info() - totals and state taken with the snapshot
 * @it__iter: an initialized socket queue iterator
 * @info: a struct crib_sock_queue_info to fill
 * @info__sz: its size; a smaller, older layout gets its prefix
 *
 * Return: 0, or -ENOENT after a failed bpf_iter_sock_queue_new().
 */
__bpf_kfunc int
bpf_iter_sock_queue_get_info(struct bpf_iter_sock_queue *it__iter,
			     void *info, u32 info__sz)
{
	struct bpf_iter_sock_queue_kern *kit = (void *)it__iter;

	memset(info, 0, info__sz);
	if (!kit->snap)
		return -ENOENT;
	memcpy(info, &kit->snap->info,
	       min_t(u32, info__sz, sizeof(kit->snap->info)));
	return 0;
}

__bpf_kfunc_end_defs();
