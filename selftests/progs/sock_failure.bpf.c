// SPDX-License-Identifier: GPL-2.0
/*
 * Verifier-acceptance cases: misuse of bpf_iter_task_file_get_socket(),
 * bpf_crib_put_socket() and the socket queue iterator must be rejected at
 * load time, each with the message of the 7.3 verifier
 * (kernel/bpf/verifier.c; "resource release invalidated this pointer" is
 * kernel/bpf/diagnostics.c's). Register numbers are those of the kfunc
 * argument (R1 = first), fixed by the calling convention.
 */
#include "sock_common.h"

char _license[] SEC("license") = "GPL";

/* iterator states that are not on the BPF stack */
struct bpf_iter_sock_queue sq_global_it;
struct bpf_iter_task_file sq_global_file_it;

/* unknown to the verifier: a value loaded from .bss */
__u32 sq_unknown;

/* read-only memory (.rodata, frozen, BPF_F_RDONLY_PROG) */
const char sq_rodata[64] = "read-only";

struct sq_small {
	char b[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sq_small);
} sq_small_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} sq_rb SEC(".maps");

/* ---- socket references ------------------------------------------------------- */

SEC("syscall")
__description("socket reference never put")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int sock_not_released(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock = NULL;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	while (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock)
			break;
	}
	bpf_iter_task_file_destroy(&it);
	return sock ? 1 : 0;
}

SEC("syscall")
__description("socket put only when the queue walk succeeded: leaks on new()'s error path")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int sock_not_released_on_error_path(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;
	int err = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			err = bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_destroy(&q);
			if (!err)
				bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return err;
}

SEC("syscall")
__description("socket reference put twice")
__failure __msg("release kfunc bpf_crib_put_socket expects referenced PTR_TO_BTF_ID passed to R1")
int sock_put_twice(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_crib_put_socket(sock);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("socket field read after bpf_crib_put_socket()")
__failure
__msg("R{{[0-9]}} invalid mem access 'scalar'")
__msg("resource release invalidated this pointer")
int sock_use_after_put(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;
	int type = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_crib_put_socket(sock);
			type = sock->type;
		}
	}
	bpf_iter_task_file_destroy(&it);
	return type;
}

