// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: programs that take sockets from the task_file
 * iterator and walk their queues correctly must load, and run with the
 * expected result on the runner's own sockets (sock_common.h lists them and
 * what they hold). Each SEC("syscall") program is one case.
 *
 * Retval convention: 0 is success, a small positive number names the check
 * that failed. Counters live in globals (see task_file_success.bpf.c).
 */
#include "sock_common.h"

char _license[] SEC("license") = "GPL";

int sq_n, sq_bad, sq_aux, sq_ret, sq_cnt;
__u32 sq_len, sq_total;
__u32 sq_kinds[4];
/* bytes of one fixture's elements, appended in walk order */
char sq_data[2 * SQ_DATA_MAX];
struct crib_sock_queue_info sq_info;

const char sock_fix_unix_msg[] = SOCK_FIX_UNIX_MSG;
const char sock_fix_udp_msg[] = SOCK_FIX_UDP_MSG;
const char sock_fix_tcp_msg[] = SOCK_FIX_TCP_MSG;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} sq_rb SEC(".maps");

/* Append the current element's @len bytes to sq_data; 0 or a negative step. */
static __always_inline int sq_append(struct bpf_iter_sock_queue *it, __u32 len)
{
	__u32 off = sq_len;
	int n;

	if (off > SQ_DATA_MAX || len > SQ_DATA_MAX)
		return -1;
	n = bpf_iter_sock_queue_read(it, 0, &sq_data[off], len);
	if (n != (int)len)
		return -2;
	sq_len = off + len;
	return 0;
}

/* ---- sockets of the file iterator ------------------------------------------ */

SEC("syscall")
__description("get_socket() on every file of current: the runner's sockets, NULL for other files")
__success __retval(0)
int sock_get_socket_own_fixtures(void *ctx)
{
	struct bpf_iter_task_file_item *item;
	struct bpf_iter_task_file it;
	struct socket *sock;
	int k;

	sq_n = 0;	/* files */
	sq_aux = 0;	/* not sockets */
	sq_bad = 0;
	for (k = 0; k < 4; k++)
		sq_kinds[k] = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while ((item = bpf_iter_task_file_next(&it))) {
		sq_n++;
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock) {
			sq_aux++;
			continue;
		}
		/* the socket of the current file, and that file's socket */
		if (sock->file != item->file)
			sq_bad++;
		k = sock_fix_kind(sock);
		if (k >= 0 && k < 4)
			sq_kinds[k]++;
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	if (sq_aux == 0 || sq_aux == sq_n)
		return 1;	/* the fixture's regular file and the sockets */
	if (sq_bad)
		return 2;
	if (sq_kinds[SOCK_K_UNIX] < 2)
		return 3;
	if (sq_kinds[SOCK_K_UDP] < 1)
		return 4;
	if (sq_kinds[SOCK_K_TCP] < 3)
		return 5;	/* listener, client, accepted end */
	return 0;
}

SEC("syscall")
__description("get_socket() with no current element (before the first next(), after the end) is NULL")
__success __retval(0)
int sock_get_socket_no_current(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	sock = bpf_iter_task_file_get_socket(&it);
	if (sock) {
		bpf_crib_put_socket(sock);
		ret = 1;
	}
	while (bpf_iter_task_file_next(&it))
		;
	sock = bpf_iter_task_file_get_socket(&it);
	if (sock) {
		bpf_crib_put_socket(sock);
		ret |= 2;
	}
	bpf_iter_task_file_destroy(&it);
	return ret;
}

SEC("syscall")
__description("a socket reference outlives the file iterator it came from: walk it after destroy()")
__success __retval(0)
int sock_outlives_file_iter(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock, *udp = NULL;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		if (sock_fix_kind(sock) == SOCK_K_UDP) {
			udp = sock;
			break;
		}
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	if (!udp)
		return 1;
	sq_n = 0;
	sq_ret = bpf_iter_sock_queue_new(&q, udp, 0);
	while ((item = bpf_iter_sock_queue_next(&q)))
		if (item->queue == CRIB_SQ_UDP_RECV &&
		    item->len == SOCK_FIX_LEN(SOCK_FIX_UDP_MSG))
			sq_n++;
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(udp);
	if (sq_ret)
		return 2;
	return sq_n == 1 ? 0 : 3;
}

