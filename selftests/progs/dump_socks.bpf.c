// SPDX-License-Identifier: GPL-2.0
/*
 * Dump the sockets of one task, with the bytes of every queued packet,
 * through a ring buffer. Run with BPF_PROG_RUN and a struct
 * crib_sock_dump_ctx (target pid in the caller's pid namespace, optionally
 * one fd and a queue mask).
 *
 * Per socket one struct crib_rec_sock record (crib_records.h): identity,
 * addresses, the TCP sequence numbers and per-queue totals of the queue
 * snapshot, windows, MSS, window scales, then every packet of the snapshot
 * as a struct crib_sock_item followed by its bytes. When
 * bpf_iter_sock_queue_new() refuses a socket (listening, kTLS, sockmap,
 * MPTCP, ...), the record carries its errno in queue_err and no packets:
 * the dump says so instead of leaving the queues out silently. One struct
 * crib_rec_end closes the dump. With CRIB_SOCK_DUMP_F_NO_ITEMS in the
 * context's flags the records carry no packets (the queues' counts and
 * sizes only).
 *
 * Return value: 0 when everything was written; -ESRCH without such a pid;
 * the task_file iterator's errno; the errno of a failed
 * bpf_iter_sock_queue_read(); -ENOSPC when the ring buffer had no room
 * (nr_dropped in the end record says how many records were lost).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "crib_records.h"
#include "crib_kfuncs.h"
#include "crib_dump.h"

char _license[] SEC("license") = "GPL";

#define ENOENT	2
#define ESRCH	3
#define EFAULT	14
#define ENOSPC	28
#define E2BIG	7

#define AF_INET		2
#define AF_INET6	10
#define IPPROTO_TCP	6

/*
 * 64 MiB: room for a few sockets with MiBs queued each (a socket's record is
 * its bytes plus 216, plus 56 and padding per packet, plus the slack of
 * CRIB_SOCK_SLACK, plus the ring buffer's 8-byte header).
 */
#define RINGBUF_BYTES	(64 << 20)

/*
 * Chunks per packet: coalesced TCP packets hold far more than 64 KiB (393,204
 * bytes were seen in one receive queue packet over lo), so allow a whole
 * snapshot (CRIB_SQ_MAX_BYTES in kfuncs/crib_sock.c).
 */
#define MAX_CHUNKS	((64 << 20) / CRIB_SOCK_CHUNK)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RINGBUF_BYTES);
} records SEC(".maps");

extern struct task_struct *bpf_task_from_vpid(s32 vpid) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

/*
 * Global counters: values loaded from global memory are not tracked
 * across loop iterations, so the nested iterator loops converge (see
 * dump_files.bpf.c).
 */
__u32 nr_seq, nr_dropped, item_done, item_at;
__s32 read_err;

/*
 * Identity, addresses, and for TCP the windows and scales. @sk is the
 * socket's sock, read from the acquired struct socket: each field is a
 * plain CO-RE load (where the verifier does not trust the pointer, a
 * BPF_PROBE_MEM load: one instruction, a fault fixed up to 0) instead of a
 * bpf_probe_read_kernel() call per field, as crib_fill_file() does.
 * Inlined: a global function takes no kernel pointer, and reading sock->sk
 * with bpf_probe_read_kernel() to pass it as a number was a helper call per
 * socket (4% of the program's samples). The window scales are bitfields,
 * which only the probed read reaches.
 */
static __always_inline void fill_sock(struct crib_rec_sock *rec, struct sock *sk)
{
	struct tcp_sock *tp = bpf_core_cast(sk, struct tcp_sock);
	struct sock_common *c = &sk->__sk_common;

	rec->family = c->skc_family;
	rec->type = sk->sk_type;
	rec->protocol = sk->sk_protocol;
	rec->state = c->skc_state;
	if (rec->family == AF_INET || rec->family == AF_INET6) {
		rec->src_port = c->skc_num;
		rec->dst_port = bpf_ntohs(c->skc_dport);
	}
	if (rec->family == AF_INET) {
		__u32 src = c->skc_rcv_saddr, dst = c->skc_daddr;

		__builtin_memcpy(rec->src_addr, &src, 4);
		__builtin_memcpy(rec->dst_addr, &dst, 4);
	} else if (rec->family == AF_INET6) {
		__u32 src[4], dst[4];
		int i;

		for (i = 0; i < 4; i++) {
			src[i] = c->skc_v6_rcv_saddr.in6_u.u6_addr32[i];
			dst[i] = c->skc_v6_daddr.in6_u.u6_addr32[i];
		}
		__builtin_memcpy(rec->src_addr, src, 16);
		__builtin_memcpy(rec->dst_addr, dst, 16);
	}
	if ((rec->family == AF_INET || rec->family == AF_INET6) &&
	    rec->protocol == IPPROTO_TCP) {
		rec->snd_wl1 = tp->snd_wl1;
		rec->snd_wnd = tp->snd_wnd;
		rec->max_window = tp->max_window;
		rec->rcv_wnd = tp->rcv_wnd;
		rec->rcv_wup = tp->rcv_wup;
		rec->mss_cache = tp->mss_cache;
		/*
		 * The bitfield's offset is relative to the root of the access
		 * chain: pass tp, not &tp->rx_opt.
		 */
		rec->snd_wscale = BPF_CORE_READ_BITFIELD_PROBED(tp, rx_opt.snd_wscale);
		rec->rcv_wscale = BPF_CORE_READ_BITFIELD_PROBED(tp, rx_opt.rcv_wscale);
	}
}

