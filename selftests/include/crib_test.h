/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Annotations for verifier-acceptance cases, read by the Rust runner
 * (harness/src/cases.rs) from the object's BTF.
 *
 * Each annotation is a BTF decl tag on the program's FUNC, in the form the
 * selftests/bpf test_loader reads since the counter was added:
 *
 *     comment:<N>:<tag>
 *
 * where <N> comes from __COUNTER__ and restores declaration order (clang does
 * not keep the order of attributes in BTF). The tag names are those of
 * tools/testing/selftests/bpf/progs/bpf_misc.h, so the runner reads upstream
 * objects and test_loader could read ours. Every macro is guarded, so this
 * header may be included after bpf_misc.h.
 *
 *   __success / __failure          the load must succeed / be rejected
 *   __msg("text")                  text must appear in the verifier log, after
 *                                  the previous __msg's match; "{{re}}" parts
 *                                  are regular expressions
 *   __not_msg("text")              must not appear between the __msg around it
 *   __retval(v)                    run once with BPF_PROG_RUN, expect v
 *                                  (number, _INT_MIN, POINTER_VALUE = any)
 *   __log_level(n)                 verifier log level for the load
 *   __description("text")          free text shown with the case
 *   __auxiliary                    not a case: loaded along with every case
 *   __flag(BPF_F_...)              program flag (!BPF_F_... clears a default)
 *   __arch_x86_64                  only on x86_64 (others report a skip)
 *   __caps_unpriv(caps)            also run unprivileged, with these caps
 *   __success_unpriv, __failure_unpriv, __msg_unpriv, __not_msg_unpriv,
 *   __retval_unpriv                expectations for the unprivileged run
 *   __crib_flavor("stock"|"patched") only on that kernel (ours, not upstream)
 *   __crib_load_errno(E)           ours: the load must fail with exactly errno E
 *                                  (a number: EPERM etc. below); needs __failure.
 *                                  For rejections before the verifier runs, which
 *                                  leave no log for __msg: without it any
 *                                  rejection, for whatever reason, would pass
 *   __crib_load_errno_unpriv(E)    the same for the unprivileged run (needs
 *                                  __failure_unpriv); without it that run takes
 *                                  __crib_load_errno's E if it expects a failure
 */
#ifndef __CRIB_TEST_H
#define __CRIB_TEST_H

#define __crib_str(x)		#x
#define __crib_xstr(x)		__crib_str(x)

/* One decl tag, numbered so the runner can restore declaration order. */
#define __crib_test_tag(tag) \
	__attribute__((btf_decl_tag("comment:" __crib_xstr(__COUNTER__) ":" tag)))

#ifndef __success
#define __success		__crib_test_tag("test_expect_success")
#endif
#ifndef __failure
#define __failure		__crib_test_tag("test_expect_failure")
#endif
#ifndef __msg
#define __msg(text)		__crib_test_tag("test_expect_msg=" text)
#endif
#ifndef __not_msg
#define __not_msg(text)		__crib_test_tag("test_expect_not_msg=" text)
#endif
#ifndef __retval
#define __retval(val)		__crib_test_tag("test_retval=" __crib_xstr(val))
#endif
#ifndef __log_level
#define __log_level(lvl)	__crib_test_tag("test_log_level=" #lvl)
#endif
#ifndef __description
#define __description(text)	__crib_test_tag("test_description=" text)
#endif
#ifndef __auxiliary
#define __auxiliary		__crib_test_tag("test_auxiliary")
#endif
#ifndef __flag
#define __flag(flag)		__crib_test_tag("test_prog_flags=" #flag)
#endif
#ifndef __arch
#define __arch(name)		__crib_test_tag("test_arch=" name)
#endif
#ifndef __arch_x86_64
#define __arch_x86_64		__arch("X86_64")
#endif
#ifndef __caps_unpriv
#define __caps_unpriv(caps)	__crib_test_tag("test_caps_unpriv=" __crib_xstr(caps))
#endif
#ifndef __success_unpriv
#define __success_unpriv	__crib_test_tag("test_expect_success_unpriv")
#endif
#ifndef __failure_unpriv
#define __failure_unpriv	__crib_test_tag("test_expect_failure_unpriv")
#endif
#ifndef __msg_unpriv
#define __msg_unpriv(text)	__crib_test_tag("test_expect_msg_unpriv=" text)
#endif
#ifndef __not_msg_unpriv
#define __not_msg_unpriv(text)	__crib_test_tag("test_expect_not_msg_unpriv=" text)
#endif
#ifndef __retval_unpriv
#define __retval_unpriv(val)	__crib_test_tag("test_retval_unpriv=" __crib_xstr(val))
#endif

/* Ours: restrict a case to one kernel flavor ("stock" or "patched"). */
#define __crib_flavor(name)	__crib_test_tag("crib_flavor=" name)

/*
 * Ours: the load must fail with exactly this errno (positive: EPERM, not
 * -EPERM). selftests/bpf has no such annotation; the runner rejects it on a
 * case whose load is expected to succeed.
 */
#define __crib_load_errno(err)	__crib_test_tag("crib_load_errno=" __crib_xstr(err))
#define __crib_load_errno_unpriv(err) \
	__crib_test_tag("crib_load_errno_unpriv=" __crib_xstr(err))

/* Capability numbers for __caps_unpriv (the runner wants numbers). */
#ifndef CAP_NET_ADMIN
#define CAP_NET_ADMIN		12
#endif
#ifndef CAP_SYS_ADMIN
#define CAP_SYS_ADMIN		21
#endif
#ifndef CAP_PERFMON
#define CAP_PERFMON		38
#endif
#ifndef CAP_BPF
#define CAP_BPF			39
#endif

/*
 * Errno numbers for __crib_load_errno (the runner wants numbers, and vmlinux.h
 * has no errno macros). Values of include/uapi/asm-generic/errno*.h and, for
 * ENOTSUPP, the kernel-internal include/linux/errno.h.
 */
#ifndef EPERM
#define EPERM			1
#endif
#ifndef ENOENT
#define ENOENT			2
#endif
#ifndef E2BIG
#define E2BIG			7
#endif
#ifndef EBADF
#define EBADF			9
#endif
#ifndef ENOMEM
#define ENOMEM			12
#endif
#ifndef EACCES
#define EACCES			13
#endif
#ifndef EFAULT
#define EFAULT			14
#endif
#ifndef EBUSY
#define EBUSY			16
#endif
#ifndef EINVAL
#define EINVAL			22
#endif
#ifndef ENOSPC
#define ENOSPC			28
#endif
#ifndef EOPNOTSUPP
#define EOPNOTSUPP		95
#endif
#ifndef ENOTSUPP
#define ENOTSUPP		524
#endif

/* __retval(POINTER_VALUE) accepts any return value. */
#ifndef POINTER_VALUE
#define POINTER_VALUE		0xbadcafe
#endif
#ifndef TEST_DATA_LEN
#define TEST_DATA_LEN		64
#endif

/* For cases written in BPF assembly. */
#ifndef __naked
#define __naked			__attribute__((naked))
#endif
#ifndef __clobber_all
#define __clobber_all		"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "memory"
#endif
#ifndef __imm
#define __imm(name)		[name]"i"(name)
#endif

#endif /* __CRIB_TEST_H */
