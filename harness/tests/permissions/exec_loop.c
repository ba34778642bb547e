// SPDX-License-Identifier: GPL-2.0
/*
 * The target of the exec race test (harness/tests/permissions.rs). One
 * program, installed twice: a plain copy and a setuid-root copy. Started as
 * an unprivileged user, it executes the two in turn for ever:
 *
 *   plain image:   open /dev/null at fds 3..PLAIN_FDS+2 (close-on-exec),
 *                  write 'u' to stdout, sleep 2 ms, execv(setuid copy)
 *   setuid image:  open the root-only marker at fd MARKER_FD (close-on-exec),
 *                  write 's', sleep 2 ms, drop back to the real uid/gid,
 *                  execv(plain)
 *
 * The marker is open only while the process runs the setuid image (root,
 * not dumpable), so a dumper that may look at the plain image must never
 * see it. The plain image's fds are close-on-exec and all below the
 * marker's: a walk of the plain image that goes on into the setuid image's
 * table without a new check, at whatever step, finds the marker next. The
 * bytes on stdout count the execs.
 *
 * usage: exec_loop <setuid copy> <plain copy> <marker>
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#define PLAIN_FDS	200
#define MARKER_FD	900

int main(int argc, char **argv)
{
	struct timespec nap = { 0, 2 * 1000 * 1000 };
	uid_t ruid = getuid();
	gid_t rgid = getgid();

	if (argc != 4)
		return 2;
	if (geteuid() == 0 && ruid != 0) {
		int fd = open(argv[3], O_RDONLY | O_CLOEXEC);

		if (fd < 0 || dup3(fd, MARKER_FD, O_CLOEXEC) < 0)
			return 3;
		close(fd);
		if (write(1, "s", 1) != 1)
			return 4;
		nanosleep(&nap, NULL);
		if (setresgid(rgid, rgid, rgid) || setresuid(ruid, ruid, ruid))
			return 5;
		execv(argv[2], argv);
		return 6;
	}
	for (int i = 0; i < PLAIN_FDS; i++)
		if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0)
			return 8;
	if (write(1, "u", 1) != 1)
		return 4;
	nanosleep(&nap, NULL);
	execv(argv[1], argv);
	return 7;
}