/* ---- what a walk yields ------------------------------------------------------ */

SEC("syscall")
__description("unix fixture: one UNIX_RECV element, its length, one passed fd, its bytes")
__success __retval(0)
int sq_unix_fixture_bytes(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	int ret = 0;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	sq_n = 0;
	sq_len = 0;
	sq_bad = 0;
	if (bpf_iter_sock_queue_new(&q, sock, 0))
		ret = 2;
	while ((item = bpf_iter_sock_queue_next(&q))) {
		sq_n++;
		if (item->queue != CRIB_SQ_UNIX_RECV || item->skip != 0 ||
		    item->nr_fds != 1 || item->flags != 0)
			sq_bad++;
		if (sq_append(&q, item->len))
			sq_bad += 0x100;
	}
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (ret)
		return ret;
	if (sq_n != 1)
		return 3;
	if (sq_bad & 0xff)
		return 4;
	if (sq_bad)
		return 5;
	if (sq_len != SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG))
		return 6;
	if (bpf_strncmp(sq_data, SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG), sock_fix_unix_msg))
		return 7;
	return 0;
}

SEC("syscall")
__description("udp fixture: one UDP_RECV datagram from 127.0.0.1 and its own port, its bytes")
__success __retval(0)
int sq_udp_fixture_datagram(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	struct sock *sk;
	__u16 port = 0;
	int ret = 0;

	sock = sock_fix_find(SOCK_K_UDP);
	if (!sock)
		return 1;
	sk = sock->sk;
	if (sk)
		port = sk->__sk_common.skc_num;
	sq_n = 0;
	sq_len = 0;
	sq_bad = 0;
	if (bpf_iter_sock_queue_new(&q, sock, 0))
		ret = 2;
	while ((item = bpf_iter_sock_queue_next(&q))) {
		sq_n++;
		if (item->queue != CRIB_SQ_UDP_RECV || item->skip != 0 ||
		    (item->flags & CRIB_SQ_F_V6) || item->nr_fds != 0)
			sq_bad |= 1;
		if (item->src_addr[0] != 127 || item->src_addr[1] != 0 ||
		    item->src_addr[2] != 0 || item->src_addr[3] != 1)
			sq_bad |= 2;
		if (bpf_ntohs(item->src_port) != port)
			sq_bad |= 4;
		if (sq_append(&q, item->len))
			sq_bad |= 8;
	}
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (ret)
		return ret;
	if (!port)
		return 3;
	if (sq_n != 1)
		return 4;
	if (sq_bad & 1)
		return 5;
	if (sq_bad & 2)
		return 6;
	if (sq_bad & 4)
		return 7;
	if (sq_bad)
		return 8;
	if (sq_len != SOCK_FIX_LEN(SOCK_FIX_UDP_MSG))
		return 9;
	if (bpf_strncmp(sq_data, SOCK_FIX_LEN(SOCK_FIX_UDP_MSG), sock_fix_udp_msg))
		return 10;
	return 0;
}

SEC("syscall")
__description("tcp fixture: TCP_RECV elements cover [copied_seq, rcv_nxt), get_info() agrees, bytes")
__success __retval(0)
int sq_tcp_fixture_recv_and_seq(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	int ret = 0;

	sock = sock_fix_find(SOCK_K_TCP);
	if (!sock)
		return 1;
	sq_n = 0;
	sq_len = 0;
	sq_bad = 0;
	if (bpf_iter_sock_queue_new(&q, sock, 1U << CRIB_SQ_TCP_RECV))
		ret = 2;
	if (bpf_iter_sock_queue_get_info(&q, &sq_info, sizeof(sq_info)))
		ret = 3;
	sq_aux = sq_info.copied_seq;	/* where the next element starts */
	while ((item = bpf_iter_sock_queue_next(&q))) {
		sq_n++;
		if (item->queue != CRIB_SQ_TCP_RECV ||
		    (item->flags & (CRIB_SQ_F_FIN | CRIB_SQ_F_SYN)))
			sq_bad |= 1;
		if (item->seq + item->skip != (__u32)sq_aux ||
		    item->end_seq != item->seq + item->skip + item->len)
			sq_bad |= 2;
		sq_aux = item->end_seq;
		if (sq_append(&q, item->len))
			sq_bad |= 4;
	}
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (ret)
		return ret;
	if (sq_n < 1 || sq_n != sq_info.nr[CRIB_SQ_TCP_RECV])
		return 4;
	if (sq_bad & 1)
		return 5;
	if (sq_bad & 2)
		return 6;
	if (sq_bad)
		return 7;
	if ((__u32)sq_aux != sq_info.rcv_nxt)
		return 8;
	if (sq_len != SOCK_FIX_LEN(SOCK_FIX_TCP_MSG) ||
	    sq_info.rcv_nxt - sq_info.copied_seq != sq_len ||
	    sq_info.bytes[CRIB_SQ_TCP_RECV] != sq_len)
		return 9;
	if (bpf_strncmp(sq_data, SOCK_FIX_LEN(SOCK_FIX_TCP_MSG), sock_fix_tcp_msg))
		return 10;
	return 0;
}

