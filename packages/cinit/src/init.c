/*
 * fledge-init: PID 1 of a Volant initramfs plugin built by fledge.
 *
 * 1. mount devtmpfs on /dev (already mounted is fine) and put /dev/console on fds 0-2;
 * 2. mount proc on /proc, sysfs on /sys, tmpfs on /tmp (1777) and on /run (0755);
 * 3. exec the path named in /.volant_init, or /bin/kestrel when that file is absent or empty,
 *    with PATH, HOME and TERM set (the rest of the kernel's environment and init's arguments
 *    are passed on).
 *
 * It never waits for block devices. On any failure it prints "fledge-init: <what>: <errno
 * text>" to the console and powers the machine off, so a broken image stops at once instead
 * of ending in a kernel panic. Only libc wrappers are used: no architecture-specific syscall
 * numbers. Licensed Apache-2.0, part of @fledge/cinit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#define VOLANT_INIT "/.volant_init"
#define DEFAULT_PAYLOAD "/bin/kestrel"
#define MAX_ENV 64

extern char **environ;

static char *const fixed_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/",
	"TERM=linux",
};

static void put(const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* "fledge-init: <what>[ <arg>]: <errno text>" */
static void report(const char *what, const char *arg, int err)
{
	put("fledge-init: ");
	put(what);
	if (arg) {
		put(" ");
		put(arg);
	}
	put(": ");
	put(strerror(err));
	put("\n");
}

/* Power off; as PID 1 we must never return (the kernel would panic). */
static _Noreturn void power_off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	report("power off", NULL, errno);
	reboot(RB_HALT_SYSTEM);
	for (;;)
		pause();
}

static _Noreturn void fail(const char *what, const char *arg, int err)
{
	report(what, arg, err);
	power_off();
}

static void mount_fs(const char *type, const char *target, mode_t mode, unsigned long flags, const char *data)
{
	if (mkdir(target, mode) < 0 && errno != EEXIST)
		fail("mkdir", target, errno);
	if (mount(type, target, type, flags, data) < 0 && errno != EBUSY)
		fail("mount", target, errno);
}

static void open_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		fail("open", "/dev/console", errno);
	for (int i = 0; i <= 2; i++) {
		if (dup2(fd, i) < 0) /* dup2 clears O_CLOEXEC on the copy */
			fail("dup2", "/dev/console", errno);
	}
	if (fd > 2)
		close(fd);
}

/* fixed_env, then the kernel's other variables (no malloc: built in a static array). */
static char **payload_env(void)
{
	static char *env[MAX_ENV + 1];
	size_t n = 0;
	for (size_t i = 0; i < sizeof fixed_env / sizeof fixed_env[0]; i++)
		env[n++] = fixed_env[i];
	for (char **e = environ; e && *e && n < MAX_ENV; e++) {
		if (strncmp(*e, "PATH=", 5) && strncmp(*e, "HOME=", 5) && strncmp(*e, "TERM=", 5))
			env[n++] = *e;
	}
	env[n] = NULL;
	return env;
}

/* The payload's path: /.volant_init's first line without trailing whitespace, else kestrel. */
static const char *payload_path(void)
{
	static char buf[PATH_MAX];
	int fd = open(VOLANT_INIT, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return DEFAULT_PAYLOAD;
		fail("open", VOLANT_INIT, errno);
	}
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("read", VOLANT_INIT, errno);
		if (r == 0)
			break;
		len += (size_t)r;
		if (len == sizeof buf - 1)
			fail("read", VOLANT_INIT, ENAMETOOLONG);
	}
	close(fd);
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return len > 0 ? buf : DEFAULT_PAYLOAD;
}

int main(int argc, char **argv)
{
	if (getpid() != 1) {
		/* Run by hand on a host: mounting over /dev and powering off would be a disaster. */
		put("fledge-init: not running as PID 1 (it is the /init of a fledge initramfs); doing nothing\n");
		return 1;
	}

	mount_fs("devtmpfs", "/dev", 0755, MS_NOSUID, "mode=0755");
	open_console();
	mount_fs("proc", "/proc", 0555, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_fs("sysfs", "/sys", 0555, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_fs("tmpfs", "/tmp", 01777, MS_NOSUID | MS_NODEV, "mode=1777");
	mount_fs("tmpfs", "/run", 0755, MS_NOSUID | MS_NODEV, "mode=0755");

	if (chdir("/") < 0)
		fail("chdir", "/", errno);

	char *path = (char *)payload_path();
	char *no_args[] = { path, NULL };
	if (argc > 0)
		argv[0] = path; /* the kernel's extra init arguments follow, unchanged */
	execve(path, argc > 0 ? argv : no_args, payload_env());
	fail("exec", path, errno);
}
