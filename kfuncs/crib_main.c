// SPDX-License-Identifier: GPL-2.0
/*
 * CRIB kfunc set registration.
 *
 * All CRIB kfuncs are registered for BPF_PROG_TYPE_SYSCALL only: such
 * programs run solely through BPF_PROG_RUN, in the context of the task that
 * runs them, and never from an arbitrary kernel context. The kfuncs that
 * walk another task's files check, at run time, that the task running the
 * program may look at them (crib_task_file.c).
 */
#include <linux/bpf.h>
#include <linux/btf.h>
#include <linux/btf_ids.h>
#include <linux/init.h>
#include <linux/module.h>

#include "crib.h"

BTF_KFUNCS_START(crib_kfunc_ids)
BTF_ID_FLAGS(func, bpf_iter_task_file_new, KF_ITER_NEW)
BTF_ID_FLAGS(func, bpf_iter_task_file_next,
	     KF_ITER_NEXT | KF_RET_NULL | KF_ITER_NEXT_SCOPED)
BTF_ID_FLAGS(func, bpf_iter_task_file_destroy, KF_ITER_DESTROY)
BTF_ID_FLAGS(func, bpf_iter_task_file_get_fd)
BTF_ID_FLAGS(func, bpf_iter_task_file_get_file, KF_ACQUIRE | KF_RET_NULL)
BTF_ID_FLAGS(func, bpf_iter_task_file_get_path)
BTF_ID_FLAGS(func, bpf_fget_task, KF_ACQUIRE | KF_RET_NULL)
BTF_ID_FLAGS(func, bpf_crib_put_file, KF_RELEASE)
#ifdef CONFIG_NET
/* crib_sock.c, built only with networking */
BTF_ID_FLAGS(func, bpf_iter_task_file_get_socket, KF_ACQUIRE | KF_RET_NULL)
BTF_ID_FLAGS(func, bpf_crib_put_socket, KF_RELEASE)
BTF_ID_FLAGS(func, bpf_iter_sock_queue_new, KF_ITER_NEW | KF_SLEEPABLE)
BTF_ID_FLAGS(func, bpf_iter_sock_queue_next,
	     KF_ITER_NEXT | KF_RET_NULL | KF_ITER_NEXT_SCOPED)
BTF_ID_FLAGS(func, bpf_iter_sock_queue_destroy, KF_ITER_DESTROY)
BTF_ID_FLAGS(func, bpf_iter_sock_queue_read)
BTF_ID_FLAGS(func, bpf_iter_sock_queue_get_info)
#endif
BTF_KFUNCS_END(crib_kfunc_ids)

static const struct btf_kfunc_id_set crib_kfunc_set = {
	.owner = THIS_MODULE,
	.set   = &crib_kfunc_ids,
};

static int __init crib_kfuncs_init(void)
{
	return register_btf_kfunc_id_set(BPF_PROG_TYPE_SYSCALL,
					 &crib_kfunc_set);
}

/*
 * Nothing to undo: the kfunc set goes away with the module's BTF. A module
 * without an exit function can never be unloaded; this one can once no
 * loaded program calls its kfuncs (the verifier pins the module for each
 * program that does). Built in, the exit function is discarded.
 */
static void __exit crib_kfuncs_exit(void)
{
}

/*
 * Built in, module_init() is a device initcall: BTF and the kfunc tables are
 * set up by then.
 */
module_init(crib_kfuncs_init);
module_exit(crib_kfuncs_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("CRIB: kfuncs for checkpointing processes from BPF");