SEC("syscall")
__description("queue walk on a socket after bpf_crib_put_socket()")
__failure
__msg("R2 is scalar expected STRUCT socket")
__msg("resource release invalidated this pointer")
int sq_new_after_put(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_crib_put_socket(sock);
			bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_destroy(&q);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("put of a socket the program holds no reference on (sock->sk->sk_socket)")
__failure __msg("release kfunc bpf_crib_put_socket expects referenced PTR_TO_BTF_ID passed to R1")
int sock_put_unreferenced(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;
	struct sock *sk;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			sk = sock->sk;
			if (sk)
				bpf_crib_put_socket(sk->sk_socket);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("a file reference (get_file()) released with bpf_crib_put_socket()")
__failure
__msg("kernel function bpf_crib_put_socket R1 expected pointer to STRUCT socket but R1 has a pointer to STRUCT file")
int sock_put_file_as_socket(void *ctx)
{
	struct bpf_iter_task_file it;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f)
			bpf_crib_put_socket((struct socket *)f);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("a socket reference released with bpf_crib_put_file()")
__failure
__msg("kernel function bpf_crib_put_file R1 expected pointer to STRUCT file but R1 has a pointer to STRUCT socket")
int sock_put_socket_as_file(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock)
			bpf_crib_put_file((struct file *)sock);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/* ---- NULL checks ----------------------------------------------------------- */

SEC("syscall")
__description("get_socket() result put without a NULL check")
__failure __msg("Possibly NULL pointer passed to trusted R1")
int sock_put_no_null_check(void *ctx)
{
	struct bpf_iter_task_file it;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		bpf_crib_put_socket(bpf_iter_task_file_get_socket(&it));
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("get_socket() result dereferenced without a NULL check")
__failure __msg("invalid mem access 'trusted_ptr_or_null_'")
int sock_deref_no_null_check(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;
	int type = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		type = sock->type;
		if (sock)
			bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	return type;
}

SEC("syscall")
__description("sock->sk (trusted or NULL) dereferenced without a NULL check")
__failure __msg("invalid mem access 'trusted_ptr_or_null_'")
int sock_sk_no_null_check(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;
	int type = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			type = sock->sk->sk_type;
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return type;
}

/* ---- the socket argument of the queue iterator ----------------------------------- */

SEC("syscall")
__description("queue walk on get_socket()'s result without a NULL check")
__failure __msg("Possibly NULL pointer passed to trusted R2")
int sq_new_unchecked_sock(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		bpf_iter_sock_queue_new(&q, sock, 0);
		bpf_iter_sock_queue_destroy(&q);
		if (sock)
			bpf_crib_put_socket(sock);
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("queue walk on a NULL socket")
__failure __msg("Possibly NULL pointer passed to trusted R2")
int sq_new_null_sock(void *ctx)
{
	struct bpf_iter_sock_queue q;

	bpf_iter_sock_queue_new(&q, NULL, 0);
	bpf_iter_sock_queue_destroy(&q);
	return 0;
}

SEC("syscall")
__description("queue walk on a file (get_file()'s reference) instead of a socket")
__failure
__msg("kernel function bpf_iter_sock_queue_new R2 expected pointer to STRUCT socket but R2 has a pointer to STRUCT file")
int sq_new_on_file(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct file *f;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		f = bpf_iter_task_file_get_file(&it);
		if (f) {
			bpf_iter_sock_queue_new(&q, (struct socket *)f, 0);
			bpf_iter_sock_queue_destroy(&q);
			bpf_crib_put_file(f);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("queue walk on a task (current) instead of a socket")
__failure
__msg("kernel function bpf_iter_sock_queue_new R2 expected pointer to STRUCT socket but R2 has a pointer to STRUCT task_struct")
int sq_new_on_task(void *ctx)
{
	struct bpf_iter_sock_queue q;

	bpf_iter_sock_queue_new(&q, (struct socket *)bpf_get_current_task_btf(), 0);
	bpf_iter_sock_queue_destroy(&q);
	return 0;
}

SEC("syscall")
__description("queue walk on a socket reached by a pointer walk (sock->sk->sk_socket)")
__failure __msg("R2 must be referenced or trusted")
int sq_new_untrusted_sock(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;
	struct sock *sk;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			sk = sock->sk;
			if (sk) {
				bpf_iter_sock_queue_new(&q, sk->sk_socket, 0);
				bpf_iter_sock_queue_destroy(&q);
			}
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("queue walk started inside bpf_rcu_read_lock(): new() sleeps")
__failure __msg("kernel func bpf_iter_sock_queue_new is sleepable within rcu_read_lock region")
int sq_new_in_rcu_cs(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_rcu_read_lock();
			bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_destroy(&q);
			bpf_rcu_read_unlock();
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/*
 * A non-sleepable SYSCALL program cannot be made here: libbpf loads every
 * SEC("syscall") program with BPF_F_SLEEPABLE (SEC_SLEEPABLE in its section
 * table, added at load time, so __flag(!BPF_F_SLEEPABLE) cannot clear it).
 * The non-sleepable contexts inside a sleepable program are covered instead.
 */
SEC("syscall")
__description("queue walk started with preemption disabled: new() sleeps")
__failure __msg("kernel func bpf_iter_sock_queue_new is sleepable within non-preemptible region")
int sq_new_preempt_disabled(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_preempt_disable();
			bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_destroy(&q);
			bpf_preempt_enable();
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

/* ---- iterator state -------------------------------------------------------- */

SEC("syscall")
__description("queue iterator never destroyed")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int sq_missing_destroy(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_next(&q);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("queue iterator not destroyed when new() failed (it must be, either way)")
__failure
__msg("Unreleased reference id={{[0-9]+}} alloc_insn={{[0-9]+}}")
__msg("BPF_EXIT instruction in main prog would lead to reference leak")
int sq_missing_destroy_after_error(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;
	int err = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			err = bpf_iter_sock_queue_new(&q, sock, 0);
			if (!err) {
				bpf_iter_sock_queue_next(&q);
				bpf_iter_sock_queue_destroy(&q);
			}
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return err;
}

SEC("syscall")
__description("next() on a queue iterator that was never initialized")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_next_uninit(void *ctx)
{
	struct bpf_iter_sock_queue q;

	bpf_iter_sock_queue_next(&q);
	return 0;
}

SEC("syscall")
__description("read() on a queue iterator that was never initialized")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_read_uninit(void *ctx)
{
	struct bpf_iter_sock_queue q;
	char buf[8];

	return bpf_iter_sock_queue_read(&q, 0, buf, sizeof(buf));
}

SEC("syscall")
__description("get_info() on a queue iterator that was never initialized")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_get_info_uninit(void *ctx)
{
	struct crib_sock_queue_info info;
	struct bpf_iter_sock_queue q;

	return bpf_iter_sock_queue_get_info(&q, &info, sizeof(info));
}

SEC("syscall")
__description("destroy() on a queue iterator that was never initialized")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_destroy_uninit(void *ctx)
{
	struct bpf_iter_sock_queue q;

	bpf_iter_sock_queue_destroy(&q);
	return 0;
}

/* new() + destroy() on the first socket of current, then @use on the dead iterator */
#define SQ_AFTER_DESTROY(use)							\
	struct bpf_iter_sock_queue q;						\
	struct bpf_iter_task_file it;						\
	struct socket *sock;							\
	int ret = 0;								\
										\
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());		\
	if (bpf_iter_task_file_next(&it)) {					\
		sock = bpf_iter_task_file_get_socket(&it);			\
		if (sock) {							\
			bpf_iter_sock_queue_new(&q, sock, 0);			\
			bpf_iter_sock_queue_next(&q);				\
			bpf_iter_sock_queue_destroy(&q);			\
			use;							\
			bpf_crib_put_socket(sock);				\
		}								\
	}									\
	bpf_iter_task_file_destroy(&it);					\
	return ret

SEC("syscall")
__description("next() on a destroyed queue iterator")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_next_after_destroy(void *ctx)
{
	SQ_AFTER_DESTROY(ret = bpf_iter_sock_queue_next(&q) ? 1 : 0);
}

SEC("syscall")
__description("read() on a destroyed queue iterator")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_read_after_destroy(void *ctx)
{
	char buf[8];

	SQ_AFTER_DESTROY(ret = bpf_iter_sock_queue_read(&q, 0, buf, sizeof(buf)));
}

SEC("syscall")
__description("get_info() on a destroyed queue iterator")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_get_info_after_destroy(void *ctx)
{
	struct crib_sock_queue_info info;

	SQ_AFTER_DESTROY(ret = bpf_iter_sock_queue_get_info(&q, &info, sizeof(info)));
}

SEC("syscall")
__description("queue iterator destroyed twice")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_double_destroy(void *ctx)
{
	SQ_AFTER_DESTROY(bpf_iter_sock_queue_destroy(&q));
}

SEC("syscall")
__description("new() on a live queue iterator")
__failure __msg("expected uninitialized iter_sock_queue as R1")
int sq_new_twice(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_new(&q, sock, 0);
			bpf_iter_sock_queue_destroy(&q);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("queue iterator state outside the BPF stack (global variable)")
__failure __msg("R1 expected pointer to an iterator on stack")
int sq_iter_not_on_stack(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_iter_sock_queue_new(&sq_global_it, sock, 0);
			bpf_iter_sock_queue_destroy(&sq_global_it);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("read() given a task_file iterator")
__failure __msg("expected an initialized iter_sock_queue as R1")
int sq_read_wrong_iter_type(void *ctx)
{
	struct bpf_iter_task_file it;
	char buf[8];
	int ret = 0;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it))
		ret = bpf_iter_sock_queue_read((struct bpf_iter_sock_queue *)&it, 0, buf,
					       sizeof(buf));
	bpf_iter_task_file_destroy(&it);
	return ret;
}

/* ---- get_socket()'s iterator argument --------------------------------------------- */

SEC("syscall")
__description("get_socket() given a socket queue iterator")
__failure __msg("expected an initialized iter_task_file as R1")
int sock_get_socket_wrong_iter_type(void *ctx)
{
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct socket *sock, *s2;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_iter_sock_queue_new(&q, sock, 0);
			s2 = bpf_iter_task_file_get_socket((struct bpf_iter_task_file *)&q);
			if (s2)
				bpf_crib_put_socket(s2);
			bpf_iter_sock_queue_destroy(&q);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	return 0;
}

SEC("syscall")
__description("get_socket() on a file iterator that was never initialized")
__failure __msg("expected an initialized iter_task_file as R1")
int sock_get_socket_uninit(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;

	sock = bpf_iter_task_file_get_socket(&it);
	if (sock)
		bpf_crib_put_socket(sock);
	return 0;
}

SEC("syscall")
__description("get_socket() after the file iterator's destroy()")
__failure __msg("expected an initialized iter_task_file as R1")
int sock_get_socket_after_destroy(void *ctx)
{
	struct bpf_iter_task_file it;
	struct socket *sock;

	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());
	bpf_iter_task_file_next(&it);
	bpf_iter_task_file_destroy(&it);
	sock = bpf_iter_task_file_get_socket(&it);
	if (sock)
		bpf_crib_put_socket(sock);
	return 0;
}

SEC("syscall")
__description("get_socket() on a file iterator outside the BPF stack (global variable)")
__failure __msg("R1 expected pointer to an iterator on stack")
int sock_get_socket_not_on_stack(void *ctx)
{
	struct socket *sock;

	sock = bpf_iter_task_file_get_socket(&sq_global_file_it);
	if (sock)
		bpf_crib_put_socket(sock);
	return 0;
}

/* ---- read() and get_info() buffers ------------------------------------------------ */

/* the first element of the first socket of current, then @use with it live */
#define SQ_WITH_ELEMENT(use)							\
	struct bpf_iter_sock_queue q;						\
	struct bpf_iter_task_file it;						\
	struct socket *sock;							\
	int ret = 0;								\
										\
	bpf_iter_task_file_new(&it, bpf_get_current_task_btf());		\
	if (bpf_iter_task_file_next(&it)) {					\
		sock = bpf_iter_task_file_get_socket(&it);			\
		if (sock) {							\
			bpf_iter_sock_queue_new(&q, sock, 0);			\
			if (bpf_iter_sock_queue_next(&q)) {			\
				use;						\
			}							\
			bpf_iter_sock_queue_destroy(&q);			\
			bpf_crib_put_socket(sock);				\
		}								\
	}									\
	bpf_iter_task_file_destroy(&it);					\
	return ret

SEC("syscall")
__description("read() into a map value smaller than buf__sz")
__failure
__msg("invalid access to map value, value_size=16 off=0 size=32")
__msg("R3 and R4 memory, len pair leads to invalid memory access")
int sq_read_map_value_too_small(void *ctx)
{
	__u32 key = 0;
	struct sq_small *v = bpf_map_lookup_elem(&sq_small_map, &key);

	if (!v)
		return 0;
	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_read(&q, 0, v, 32));
}

SEC("syscall")
__description("read() into a ringbuf sample smaller than buf__sz")
__failure
__msg("invalid access to memory, mem_size=16 off=0 size=32")
__msg("R3 and R4 memory, len pair leads to invalid memory access")
int sq_read_ringbuf_too_small(void *ctx)
{
	char *rec;

	SQ_WITH_ELEMENT(
		rec = bpf_ringbuf_reserve(&sq_rb, 16, 0);
		if (rec) {
			ret = bpf_iter_sock_queue_read(&q, 0, rec, 32);
			bpf_ringbuf_discard(rec, 0);
		});
}

SEC("syscall")
/*
 * Two texts of verifier.c, depending on where the compiler puts buf: past
 * the frame, check_stack_access_within_bounds() ("off=-8 size=16"); into
 * the next stack object, check_stack_range_initialized() ("off -112+8 size 16").
 */
__description("read() into a stack buffer smaller than buf__sz")
__failure
__msg("invalid read from stack R3 off{{(=-[0-9]+ size=| -[0-9]+[+][0-9]+ size )}}16")
__msg("R3 and R4 memory, len pair leads to invalid memory access")
int sq_read_stack_too_small(void *ctx)
{
	SQ_WITH_ELEMENT(char buf[8]; ret = bpf_iter_sock_queue_read(&q, 0, buf, 16));
}

SEC("syscall")
__description("read() with a size the verifier cannot bound")
__failure
__msg("R4 unbounded memory access, use 'var &= const' or 'if (var < const)'")
__msg("R3 and R4 memory, len pair leads to invalid memory access")
int sq_read_unbounded_size(void *ctx)
{
	char buf[64];

	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_read(&q, 0, buf, sq_unknown));
}

SEC("syscall")
__description("read() with a variable size that may exceed the buffer (len & 127 into 64 bytes)")
__failure
__msg("invalid read from stack R3 off{{(=-[0-9]+ size=| -[0-9]+[+][0-9]+ size )}}127")
__msg("R3 and R4 memory, len pair leads to invalid memory access")
int sq_read_variable_size_too_large(void *ctx)
{
	char buf[64];

	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_read(&q, 0, buf, sq_unknown & 127));
}

SEC("syscall")
__description("read() into a NULL buffer")
__failure __msg("Possibly NULL pointer passed to trusted R3")
int sq_read_null_buf(void *ctx)
{
	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_read(&q, 0, NULL, 16));
}

SEC("syscall")
__description("read() into read-only memory (.rodata)")
__failure
__msg("write into map forbidden, value_size=64 off=0 size=16")
__msg("R3 and R4 memory, len pair leads to invalid memory access")
int sq_read_into_rodata(void *ctx)
{
	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_read(&q, 0, (void *)sq_rodata, 16));
}

SEC("syscall")
__description("get_info() into read-only memory (.rodata)")
__failure
__msg("write into map forbidden, value_size=64 off=0 size=32")
__msg("R2 and R3 memory, len pair leads to invalid memory access")
int sq_get_info_into_rodata(void *ctx)
{
	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_get_info(&q, (void *)sq_rodata, 32));
}

SEC("syscall")
__description("get_info() into a NULL buffer")
__failure __msg("Possibly NULL pointer passed to trusted R2")
int sq_get_info_null(void *ctx)
{
	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_get_info(&q, NULL, 32));
}

SEC("syscall")
__description("get_info() into a map value smaller than info__sz")
__failure
__msg("invalid access to map value, value_size=16 off=0 size=120")
__msg("R2 and R3 memory, len pair leads to invalid memory access")
int sq_get_info_too_small(void *ctx)
{
	__u32 key = 0;
	struct sq_small *v = bpf_map_lookup_elem(&sq_small_map, &key);

	if (!v)
		return 0;
	SQ_WITH_ELEMENT(ret = bpf_iter_sock_queue_get_info(&q, v,
							   sizeof(struct crib_sock_queue_info)));
}

/* ---- program types ----------------------------------------------------------------- */

SEC("tp_btf/sys_enter")
__description("tp_btf program calls bpf_iter_sock_queue_new")
__failure __msg("calling kernel function bpf_iter_sock_queue_new is not allowed")
int sq_tp_btf_new(void *ctx)
{
	struct bpf_iter_sock_queue q;

	bpf_iter_sock_queue_new(&q, NULL, 0);
	bpf_iter_sock_queue_destroy(&q);
	return 0;
}

SEC("socket")
__description("socket filter calls bpf_crib_put_socket")
__failure __msg("calling kernel function bpf_crib_put_socket is not allowed")
int sock_socket_filter_put(void *ctx)
{
	bpf_crib_put_socket(NULL);
	return 0;
}

/* ---- unprivileged ------------------------------------------------------------------ */

SEC("syscall")
__description("CAP_BPF only: reading a queue element needs CAP_PERFMON")
__caps_unpriv(CAP_BPF)
__success
__failure_unpriv
__msg_unpriv("'struct bpf_iter_sock_queue_item' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN")
int sq_unpriv_bpf_read_item(void *ctx)
{
	struct bpf_iter_sock_queue_item *item;
	struct bpf_iter_sock_queue q;
	struct bpf_iter_task_file it;
	struct task_struct *t;
	struct socket *sock;
	int len = 0;

	t = bpf_task_from_pid(bpf_get_current_pid_tgid() >> 32);
	if (!t)
		return 0;
	bpf_iter_task_file_new(&it, t);
	if (bpf_iter_task_file_next(&it)) {
		sock = bpf_iter_task_file_get_socket(&it);
		if (sock) {
			bpf_iter_sock_queue_new(&q, sock, 0);
			item = bpf_iter_sock_queue_next(&q);
			if (item)
				len = item->len;
			bpf_iter_sock_queue_destroy(&q);
			bpf_crib_put_socket(sock);
		}
	}
	bpf_iter_task_file_destroy(&it);
	bpf_task_release(t);
	return len;
}
