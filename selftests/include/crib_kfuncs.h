/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * BPF-side declarations of the CRIB kfuncs. vmlinux.h has no module types,
 * so programs that run against the out-of-tree module get the kfunc
 * prototypes and iterator layouts from here. All kfuncs are __weak: a
 * program can test for one with bpf_ksym_exists().
 *
 * Include after vmlinux.h (or the kernel headers) and bpf_helpers.h.
 * Against a patched kernel whose vmlinux.h already has the CRIB types,
 * define CRIB_HAVE_VMLINUX_TYPES before including this header.
 *
 * There is no version kfunc: kfuncs are not a stable ABI. A program that
 * can do without one tests for it with bpf_ksym_exists().
 */
#ifndef __CRIB_KFUNCS_H
#define __CRIB_KFUNCS_H

#ifndef CRIB_HAVE_VMLINUX_TYPES
/* Element returned by bpf_iter_task_file_next(); read-only for programs. */
struct bpf_iter_task_file_item {
	struct task_struct *task;
	struct file *file;
	unsigned int fd;
};

/* Opaque iterator state; lives on the program's stack. */
struct bpf_iter_task_file {
	__u64 __opaque[4];
} __attribute__((aligned(8)));

/* Queues of a socket (kfuncs/crib.h has what each one holds). */
enum crib_sock_queue {
	CRIB_SQ_TCP_RECV,
	CRIB_SQ_TCP_OFO,
	CRIB_SQ_TCP_RTX,
	CRIB_SQ_TCP_WRITE,
	CRIB_SQ_UDP_RECV,
	CRIB_SQ_UDP_CORK,
	CRIB_SQ_UNIX_RECV,
	CRIB_SQ_ERROR,
	CRIB_SQ_NR,
};

/* Element returned by bpf_iter_sock_queue_next(); read-only for programs.
 * len bytes of data follow skip bytes (already read or acked, or header
 * room); [seq, end_seq) is a TCP element's sequence range. skb is NULL on
 * stock (read the bytes with bpf_iter_sock_queue_read()).
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
	__u16 src_port;
	__u16 __pad;
	__u8 src_addr[16];
};

/* Opaque iterator state; lives on the program's stack. */
struct bpf_iter_sock_queue {
	__u64 __opaque[9];
} __attribute__((aligned(8)));

/* Totals and TCP sequence numbers taken with the snapshot. */
struct crib_sock_queue_info {
	__u32 nr[CRIB_SQ_NR];
	__u64 bytes[CRIB_SQ_NR];
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 write_seq;
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 cork_len;
};
#endif /* CRIB_HAVE_VMLINUX_TYPES */

#define CRIB_SQ_ALL		((1U << 8) - 1)
#define CRIB_SQ_F_FIN		(1U << 0)
#define CRIB_SQ_F_SYN		(1U << 1)
#define CRIB_SQ_F_OOB		(1U << 2)
#define CRIB_SQ_F_V6		(1U << 3)

/*
 * Iterate over the open files of @task, in descriptor order.
 * _new: 0, -ESRCH (no pid in the caller's pid namespace, or exited),
 *       -EINVAL (kernel thread), -EBUSY (the task is in the middle of an
 *       exec), -EACCES (no permission: in-tree ptrace_may_access() with
 *       PTRACE_MODE_ATTACH_REALCREDS, as pidfd_getfd(); module: own thread
 *       group or CAP_SYS_PTRACE).
 * _next: the current element, valid until the next _next()/_destroy();
 *        NULL at the end of the table or when the walk was stopped (the
 *        permission check is made again before every element).
 *        _destroy must always be called after _new.
 */
extern int bpf_iter_task_file_new(struct bpf_iter_task_file *it,
				  struct task_struct *task) __ksym __weak;
extern struct bpf_iter_task_file_item *
bpf_iter_task_file_next(struct bpf_iter_task_file *it) __ksym __weak;
extern void bpf_iter_task_file_destroy(struct bpf_iter_task_file *it) __ksym __weak;

