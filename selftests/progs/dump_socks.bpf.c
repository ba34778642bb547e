// SPDX-License-Identifier: GPL-2.0
/*
 * Dump the sockets of one task, with the bytes of every queued packet,
 * through a ring buffer. Run with BPF_PROG_RUN and a struct
 * crib_sock_dump_ctx (target pid in the caller's pid namespace, optionally
 * one fd and a queue mask).
 *
 * Per socket: one struct crib_rec_sock (identity, addresses, the TCP
 * sequence numbers and per-queue totals of the queue snapshot, windows,
 * MSS, window scales), then for every packet of the snapshot one struct
 * crib_rec_sock_item followed by its bytes in struct crib_rec_sock_data
 * chunks, each record only as long as the bytes it carries. When bpf_iter_sock_queue_new() refuses a socket (listening,
 * kTLS, sockmap, MPTCP, ...), the socket record carries its errno in
 * queue_err and no items follow: the dump says so instead of leaving the
 * queues out silently. One struct crib_rec_end closes the dump. With
 * CRIB_SOCK_DUMP_F_NO_ITEMS in the context's flags only the socket records
 * are written (the queues' counts and sizes, no packets).
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
 * 64 MiB: room for a few sockets with MiBs queued each (a chunk record is
 * its bytes plus 24, plus the ring buffer's 8-byte header, rounded up to 8).
 */
#define RINGBUF_BYTES	(64 << 20)

/*
 * Chunks per packet: coalesced TCP packets hold far more than 64 KiB (393,204
 * bytes were seen in one receive queue packet over lo), so allow a whole
 * snapshot (CRIB_SQ_MAX_BYTES in kfuncs/crib_sock.c). A packet whose bytes
 * still do not fit ends the dump with -E2BIG.
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
__u32 nr_seq, nr_dropped, item_done;
__s32 read_err;

/*
 * Identity, addresses, and for TCP the windows and scales. A global
 * function, verified once. @sk_addr is an untrusted pointer (bpf_core_cast()):
 * each field is a plain CO-RE load, which the verifier emits as a
 * BPF_PROBE_MEM load (one instruction, a fault fixed up to 0) instead of a
 * bpf_probe_read_kernel() call per field, as crib_fill_file() does. The
 * window scales are bitfields, which only the probed read reaches.
 */
__noinline int fill_sock(struct crib_rec_sock *rec, __u64 sk_addr)
{
	struct sock *sk = bpf_core_cast((void *)sk_addr, struct sock);
	struct tcp_sock *tp = bpf_core_cast((void *)sk_addr, struct tcp_sock);
	struct sock_common *c = &sk->__sk_common;

	if (!rec)
		return -1;
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
	return 0;
}

/*
 * A data record's room for @n payload bytes (1..CRIB_SOCK_CHUNK): the power
 * of two from CRIB_SOCK_ROOM_MIN up that holds them (crib_records.h).
 */
static __always_inline __u32 chunk_room(__u32 n)
{
	__u32 room = CRIB_SOCK_ROOM_MIN;

	while (room < n && room < CRIB_SOCK_CHUNK)
		room <<= 1;
	return room;
}

/* Read the element's bytes at @off into the record's payload, @room_ long. */
#define READ_INTO(room_)						\
	({								\
		void *p_ = bpf_dynptr_data(dp, at, (room_));		\
		p_ ? bpf_iter_sock_queue_read(qit, off, p_, (room_))	\
		   : -EFAULT;						\
	})

/*
 * Copy @n bytes (1..CRIB_SOCK_CHUNK) at offset @off of the iterator's
 * current element into ring buffer record @dp, whose payload after its fixed
 * part has @room = chunk_room(@n) bytes: straight from the packet, once. The read
 * kfunc and bpf_dynptr_data() take constant sizes, hence one call per room
 * size; the kfunc copies min(room, bytes left) = @n. (Reading a short tail
 * into a global buffer and bpf_dynptr_write()-ing it into an exactly sized
 * record copied half of all bytes twice: 41% of the program's samples.)
 * Returns 0 or an errno.
 */
