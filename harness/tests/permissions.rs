//! Who may have another task's files through the task_file kfuncs, and when a walk must stop
//! (issue 8, items 1-3). Every file the kfuncs yield can be read through with
//! `bpf_dynptr_from_file()`, so they require what `pidfd_getfd()` requires: in-tree
//! `ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS)`, checked again before every step, each
//! check and lookup under the target's `exec_update_lock`; the module: own thread group or
//! `CAP_SYS_PTRACE` (kfuncs/README.md, "Permission model").
//!
//! - `exec_race`: a target execs a setuid-root program in a loop; the setuid image holds a
//!   root-only marker file (`permissions/exec_loop.c`). An unprivileged same-uid dumper walks
//!   it all the while and must never see the marker's inode. The target runs SCHED_FIFO on the
//!   dumper's CPU, so each of its wakeups preempts the dumper wherever it is, kfuncs included,
//!   and runs a whole exec before the dumper goes on; the plain image's 200 fds are
//!   close-on-exec and below the marker's, so a walk that goes on into the new image without a
//!   new check finds the marker next, at whatever step it was.
//! - `attach_level`: a target holds a file of its own and a root-only file it received over
//!   SCM_RIGHTS (which the dumper cannot open). A same-uid dumper that may not attach (Yama
//!   `ptrace_scope=1` and not an ancestor; or real uid other than its fs uid) gets nothing:
//!   no dump, no read through `get_file()` or `item->file`, no `bpf_fget_task()`. A dumper
//!   that may attach (control) gets both files on the patched kernel.
//! - `per_step`: a walk paused between two steps (perm_walk_pause spins until the harness
//!   resumes it) while the target calls `PR_SET_DUMPABLE(0)` or `setresuid()`: the walk
//!   yields nothing more, and reports `-EACCES`.
//!
//! On the stock kernel the module allows no unprivileged dumper at all (it cannot tell which
//! uid may attach without `ptrace_may_access()`), so there the unprivileged cases must see
//! `-EACCES` from the start, and a root dumper (CAP_SYS_PTRACE) is the control.
//!
//! Each test body runs in a guest booted from the built kernel (as root); the dumpers and
//! targets are forked children that drop to uid 1000. The host only starts the guest.
//!
//! Layout: the tests are registered at the end of this file; each case's body is one file under
//! `permissions/` (`exec_race.rs`, `attach_level.rs`, `per_step.rs`, and `socket_queues.rs`:
//! another uid's socket queues, issue 7 item 5), on shared fixtures: `child.rs` (forked
//! children with given credentials), `holder.rs` (the target), `progs.rs` (the BPF side),
//! `sysctl.rs` (Yama and RT-throttle guards).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crib_harness::dump::{decode_stream, DumpError, Dumper, RingbufProgram};
use crib_harness::file_read::{self, FileReader, Outcome, Via};
use crib_harness::kernel::Flavor;
use crib_harness::records::{crib_perm_ctx, crib_perm_sync};
use crib_harness::sock_dump::{self, Queue, SockDumper};
use crib_harness::target::Tmpfs;
use crib_harness::vm::{current_test_name, guest_test as run};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    dup2_stdout, execv, fork, pipe2, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid,
};
use rstest::rstest;

/// The unprivileged user of dumpers and targets, and another one.
const UID: u32 = 1000;
const GID: u32 = 1000;
const OTHER_UID: u32 = 2000;
const CAP_SETUID: u32 = 7;
/// What the kfuncs return (negated) and the dumps report when a dumper may not attach.
const EACCES: i32 = Errno::EACCES as i32;

const PERM_OBJ: &str = "permissions.bpf.o";
const PERM_MAP: &str = "perm_reads";
const PERM_SYNC: &str = "perm_sync";

/// 16 bytes each: what `crib_rec_read` carries of a file's start.
const OWN_CONTENT: &[u8; 16] = b"holder's own fil";
const SECRET_CONTENT: &[u8; 16] = b"root-only secret";
const MARKER_CONTENT: &[u8] = b"exec-loop marker";

fn step(what: &str) {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    eprintln!("[perm {:>7.2}s] {what}", t.as_secs_f64());
}

#[path = "permissions/attach_level.rs"]
mod attach_level;
#[path = "permissions/child.rs"]
mod child;
#[path = "permissions/exec_race.rs"]
mod exec_race;
#[path = "permissions/holder.rs"]
mod holder;
#[path = "permissions/per_step.rs"]
mod per_step;
#[path = "permissions/progs.rs"]
mod progs;
#[path = "permissions/socket_queues.rs"]
mod socket_queues;
#[path = "permissions/sysctl.rs"]
mod sysctl;

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_attach_level_yama_scm_rights(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), attach_level::run);
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_recheck_every_step(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), per_step::run);
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_exec_race_setuid(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), exec_race::run);
}

#[rstest]
#[case::stock(Flavor::Stock)]
#[case::patched(Flavor::Patched)]
fn permissions_other_uid_socket_queues(#[case] flavor: Flavor) {
    run(flavor, &current_test_name(), socket_queues::run);
}