SEC("syscall")
__description("nested bpf_for_each: files x sockets x queue elements, every fixture's element seen")
__success __retval(0)
int sq_nested_files_sockets_queues(void *ctx)
{
	struct bpf_iter_task_file_item *file;
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_task_file it;
	struct socket *sock;

	sq_n = 0;	/* sockets */
	sq_aux = 0;	/* elements */
	sq_bad = 0;	/* elements by fixture queue and length: unix | udp | tcp */
	sq_total = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while ((file = bpf_iter_task_file_next(&it))) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		sq_n++;
		bpf_for_each(sock_queue, item, sock, 0) {
			sq_aux++;
			sq_total += item->len;
			if (item->queue == CRIB_SQ_UNIX_RECV &&
			    item->len == SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG))
				sq_bad |= 1;
			if (item->queue == CRIB_SQ_UDP_RECV &&
			    item->len == SOCK_FIX_LEN(SOCK_FIX_UDP_MSG))
				sq_bad |= 2;
			if (item->queue == CRIB_SQ_TCP_RECV)
				sq_bad |= 4;
		}
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	if (sq_n < 6)
		return 1;
	if (sq_bad != 7)
		return 2;
	if (sq_total < SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG) + SOCK_FIX_LEN(SOCK_FIX_UDP_MSG) +
		       SOCK_FIX_LEN(SOCK_FIX_TCP_MSG))
		return 3;
	return 0;
}

SEC("syscall")
__description("nested: pids (bpf_for + bpf_task_from_pid) x files x sockets x queues, no RCU CS")
__success __retval(0)
int sq_nested_pids_files_sockets(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_task_file_item *file;
	struct task_struct *t;
	struct socket *sock;
	int pid;

	sq_n = 0;	/* tasks */
	sq_aux = 0;	/* sockets */
	sq_total = 0;	/* elements */
	bpf_for(pid, 1, 4096) {
		t = bpf_task_from_pid(pid);
		if (!t)
			continue;
		sq_n++;
		bpf_for_each(task_file, file, t) {
			sock = bpf_iter_task_file_get_socket(&___it);
			if (!sock)
				continue;
			sq_aux++;
			bpf_for_each(sock_queue, item, sock, 0)
				sq_total++;
			bpf_crib_put_socket(sock);
		}
		bpf_task_release(t);
	}
	if (sq_n < 2)
		return 1;
	if (sq_aux < 6)
		return 2;
	return sq_total >= 3 ? 0 : 3;
}

/* ---- new(): queue masks and errors ------------------------------------------- */

/* Elements of a walk of @sock's @mask queues (counted in a global, see above). */
static __always_inline int sq_count(struct socket *sock, __u32 mask, int *err)
{
	struct bpf_iter_sock_queue q;

	sq_cnt = 0;
	*err = bpf_iter_sock_queue_new(&q, sock, mask);
	while (bpf_iter_sock_queue_next(&q))
		sq_cnt++;
	bpf_iter_sock_queue_destroy(&q);
	return sq_cnt;
}