/* fd of the current element. Without one: why next() stopped the walk
 * before the end of the table (-EACCES: access lost, e.g. the task became
 * non-dumpable, changed credentials or executed a setuid program; -EBUSY:
 * it was in the middle of an exec; -ESRCH: it was reaped), else -ENOENT.
 * Call it after next() returned NULL to tell a stopped walk from a
 * complete one.
 */
extern int bpf_iter_task_file_get_fd(struct bpf_iter_task_file *it__iter) __ksym __weak;

/* New reference to the current element's file (release with
 * bpf_crib_put_file()), NULL without a current element or unless it is a
 * regular file open for reading (every file is listed by the iterator, but
 * only those are handed out as references).
 */
extern struct file *
bpf_iter_task_file_get_file(struct bpf_iter_task_file *it__iter) __ksym __weak;

/* Path of the current element's file into @buf, NUL-terminated, as
 * readlink of /proc/<pid>/fd/<fd> shows it to the caller ("/a/b (deleted)",
 * "pipe:[ino]", "socket:[ino]", "anon_inode:[eventfd]"). Returns its length
 * with the NUL; -EINVAL for an empty @buf, -ENOENT without a current
 * element, -ENAMETOOLONG if it does not fit. Not in kernels whose CRIB
 * kfuncs predate it: test with bpf_ksym_exists().
 */
extern int bpf_iter_task_file_get_path(struct bpf_iter_task_file *it__iter,
				       char *buf, size_t buf__sz) __ksym __weak;

/* Reference to the file at @fd of @task (same permission check as _new);
 * NULL if none, not a regular file open for reading, or not permitted.
 */
extern struct file *bpf_fget_task(struct task_struct *task,
				  unsigned int fd) __ksym __weak;

/* Release a file reference from bpf_fget_task()/_get_file(). */
extern void bpf_crib_put_file(struct file *file) __ksym __weak;

/* Socket of the current element's file, with a new reference on that file
 * (release with bpf_crib_put_socket()); NULL without a current element or
 * if the file is not a socket. Read protocol state from sock->sk (CO-RE).
 */
extern struct socket *
bpf_iter_task_file_get_socket(struct bpf_iter_task_file *it__iter) __ksym __weak;
extern void bpf_crib_put_socket(struct socket *sock) __ksym __weak;

/*
 * Iterate over a private snapshot of the packets queued on @sock (a mask of
 * (1 << enum crib_sock_queue) in @queues, 0 for all). _new may sleep.
 * _new: 0, -EINVAL (unknown queue bit, listening socket), -EPROTONOSUPPORT
 *       (not TCP, UDP or unix, e.g. MPTCP), -EOPNOTSUPP (data kept
 *       elsewhere: kTLS or another ULP, sockmap), -EINTR, -ENOMEM, -E2BIG.
 *       On error the walk is empty. _destroy must always be called.
 * _read: copies min(buf__sz, len - offset) data bytes of the current
 *        element; returns that count, -ENOENT, -EINVAL (offset > len).
 * _get_info: totals per queue and, for TCP, the sequence numbers, all taken
 *            under the same lock as the packets.
 */
extern int bpf_iter_sock_queue_new(struct bpf_iter_sock_queue *it,
				   struct socket *sock, __u32 queues) __ksym __weak;
extern struct bpf_iter_sock_queue_item *
bpf_iter_sock_queue_next(struct bpf_iter_sock_queue *it) __ksym __weak;
extern void bpf_iter_sock_queue_destroy(struct bpf_iter_sock_queue *it) __ksym __weak;
extern int bpf_iter_sock_queue_read(struct bpf_iter_sock_queue *it__iter, __u32 offset,
				    void *buf, __u32 buf__sz) __ksym __weak;
extern int bpf_iter_sock_queue_get_info(struct bpf_iter_sock_queue *it__iter,
					void *info, __u32 info__sz) __ksym __weak;

#endif /* __CRIB_KFUNCS_H */
