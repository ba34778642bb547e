/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by the dump programs (dump_files.bpf.c, dump_socks.bpf.c). Include
 * after vmlinux.h, bpf_helpers.h and crib_records.h.
 */
#ifndef __CRIB_DUMP_H
#define __CRIB_DUMP_H

#ifndef ENOSPC
#define ENOSPC 28
#endif

/*
 * Write the end record of a dump into ring buffer @rb: the dump's @error,
 * @nr records written before it and @dropped ones that did not fit.
 * Returns 0, or -ENOSPC if even the end record did not fit.
 */
static __always_inline int crib_emit_end(void *rb, int error, __u32 seq,
					 __u32 nr, __u32 dropped)
{
	struct crib_rec_end *end;

	end = bpf_ringbuf_reserve(rb, sizeof(*end), 0);
	if (!end)
		return -ENOSPC;
	__builtin_memset(end, 0, sizeof(*end));
	end->hdr.type = CRIB_REC_END;
	end->hdr.size = sizeof(*end);
	end->hdr.seq = seq;
	end->error = error;
	end->nr_records = nr;
	end->nr_dropped = dropped;
	bpf_ringbuf_submit(end, 0);
	return 0;
}

#endif /* __CRIB_DUMP_H */
