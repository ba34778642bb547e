// SPDX-License-Identifier: GPL-2.0
/*
 * The target of the exec race test (harness/tests/permissions.rs). One
 * program, installed twice: a plain copy and a setuid-root copy. Started as
 * an unprivileged user, it executes the two in turn for ever:
 *
 *   plain image:   write 'u' to stdout, sleep 2 ms, execv(setuid copy)
 *   setuid image:  open the root-only marker (close-on-exec), write 's',
 *                  sleep 2 ms, drop back to the real uid/gid, execv(plain)
 *
 * The marker is open only while the process runs the setuid image (root,
 * not dumpable), so a dumper that may look at the plain image must never
 * see it. The bytes on stdout count the execs.
 *
 * usage: exec_loop <setuid copy> <plain copy> <marker>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec nap = { 0, 2 * 1000 * 1000 };
	uid_t ruid = getuid();
	gid_t rgid = getgid();

	if (argc != 4)
		return 2;
	if (geteuid() == 0 && ruid != 0) {
		if (open(argv[3], O_RDONLY | O_CLOEXEC) < 0)
			return 3;
		if (write(1, "s", 1) != 1)
			return 4;
		nanosleep(&nap, NULL);
		if (setresgid(rgid, rgid, rgid) || setresuid(ruid, ruid, ruid))
			return 5;
		execv(argv[2], argv);
		return 6;
	}
	if (write(1, "u", 1) != 1)
		return 4;
	nanosleep(&nap, NULL);
	execv(argv[1], argv);
	return 7;
}