/*
 * The slice for reading @n payload bytes (1..CRIB_SOCK_CHUNK): the power
 * of two from CRIB_SOCK_ROOM_MIN up that holds them (crib_records.h).
 */
static __always_inline __u32 chunk_room(__u32 n)
{
	__u32 room = CRIB_SOCK_ROOM_MIN;

	while (room < n && room < CRIB_SOCK_CHUNK)
		room <<= 1;
	return room;
}

/* Read the element's bytes at @off into the record at @at, @room_ long. */
#define READ_INTO(room_)						\
	({								\
		void *p_ = bpf_dynptr_data(dp, at, (room_));		\
		p_ ? bpf_iter_sock_queue_read(qit, off, p_, (room_))	\
		   : -EFAULT;						\
	})

/*
 * Copy @n bytes (1..CRIB_SOCK_CHUNK) at offset @off of the iterator's
 * current element to offset @at of ring buffer record @dp, through a slice
 * of @room = chunk_room(@n) bytes: straight from the packet, once. The read
 * kfunc and bpf_dynptr_data() take constant sizes, hence one call per room
 * size; the kfunc copies min(room, bytes left) = @n and leaves the rest of
 * the slice alone (the next packet's place, or the record's slack: what the
 * ring buffer held there: older records of this program, or zeroes).
 * (Reading a short tail into a global buffer and bpf_dynptr_write()-ing it
 * into place copied half of all bytes twice: 41% of the program's samples.)
 * Returns 0 or an errno.
 */
static __always_inline int read_chunk(struct bpf_iter_sock_queue *qit,
				      struct bpf_dynptr *dp, __u32 at, __u32 off,
				      __u32 n, __u32 room)
{
	int got;

	switch (room) {
	case 64:
		got = READ_INTO(64);
		break;
	case 128:
		got = READ_INTO(128);
		break;
	case 256:
		got = READ_INTO(256);
		break;
	case 512:
		got = READ_INTO(512);
		break;
	case 1024:
		got = READ_INTO(1024);
		break;
	case 2048:
		got = READ_INTO(2048);
		break;
	default:
		got = READ_INTO(CRIB_SOCK_CHUNK);
		break;
	}
	if (got != n)
		return got < 0 ? got : -EFAULT;
	return 0;
}

/* The fixed part of a socket's record: who it is and its snapshot's totals. */
static __always_inline void fill_rec(struct crib_rec_sock *rec, struct socket *sock,
				     __u32 fd, int err, struct crib_sock_queue_info *info,
				     __u32 nr)
{
	struct sock *sk;
	int i;

	__builtin_memset(rec, 0, sizeof(*rec));
	rec->hdr.type = CRIB_REC_SOCK;
	rec->hdr.size = sizeof(*rec);
	rec->hdr.seq = nr_seq;
	rec->fd = fd;
	rec->queue_err = err;
	sk = sock->sk;
	if (sk)
		fill_sock(rec, sk);
	rec->snd_una = info->snd_una;
	rec->snd_nxt = info->snd_nxt;
	rec->write_seq = info->write_seq;
	rec->rcv_nxt = info->rcv_nxt;
	rec->copied_seq = info->copied_seq;
	rec->cork_len = info->cork_len;
	for (i = 0; i < CRIB_SOCK_NR_QUEUES; i++) {
		rec->nr[i] = info->nr[i];
		rec->bytes[i] = info->bytes[i];
	}
	rec->nr_items = nr;
}

/*
 * One socket: one record, reserved once its snapshot's packet and byte
 * counts are known, long enough for every packet (crib_records.h). The
 * queue iterator's failure goes into the record; a failed read ends the
 * dump with its errno.
 */
