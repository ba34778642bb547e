/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Binary records CRIB dump programs write to their ring buffer, and the
 * contexts their loaders pass in through BPF_PROG_RUN. Included by the BPF
 * programs (after vmlinux.h) and by the Rust harness (through bindgen), so
 * both sides always agree on the layout. Fixed-size types only; every struct
 * is padded explicitly to a multiple of 8 bytes.
 */
#ifndef __CRIB_RECORDS_H
#define __CRIB_RECORDS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CRIB_COMM_LEN 16

enum crib_rec_type {
	CRIB_REC_HELLO = 1,	/* struct crib_rec_hello */
	CRIB_REC_FILE = 2,	/* struct crib_rec_file */
	CRIB_REC_END = 3,	/* struct crib_rec_end: last record of a dump */
	CRIB_REC_READ = 4,	/* struct crib_rec_read (file_read.bpf.c) */
	CRIB_REC_SOCK = 5,	/* struct crib_rec_sock + packets (dump_socks.bpf.c) */
	/* 6 and 7: per-packet item and data records, folded into CRIB_REC_SOCK */
	CRIB_REC_PATH = 8,	/* struct crib_rec_path: path of the last file record */
};

/* Common header of every record. */
struct crib_rec_hdr {
	__u16 type;		/* enum crib_rec_type */
	__u16 size;		/* size of the whole record in bytes (CRIB_REC_SOCK:
				 * of its fixed part) */
	__u32 seq;		/* 0, 1, 2, ... within one program run */
};

/* Context of the hello program. */
struct crib_hello_ctx {
	__u64 cookie;		/* echoed back in the record */
	__s32 fd;		/* a regular file the caller opened for reading */
	__u32 pad;
};

/* Who ran the program, and what a CRIB kfunc found at ctx->fd. */
struct crib_rec_hello {
	struct crib_rec_hdr hdr;
	__u64 cookie;
	__u64 ino;		/* i_ino of bpf_fget_task(current, fd); 0: NULL */
	__u32 pid;		/* thread id, as the kernel sees it (init pid ns) */
	__u32 tgid;
	__u32 uid;
	__u32 pad;
	char comm[CRIB_COMM_LEN];
};

/* Context of a file-table dump. */
struct crib_dump_ctx {
	__s32 pid;		/* target, in the caller's pid namespace */
	__u32 flags;		/* CRIB_DUMP_F_* */
};

/*
 * Follow every crib_rec_file with a crib_rec_path (needs the kfunc
 * bpf_iter_task_file_get_path(); without it the dump fails with
 * -EOPNOTSUPP before it starts).
 */
#define CRIB_DUMP_F_PATHS	(1U << 0)

enum crib_file_kind {
	CRIB_FILE_OTHER = 0,
	CRIB_FILE_REG,
	CRIB_FILE_DIR,
	CRIB_FILE_FIFO,
	CRIB_FILE_SOCK,
	CRIB_FILE_CHR,
	CRIB_FILE_BLK,
	CRIB_FILE_LNK,
	CRIB_FILE_ANON,		/* anon_inode: eventfd, epoll, signalfd, timerfd, pidfd, ... */
};

struct crib_rec_file {
	struct crib_rec_hdr hdr;
	__u32 fd;
	__u32 f_flags;		/* file->f_flags (O_* bits, as fdinfo "flags:" minus O_CLOEXEC) */
	__u32 f_mode;		/* file->f_mode (FMODE_* bits) */
	__u32 i_mode;		/* inode->i_mode (S_IF* and permission bits) */
	__u64 f_pos;
	__u64 ino;
	__u32 dev;		/* inode->i_sb->s_dev, kernel encoding (MAJOR << 20 | MINOR) */
	__u32 rdev;		/* inode->i_rdev for device files */
	__u32 kind;		/* enum crib_file_kind */
	__u32 cloexec;		/* 1 if FD_CLOEXEC is set */
	__u16 sk_family;	/* sockets only */
	__u16 sk_type;
	__u16 sk_protocol;
	__u16 pad;
	char anon_name[16];	/* anon_inode name ("[eventfd]", ...), else empty */
	__u32 mnt_id;		/* real_mount(f_path.mnt)->mnt_id, as fdinfo "mnt_id:" */
	__u32 pad1;
};

/* Room for a path: PATH_MAX, as procfs's readlink of /proc/<pid>/fd/<fd>. */
#define CRIB_PATH_MAX 4096

/*
 * A path, right after the file record of the same fd (CRIB_DUMP_F_PATHS).
 * Variable size: hdr.size = offsetof(path) + len, where len counts the
 * terminating NUL; len is 0 and error the negative errno of
 * bpf_iter_task_file_get_path() when there is no path.
 */
struct crib_rec_path {
	struct crib_rec_hdr hdr;
	__u32 fd;
	__s32 error;
	char path[CRIB_PATH_MAX];
};

struct crib_rec_end {
	struct crib_rec_hdr hdr;
	__s32 error;		/* 0, or the negative errno that ended the dump early */
	__u32 nr_records;	/* records written before this one */
	__u32 nr_dropped;	/* records the ring buffer had no room for */
	__u32 pad;
};

/*
 * What a program got when it read the start of one file through
 * bpf_dynptr_from_file() (file_read.bpf.c: which files a trusted file
 * pointer can be read through, on each kernel).
 */
enum crib_read_stage {
	CRIB_READ_OK = 0,	/* read len bytes into head */
	CRIB_READ_NO_REF,	/* the acquiring getter returned NULL */
	CRIB_READ_DYNPTR,	/* bpf_dynptr_from_file() failed with err */
	CRIB_READ_READ,		/* bpf_dynptr_read() failed with err */
};

#define CRIB_READ_HEAD 16