static __always_inline int read_chunk(struct bpf_iter_sock_queue *qit,
				      struct bpf_dynptr *dp, __u32 off, __u32 n,
				      __u32 room)
{
	const __u32 at = sizeof(struct crib_rec_sock_data);
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

static __always_inline void *reserve(__u64 size, __u16 type)
{
	struct crib_rec_hdr *hdr;

	hdr = bpf_ringbuf_reserve(&records, size, 0);
	if (!hdr) {
		nr_dropped++;
		return NULL;
	}
	hdr->type = type;
	hdr->size = size;
	hdr->seq = nr_seq++;
	return hdr;
}

/*
 * One socket: its record, then its packets. The queue iterator's failure
 * goes into the socket record; a failed read ends the dump with its errno.
 */
static __always_inline void dump_socket(struct socket *sock, __u32 fd, __u32 queues,
					bool no_items)
{
	struct crib_sock_queue_info info = {};
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue qit;
	struct crib_rec_sock_item *irec;
	struct crib_rec_sock_data drec;
	struct crib_rec_sock *rec;
	struct bpf_dynptr dp;
	__u64 sk_addr = 0;
	__u32 index = 0, i, off, len, n, room;
	int err;

	err = bpf_iter_sock_queue_new(&qit, sock, queues);
	if (!err)
		err = bpf_iter_sock_queue_get_info(&qit, &info, sizeof(info));

	rec = reserve(sizeof(*rec), CRIB_REC_SOCK);
	if (rec) {
		__builtin_memset((void *)rec + sizeof(rec->hdr), 0,
				 sizeof(*rec) - sizeof(rec->hdr));
		rec->fd = fd;
		rec->queue_err = err;
		bpf_probe_read_kernel(&sk_addr, sizeof(sk_addr), &sock->sk);
		fill_sock(rec, sk_addr);
		rec->snd_una = info.snd_una;
		rec->snd_nxt = info.snd_nxt;
		rec->write_seq = info.write_seq;
		rec->rcv_nxt = info.rcv_nxt;
		rec->copied_seq = info.copied_seq;
		rec->cork_len = info.cork_len;
		for (i = 0; i < CRIB_SOCK_NR_QUEUES; i++) {
			rec->nr[i] = info.nr[i];
			rec->bytes[i] = info.bytes[i];
			if (!no_items)
				rec->nr_items += info.nr[i];
		}
		bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	}
	if (no_items) {
		bpf_iter_sock_queue_destroy(&qit);
		return;
	}

	while ((item = bpf_iter_sock_queue_next(&qit))) {
		irec = reserve(sizeof(*irec), CRIB_REC_SOCK_ITEM);
		if (irec) {
			irec->fd = fd;
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
			__builtin_memcpy(irec->src_addr, item->src_addr,
					 sizeof(irec->src_addr));
			bpf_ringbuf_submit(irec, BPF_RB_NO_WAKEUP);
		}
		len = item->len;
		item_done = 0;
		bpf_for(i, 0, MAX_CHUNKS) {
			off = i * CRIB_SOCK_CHUNK;
			if (off >= len)
				break;
			n = len - off;
			if (n > CRIB_SOCK_CHUNK)
				n = CRIB_SOCK_CHUNK;
			room = chunk_room(n);
			if (bpf_ringbuf_reserve_dynptr(&records,
						       sizeof(drec) + room, 0,
						       &dp)) {
				bpf_ringbuf_discard_dynptr(&dp, 0);
				nr_dropped++;
				continue;
			}
			drec.hdr.type = CRIB_REC_SOCK_DATA;
			drec.hdr.size = sizeof(drec) + room;
			drec.hdr.seq = nr_seq;
			drec.fd = fd;
			drec.index = index;
			drec.offset = off;
			drec.len = n;
			err = bpf_dynptr_write(&dp, 0, &drec, sizeof(drec), 0);
			if (!err)
				err = read_chunk(&qit, &dp, off, n, room);
			if (err) {
				/* Nothing short of a kernel bug gets here. */
				read_err = err;
				bpf_ringbuf_discard_dynptr(&dp, 0);
				break;
			}
			bpf_ringbuf_submit_dynptr(&dp, BPF_RB_NO_WAKEUP);
			nr_seq++;
			item_done += n;
		}
		/* Every byte read (or counted as dropped), else the loop ran out. */
		if (!read_err && item_done < len && !nr_dropped)
			read_err = -E2BIG;
		index++;
	}
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