SEC("syscall")
__description("queue masks on the unix fixture: its queue, the error queue, another protocol's, all, 0")
__success __retval(0)
int sq_mask_variants(void *ctx)
{
	struct socket *sock;
	int err, ret = 0;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	if (sq_count(sock, 1U << CRIB_SQ_UNIX_RECV, &err) != 1 || err)
		ret = 2;
	else if (sq_count(sock, 1U << CRIB_SQ_ERROR, &err) != 0 || err)
		ret = 3;
	else if (sq_count(sock, (1U << CRIB_SQ_TCP_RECV) | (1U << CRIB_SQ_UDP_RECV), &err) != 0 ||
		 err)
		ret = 4;	/* not this socket's queues: nothing, no error */
	else if (sq_count(sock, CRIB_SQ_ALL, &err) != 1 || err)
		ret = 5;
	else if (sq_count(sock, 0, &err) != 1 || err)
		ret = 6;
	bpf_crib_put_socket(sock);
	return ret;
}

SEC("syscall")
__description("new() with an unknown queue bit: -EINVAL, an empty walk, get_info() -ENOENT")
__success __retval(-22)
int sq_unknown_queue_bit(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	int err, ret;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	err = bpf_iter_sock_queue_new(&q, sock, 1U << CRIB_SQ_NR);
	ret = err;
	if (bpf_iter_sock_queue_next(&q))
		ret = 2;
	else if (bpf_iter_sock_queue_get_info(&q, &sq_info, sizeof(sq_info)) != -ENOENT)
		ret = 3;
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	return ret; /* -EINVAL */
}

SEC("syscall")
__description("new() on the listening TCP fixture: -EINVAL and an empty walk; others of current: 0")
__success __retval(0)
int sq_listening_socket_einval(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;
	struct sock *sk;
	int err, n;

	sq_n = 0;	/* listeners */
	sq_aux = 0;	/* established TCP */
	sq_bad = 0;
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		sk = sock->sk;
		if (sk && sock_fix_kind(sock) == SOCK_K_TCP) {
			n = sq_count(sock, 0, &err);
			if (sk->__sk_common.skc_state == TCP_LISTEN) {
				sq_n++;
				if (err != -EINVAL || n)
					sq_bad++;
			} else {
				sq_aux++;
				if (err)
					sq_bad++;
			}
		}
		bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	if (sq_n < 1)
		return 1;
	if (sq_aux < 2)
		return 2;
	return sq_bad ? 3 : 0;
}

/* ---- read() and get_info() ----------------------------------------------------- */

SEC("syscall")
__description("read(): -ENOENT before next() and after the end, -EINVAL past len, 0 at len, a tail")
__success __retval(0)
int sq_read_offsets(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	char buf[16];
	int ret = 0;
	__u32 len;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_iter_sock_queue_new(&q, sock, 0);
	if (bpf_iter_sock_queue_read(&q, 0, buf, sizeof(buf)) != -ENOENT)
		ret = 2;
	item = bpf_iter_sock_queue_next(&q);
	if (!item) {
		ret = 3;
		goto out;
	}
	len = item->len;
	if (len < 4)
		ret = 4;
	else if (bpf_iter_sock_queue_read(&q, len + 1, buf, sizeof(buf)) != -EINVAL)
		ret = 5;
	else if (bpf_iter_sock_queue_read(&q, len, buf, sizeof(buf)) != 0)
		ret = 6;
	else if (bpf_iter_sock_queue_read(&q, len - 4, buf, sizeof(buf)) != 4)
		ret = 7;	/* min(buf__sz, len - offset) */
	else if (buf[0] != sock_fix_unix_msg[SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG) - 4] ||
		 buf[3] != sock_fix_unix_msg[SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG) - 1])
		ret = 8;
	else if (bpf_iter_sock_queue_read(&q, 0, buf, 0) != 0)
		ret = 9;	/* a zero-sized read */
	while (bpf_iter_sock_queue_next(&q))
		;
	if (!ret && bpf_iter_sock_queue_read(&q, 0, buf, sizeof(buf)) != -ENOENT)
		ret = 10;
out:
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	return ret;
}