struct crib_rec_read {
	struct crib_rec_hdr hdr;
	__u32 fd;
	__u32 stage;		/* enum crib_read_stage */
	__s32 err;		/* negative errno of the failing call, else 0 */
	__u32 len;		/* bytes read into head */
	__u8 head[CRIB_READ_HEAD];
};

/*
 * Context of the programs of permissions.bpf.c (who may have a task's
 * files, and when a walk must stop).
 */
struct crib_perm_ctx {
	__s32 pid;		/* target, in the caller's pid namespace */
	__u32 fd;		/* perm_fget_read: the descriptor to get */
	__u32 pause_after;	/* perm_walk_pause: pause after this many elements */
	__u32 pad;
};

/*
 * Value of the "perm_sync" array map: how perm_walk_pause and the harness
 * hand over in the middle of a walk. The program sets paused and spins
 * until the harness sets resume (bounded: timed_out says it gave up).
 */
struct crib_perm_sync {
	__u32 paused;
	__u32 resume;
	__u32 timed_out;
	__u32 pad;
};

/*
 * Socket dumps (dump_socks.bpf.c). One crib_rec_sock record per socket of
 * the target, holding the socket and all its queued packets: the fixed part
 * (hdr.size bytes), then nr_items packets, each a struct crib_sock_item
 * followed by its len bytes and zero to seven bytes of padding to the next
 * multiple of 8 (items_size bytes in all). The program reserves the record
 * when it knows the snapshot's packet and byte counts but not each packet's
 * size, so the record runs on past the packets by at most 7 bytes a packet
 * plus CRIB_SOCK_SLACK, which are not data. A socket's packets can hold more
 * than the 64 KiB a 16-bit hdr.size counts: the ring buffer's record length
 * is the record's size. One crib_rec_end closes the dump.
 *
 * One record per socket, not one per packet or per chunk of a packet: the
 * ring buffer's reserve and submit, and user space's step to the next
 * record, are paid once per socket (issue 7, item 11: they were a fifth of
 * the program's time at seven records a socket).
 */
struct crib_sock_dump_ctx {
	__s32 pid;		/* target, in the caller's pid namespace */
	__s32 fd;		/* only this fd; -1: every socket */
	__u32 queues;		/* mask of (1 << enum crib_sock_queue), 0: all */
	__u32 flags;		/* CRIB_SOCK_DUMP_F_* */
};

/*
 * Only the fixed part of each socket's record (per-queue counts and bytes in
 * nr[] and bytes[], nr_items 0): no packets.
 */
#define CRIB_SOCK_DUMP_F_NO_ITEMS	(1U << 0)

/* Number of queues of enum crib_sock_queue (kfuncs/crib.h). */
#define CRIB_SOCK_NR_QUEUES 8
/*
 * The program copies a packet's bytes straight into the record, at most
 * CRIB_SOCK_CHUNK bytes per read kfunc call, and the read kfunc and
 * bpf_dynptr_data() take constant sizes: a read of n bytes gets a slice of
 * n rounded up to a power of two, at least CRIB_SOCK_ROOM_MIN (so at most
 * CRIB_SOCK_CHUNK), of which it writes n. The slice of the last read can
 * reach up to CRIB_SOCK_SLACK bytes past the packets.
 */
#define CRIB_SOCK_CHUNK 4096
#define CRIB_SOCK_ROOM_MIN 64
#define CRIB_SOCK_SLACK (CRIB_SOCK_CHUNK / 2)

struct crib_rec_sock {
	struct crib_rec_hdr hdr;
	__u32 fd;
	__s32 queue_err;	/* bpf_iter_sock_queue_new(): 0, or why no queue follows */
	__u16 family;		/* sk_family, sk_type, sk_protocol */
	__u16 type;
	__u16 protocol;
	__u8 state;		/* sk_state (TCP_* numbering, also for unix) */
	__u8 pad0;
	__u16 src_port;		/* host byte order: inet local port */
	__u16 dst_port;		/* host byte order: inet remote port */
	__u32 items_size;	/* bytes of packets after the fixed part */
	__u8 src_addr[16];	/* IPv4 in the first 4 bytes for AF_INET */
	__u8 dst_addr[16];
	/* From bpf_iter_sock_queue_get_info(): the snapshot's own values. */
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 write_seq;
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 cork_len;		/* UDP: corked payload bytes */
	__u32 nr[CRIB_SOCK_NR_QUEUES];	/* elements per queue */
	__u64 bytes[CRIB_SOCK_NR_QUEUES];	/* data bytes per queue */
	/* TCP, read from the tcp_sock (CO-RE) after the snapshot. */
	__u32 snd_wl1;
	__u32 snd_wnd;
	__u32 max_window;
	__u32 rcv_wnd;
	__u32 rcv_wup;
	__u32 mss_cache;
	__u8 snd_wscale;
	__u8 rcv_wscale;
	__u16 pad2;
	__u32 nr_items;		/* packets that follow */
};

/* One packet in a crib_rec_sock record; its len bytes follow. */
struct crib_sock_item {
	__u32 index;		/* 0, 1, ... within the socket */
	__u32 queue;		/* enum crib_sock_queue */
	__u32 len;		/* data bytes (after skip) */
	__u32 skip;		/* leading bytes read, acked or header room */
	__u32 seq;		/* TCP: [seq, end_seq), skip and SYN/FIN included */
	__u32 end_seq;
	__u32 flags;		/* CRIB_SQ_F_* */
	__u32 nr_fds;		/* unix: files passed with the message */
	__u16 src_port;		/* UDP receive: sender, network byte order */
	__u16 pad0;
	__u32 pad1;
	__u8 src_addr[16];
};

#endif /* __CRIB_RECORDS_H */
