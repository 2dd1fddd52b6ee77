/*
 * fledge-guest: runs first in a VM started by `fledge run`, `fledge dev` or a boot check
 * (the kernel is told rdinit=/.fledge-run/guest), then execs the plugin's own /init as PID 1.
 *
 * 1. Prints "fledge-run: /init at <ms> ms" on the console: the guest's CLOCK_BOOTTIME when
 *    the kernel handed over to userspace, so the host can tell kernel time from /init time.
 * 2. Networking, only if the kernel has not done it: a kernel with its NIC driver and IP
 *    autoconfiguration built in (Volant's) has already applied the ip= argument, and this step
 *    does nothing. A modular distribution kernel has not: the host put the NIC's modules in
 *    /.fledge-run/modules (listed in load order in /.fledge-run/modules/order); they are
 *    loaded, then the ip=<client>::<gateway>:<netmask>:<hostname>:<device>:off argument of
 *    /proc/cmdline is applied as the kernel would (address, netmask, up, default route,
 *    hostname, loopback up).
 * 3. execs /init with the arguments and environment the kernel gave us. If the helper fails,
 *    it says why and still execs /init: networking is best effort, the plugin is what boots.
 *
 * /proc is mounted for step 2 and unmounted again, so /init finds the machine as the kernel
 * left it. Only libc wrappers: no architecture-specific syscall numbers except finit_module's,
 * which musl exposes through syscall(SYS_finit_module). Licensed Apache-2.0, part of @fledge/vm.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DIR_ "/.fledge-run"

static void put(const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void report(const char *what, const char *arg, int err)
{
	char buf[512];
	snprintf(buf, sizeof buf, "fledge-run: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(err));
	put(buf);
}

static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t r = read(fd, buf + len, size - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	return (int)len;
}

static void load_modules(void)
{
	static char order[4096];
	if (read_file(DIR_ "/modules/order", order, sizeof order) <= 0)
		return;
	for (char *name = strtok(order, "\n"); name; name = strtok(NULL, "\n")) {
		char path[256];
		snprintf(path, sizeof path, DIR_ "/modules/%s", name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			report("open", path, errno);
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
			report("load module", name, errno);
		close(fd);
	}
}

/* The n-th ':'-separated field of s (0-based) copied into out; "" when absent. */
static void field(const char *s, int n, char *out, size_t size)
{
	while (n > 0 && *s) {
		if (*s++ == ':')
			n--;
	}
	size_t i = 0;
	if (n == 0)
		while (s[i] && s[i] != ':' && s[i] != ' ' && s[i] != '\n' && i + 1 < size) {
			out[i] = s[i];
			i++;
		}
	out[i] = 0;
}

static int set_addr(int sock, const char *dev, unsigned long req, const char *addr)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
		return errno = EINVAL, -1;
	return ioctl(sock, req, &ifr);
}

static int up(int sock, const char *dev)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

static void configure_network(const char *cmdline)
{
	const char *ip = NULL;
	for (const char *p = cmdline; (p = strstr(p, "ip=")) != NULL; p += 3)
		if (p == cmdline || p[-1] == ' ')
			ip = p + 3;
	if (!ip)
		return;
	char client[64], gw[64], mask[64], host[65], dev[IFNAMSIZ];
	field(ip, 0, client, sizeof client);
	field(ip, 2, gw, sizeof gw);
	field(ip, 3, mask, sizeof mask);
	field(ip, 4, host, sizeof host);
	field(ip, 5, dev, sizeof dev);
	if (!client[0] || !dev[0])
		return;
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		report("socket", NULL, errno);
		return;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
	if (ioctl(sock, SIOCGIFINDEX, &ifr) != 0) {
		report("no network device", dev, errno);
		close(sock);
		return;
	}
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
	if (ioctl(sock, SIOCGIFADDR, &ifr) == 0) {
		/* the kernel applied ip= itself (IP autoconfiguration built in) */
		close(sock);
		return;
	}
	if (up(sock, "lo") != 0)
		report("up", "lo", errno);
	if (set_addr(sock, dev, SIOCSIFADDR, client) != 0)
		report("address", client, errno);
	if (mask[0] && set_addr(sock, dev, SIOCSIFNETMASK, mask) != 0)
		report("netmask", mask, errno);
	if (up(sock, dev) != 0)
		report("up", dev, errno);
	if (gw[0]) {
		struct rtentry rt;
		memset(&rt, 0, sizeof rt);
		struct sockaddr_in *a = (struct sockaddr_in *)&rt.rt_dst;
		a->sin_family = AF_INET;
		a = (struct sockaddr_in *)&rt.rt_genmask;
		a->sin_family = AF_INET;
		a = (struct sockaddr_in *)&rt.rt_gateway;
		a->sin_family = AF_INET;
		if (inet_pton(AF_INET, gw, &a->sin_addr) == 1) {
			rt.rt_flags = RTF_UP | RTF_GATEWAY;
			rt.rt_dev = dev;
			if (ioctl(sock, SIOCADDRT, &rt) != 0 && errno != EEXIST)
				report("default route via", gw, errno);
		}
	}
	if (host[0] && sethostname(host, strlen(host)) != 0)
		report("hostname", host, errno);
	close(sock);
}

int main(int argc, char **argv, char **envp)
{
	(void)argc;
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	char line[96];
	snprintf(line, sizeof line, "fledge-run: /init at %lld ms\n", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	put(line);

	int made = 0;
	int mounted = mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0;
	if (!mounted && errno == ENOENT && mkdir("/proc", 0555) == 0) {
		made = 1;
		mounted = mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0;
	}
	static char cmdline[8192];
	if (!mounted)
		report("mount /proc", NULL, errno);
	else if (read_file("/proc/cmdline", cmdline, sizeof cmdline) > 0) {
		load_modules();
		configure_network(cmdline);
	}
	if (mounted && umount("/proc") != 0)
		report("umount /proc", NULL, errno);
	if (made)
		rmdir("/proc");

	argv[0] = "/init";
	execve("/init", argv, envp);
	report("exec", "/init", errno);
	return 1;
}