SEC("syscall")
__description("read every element of the tcp fixture in 8-byte chunks into a stack buffer")
__success __retval(0)
int sq_read_chunks_stack(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	char buf[8];
	int c, n;

	sock = sock_fix_find(SOCK_K_TCP);
	if (!sock)
		return 1;
	sq_len = 0;
	sq_bad = 0;
	bpf_iter_sock_queue_new(&q, sock, 1U << CRIB_SQ_TCP_RECV);
	while ((item = bpf_iter_sock_queue_next(&q))) {
		bpf_for(c, 0, SQ_DATA_MAX / 8) {
			__u32 off = sq_len;

			if (c * 8 >= item->len)
				break;
			n = bpf_iter_sock_queue_read(&q, c * 8, buf, sizeof(buf));
			if (n <= 0 || n > 8 || off > SQ_DATA_MAX) {
				sq_bad++;
				break;
			}
			__builtin_memcpy(&sq_data[off], buf, 8);
			sq_len = off + n;
		}
	}
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (sq_bad)
		return 2;
	if (sq_len != SOCK_FIX_LEN(SOCK_FIX_TCP_MSG))
		return 3;
	if (bpf_strncmp(sq_data, SOCK_FIX_LEN(SOCK_FIX_TCP_MSG), sock_fix_tcp_msg))
		return 4;
	return 0;
}

SEC("syscall")
__description("read every element of the udp fixture in 16-byte chunks into ringbuf samples")
__success __retval(0)
int sq_read_chunks_ringbuf(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	char *rec;
	int c, n;

	sock = sock_fix_find(SOCK_K_UDP);
	if (!sock)
		return 1;
	sq_len = 0;
	sq_bad = 0;
	bpf_iter_sock_queue_new(&q, sock, 0);
	while ((item = bpf_iter_sock_queue_next(&q))) {
		bpf_for(c, 0, SQ_DATA_MAX / 16) {
			__u32 off = sq_len;

			if (c * 16 >= item->len)
				break;
			rec = bpf_ringbuf_reserve(&sq_rb, 16, 0);
			if (!rec) {
				sq_bad++;
				break;
			}
			n = bpf_iter_sock_queue_read(&q, c * 16, rec, 16);
			if (n > 0 && n <= 16 && off <= SQ_DATA_MAX) {
				__builtin_memcpy(&sq_data[off], rec, 16);
				sq_len = off + n;
			} else {
				sq_bad++;
			}
			bpf_ringbuf_discard(rec, 0);
			if (n <= 0)
				break;
		}
	}
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (sq_bad)
		return 2;
	if (sq_len != SOCK_FIX_LEN(SOCK_FIX_UDP_MSG))
		return 3;
	if (bpf_strncmp(sq_data, SOCK_FIX_LEN(SOCK_FIX_UDP_MSG), sock_fix_udp_msg))
		return 4;
	return 0;
}

SEC("syscall")
__description("read() with a variable size bounded by the buffer (len & 63 into 64 bytes)")
__success __retval(0)
int sq_read_bounded_variable_size(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	char buf[64];
	int ret = 0;
	__u32 sz;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_iter_sock_queue_new(&q, sock, 0);
	item = bpf_iter_sock_queue_next(&q);
	if (!item) {
		ret = 2;
	} else {
		sz = item->len & 63;
		if (bpf_iter_sock_queue_read(&q, 0, buf, sz) != (int)sz)
			ret = 3;
		else if (sz && buf[0] != sock_fix_unix_msg[0])
			ret = 4;
	}
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	return ret;
}

SEC("syscall")
__description("get_info() with a smaller (older) info size fills that prefix only")
__success __retval(0)
int sq_get_info_prefix(void *ctx)
{
	struct crib_sock_queue_info info;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	int ret = 0, err;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	__builtin_memset(&info, 0xa5, sizeof(info));
	bpf_iter_sock_queue_new(&q, sock, 0);
	err = bpf_iter_sock_queue_get_info(&q, &info, sizeof(info.nr));
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (err)
		return 2;
	if (info.nr[CRIB_SQ_UNIX_RECV] != 1 || info.nr[CRIB_SQ_TCP_RECV] != 0 ||
	    info.nr[CRIB_SQ_ERROR] != 0)
		ret = 3;
	else if (info.bytes[CRIB_SQ_TCP_RECV] != 0xa5a5a5a5a5a5a5a5ULL ||
		 info.bytes[CRIB_SQ_UNIX_RECV] != 0xa5a5a5a5a5a5a5a5ULL ||
		 info.cork_len != 0xa5a5a5a5)
		ret = 4;	/* beyond the prefix: untouched */
	return ret;
}