static __always_inline void dump_socket(struct socket *sock, __u32 fd, __u32 queues,
					bool no_items)
{
	struct crib_sock_queue_info info = {};
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue qit;
	struct crib_sock_item *irec;
	struct crib_rec_sock *rec;
	struct bpf_dynptr dp;
	__u64 size, bytes = 0;
	__u32 index = 0, nr = 0, i, at, off, len, n;
	int err;

	err = bpf_iter_sock_queue_new(&qit, sock, queues);
	if (!err)
		err = bpf_iter_sock_queue_get_info(&qit, &info, sizeof(info));
	if (!err && !no_items) {
		for (i = 0; i < CRIB_SOCK_NR_QUEUES; i++) {
			nr += info.nr[i];
			bytes += info.bytes[i];
		}
	}
	size = sizeof(*rec);
	if (nr)
		size += (__u64)nr * (sizeof(*irec) + 7) + bytes + CRIB_SOCK_SLACK;
	if (size > RINGBUF_BYTES) {
		nr_dropped++;
		goto out;
	}
	if (bpf_ringbuf_reserve_dynptr(&records, size, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		nr_dropped++;
		goto out;
	}
	rec = bpf_dynptr_data(&dp, 0, sizeof(*rec));
	if (!rec) {
		/* Cannot happen: the record is at least that long. */
		bpf_ringbuf_discard_dynptr(&dp, 0);
		read_err = -EFAULT;
		goto out;
	}
	fill_rec(rec, sock, fd, err, &info, nr);

	item_at = sizeof(*rec);
	while (nr && (item = bpf_iter_sock_queue_next(&qit))) {
		/* NULL past the record: more packets than the snapshot counted. */
		irec = bpf_dynptr_data(&dp, item_at, sizeof(*irec));
		if (!irec) {
			read_err = -EFAULT;
			break;
		}
		irec->index = index;
		irec->queue = item->queue;
		irec->len = item->len;
		irec->skip = item->skip;
		irec->seq = item->seq;
		irec->end_seq = item->end_seq;
		irec->flags = item->flags;
		irec->nr_fds = item->nr_fds;
		irec->src_port = item->src_port;
		irec->pad0 = 0;
		irec->pad1 = 0;
		__builtin_memcpy(irec->src_addr, item->src_addr,
				 sizeof(irec->src_addr));
		len = item->len;
		at = item_at + sizeof(*irec);
		item_done = 0;
		if (len <= CRIB_SOCK_CHUNK) {
			/*
			 * Most packets: one read, without the numbers
			 * iterator's three kfunc calls.
			 */
			err = len ? read_chunk(&qit, &dp, at, 0, len, chunk_room(len)) : 0;
			if (err)
				read_err = err;
			else
				item_done = len;
		} else {
			bpf_for(i, 0, MAX_CHUNKS) {
				off = i * CRIB_SOCK_CHUNK;
				if (off >= len)
					break;
				n = len - off;
				if (n > CRIB_SOCK_CHUNK)
					n = CRIB_SOCK_CHUNK;
				err = read_chunk(&qit, &dp, at + off, off, n, chunk_room(n));
				if (err) {
					/* Nothing short of a kernel bug gets here. */
					read_err = err;
					break;
				}
				item_done += n;
			}
		}
		/* Every byte read, else the loop ran out. */
		if (!read_err && item_done < len)
			read_err = -E2BIG;
		if (read_err)
			break;
		item_at = at + ((len + 7) & ~7U);
		index++;
	}
	if (!read_err && index != nr)
		read_err = -EFAULT;
	if (read_err) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		goto out;
	}
	rec->items_size = item_at - sizeof(*rec);
	bpf_ringbuf_submit_dynptr(&dp, BPF_RB_NO_WAKEUP);
	nr_seq++;
out:
	bpf_iter_sock_queue_destroy(&qit);
}

SEC("syscall")
int crib_dump_socks(struct crib_sock_dump_ctx *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct task_struct *task;
	struct socket *sock;
	__u32 seq, dropped, queues = ctx->queues;
	__s32 want_fd = ctx->fd;
	bool no_items = ctx->flags & CRIB_SOCK_DUMP_F_NO_ITEMS;
	int err;

	nr_seq = 0;
	nr_dropped = 0;
	read_err = 0;
	task = bpf_task_from_vpid(ctx->pid);
	if (!task) {
		crib_emit_end(&records, -ESRCH, 0, 0, 0);
		return -ESRCH;
	}

	err = bpf_iter_task_file_new(&it, task);
	while (!err && (item = bpf_iter_task_file_next(&it))) {
		if (want_fd >= 0 && item->fd != want_fd)
			continue;
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		dump_socket(sock, item->fd, queues, no_items);
		bpf_crib_put_socket(sock);
		if (read_err)
			break;
	}
	if (!err) {
		err = bpf_iter_task_file_get_fd(&it);
		if (err == -ENOENT || err > 0)
			err = 0;
	}
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(task);

	if (!err)
		err = read_err;
	seq = nr_seq;
	dropped = nr_dropped;
	if (!err && dropped)
		err = -ENOSPC;
	if (crib_emit_end(&records, err, seq, seq, dropped) && !err)
		err = -ENOSPC;
	return err;
}