SEC("syscall")
__description("get_info() with the full size: the unix fixture's count and bytes")
__success __retval(0)
int sq_get_info_full(void *ctx)
{
	struct crib_sock_queue_info info;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	int err;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_iter_sock_queue_new(&q, sock, 0);
	err = bpf_iter_sock_queue_get_info(&q, &info, sizeof(info));
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	if (err)
		return 2;
	if (info.nr[CRIB_SQ_UNIX_RECV] != 1 ||
	    info.bytes[CRIB_SQ_UNIX_RECV] != SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG))
		return 3;
	if (info.snd_una || info.rcv_nxt || info.cork_len)
		return 4;	/* TCP and UDP fields stay 0 for unix */
	return 0;
}

/* ---- RCU and iterator slots -------------------------------------------------------- */

SEC("syscall")
__description("only new() sleeps: next(), read() and get_info() inside bpf_rcu_read_lock()")
__success __retval(0)
int sq_walk_in_rcu_cs(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	char buf[8];
	int ret = 0;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_iter_sock_queue_new(&q, sock, 0);
	bpf_rcu_read_lock();
	if (bpf_iter_sock_queue_get_info(&q, &sq_info, sizeof(sq_info)))
		ret = 2;
	item = bpf_iter_sock_queue_next(&q);
	if (!item)
		ret = 3;
	else if (bpf_iter_sock_queue_read(&q, 0, buf, sizeof(buf)) != sizeof(buf))
		ret = 4;
	bpf_rcu_read_unlock();
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	return ret;
}

SEC("syscall")
__description("the same stack slot takes new() again after destroy()")
__success __retval(0)
int sq_reinit_after_destroy(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct socket *sock;
	int n = 0;

	sock = sock_fix_find(SOCK_K_UNIX);
	if (!sock)
		return 1;
	bpf_iter_sock_queue_new(&q, sock, 0);
	if (bpf_iter_sock_queue_next(&q))
		n++;
	bpf_iter_sock_queue_destroy(&q);
	bpf_iter_sock_queue_new(&q, sock, 0);
	if (bpf_iter_sock_queue_next(&q))
		n++;
	bpf_iter_sock_queue_destroy(&q);
	bpf_crib_put_socket(sock);
	return n == 2 ? 0 : 2;
}

/* ---- unprivileged ------------------------------------------------------------------ */

SEC("syscall")
__description("CAP_BPF only: own sockets' queue totals through get_info(), bpf_for()-driven walks")
__caps_unpriv(CAP_BPF)
__success __retval(0)
__success_unpriv __retval_unpriv(0)
int sq_unpriv_bpf_queue_totals(void *ctx)
{
	struct crib_sock_queue_info info;
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct task_struct *t;
	struct socket *sock;
	int i, k;

	/* bpf_get_current_task_btf() needs CAP_PERFMON; bpf_task_from_pid() does not */
	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	if (!t)
		return 1;
	sq_n = 0;	/* sockets */
	sq_total = 0;	/* queued bytes */
	bpf_iter_task_file_new(&it, t);
	/* bpf_for(), not while (next()): see tf_unpriv_bpf_walk_own_fds */
	bpf_for(i, 0, 1 << 16) {
		if (!bpf_iter_task_file_next(&it))
			break;
		sock = bpf_iter_task_file_get_socket(&it);
		if (!sock)
			continue;
		sq_n++;
		/* without CAP_PERFMON the verifier wants initialized stack */
		__builtin_memset(&info, 0, sizeof(info));
		bpf_iter_sock_queue_new(&q, sock, 0);
		bpf_iter_sock_queue_get_info(&q, &info, sizeof(info));
		bpf_iter_sock_queue_destroy(&q);
		bpf_crib_put_socket(sock);
		bpf_for(k, 0, CRIB_SQ_NR)
			sq_total += info.bytes[k];
	}
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(t);
	if (sq_n < 6)
		return 2;
	if (sq_total < SOCK_FIX_LEN(SOCK_FIX_UNIX_MSG) + SOCK_FIX_LEN(SOCK_FIX_UDP_MSG) +
		       SOCK_FIX_LEN(SOCK_FIX_TCP_MSG))
		return 3;
	return 0;
}
