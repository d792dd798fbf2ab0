/*
 * connrate: the new-connection rate and connect times of TCP, measured by a
 * client whose own cost is small next to the kernel's (issue 13): one epoll
 * loop, non-blocking connects, at most --concurrency in flight, every
 * connection closed with RST (SO_LINGER 0) as soon as it is up, so the client
 * keeps no TIME_WAIT and the director's entries expire in seconds.
 *
 *   lvs-connrate --target 203.0.113.100:80 --count 2000 --concurrency 32 \
 *                [--source 203.0.113.11 ...] [--timeout 10] [--samples]
 *
 * Prints one JSON object, the same fields as loadgen.holder's per-worker
 * summary (so loadgen.stats.merge_results pools them): attempted, connected,
 * failures by errno name, ramp_s (first connect to last outcome), active_s
 * (first connect to the last one that succeeded), ramp ([t, connected] every
 * 0.5 s) and, with --samples, samples_ms (every connect time). Bad input is
 * one line on stderr and exit 2. Targets and sources are IPv4 or [IPv6]:port;
 * several targets are used in turn, several sources in turn (bound with
 * IP_BIND_ADDRESS_NO_PORT, so each source yields a port per destination).
 *
 * Built by scripts/install.sh: cc -O2 -o .venv/bin/lvs-connrate loadgen/connrate.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#define MAX_ADDRS 64
#define RAMP_EVERY 0.5

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct pending {
	double started; /* 0: the slot is free */
	int fd;
};

static void usage_error(const char *what) {
	fprintf(stderr, "lvs-connrate: %s (usage: --target HOST:PORT --count N "
			"[--concurrency C] [--source ADDR]... [--timeout S] [--samples])\n", what);
	exit(2);
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* "1.2.3.4:80", "[2001:db8::1]:80", or with want_port 0 a bare address */
static int parse_addr(const char *text, int want_port, struct addr *out) {
	char host[INET6_ADDRSTRLEN + 2];
	const char *port = NULL;
	size_t n;
	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (!end || (size_t)(end - text - 1) >= sizeof(host))
			return -1;
		n = end - text - 1;
		memcpy(host, text + 1, n);
		host[n] = 0;
		if (want_port) {
			if (end[1] != ':')
				return -1;
			port = end + 2;
		} else if (end[1]) {
			return -1;
		}
	} else {
		const char *colon = want_port ? strrchr(text, ':') : NULL;
		n = colon ? (size_t)(colon - text) : strlen(text);
		if (want_port && !colon)
			return -1;
		if (n >= sizeof(host))
			return -1;
		memcpy(host, text, n);
		host[n] = 0;
		port = colon ? colon + 1 : NULL;
	}
	long p = 0;
	if (want_port) {
		char *rest;
		p = strtol(port, &rest, 10);
		if (!*port || *rest || p < 1 || p > 65535)
			return -1;
	}
	struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((unsigned short)p);
		out->len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((unsigned short)p);
		out->len = sizeof(*v6);
	} else {
		return -1;
	}
	return 0;
}

/* failures by errno name, a short fixed table: the few a connect gives */
#define NAMED(e) {e, #e}
static const struct {
	int err;
	const char *name;
} named[] = {NAMED(ECONNREFUSED), NAMED(ETIMEDOUT), NAMED(EHOSTUNREACH), NAMED(ENETUNREACH),
	     NAMED(ECONNRESET), NAMED(EADDRNOTAVAIL), NAMED(EADDRINUSE), NAMED(EMFILE),
	     NAMED(ENOBUFS), NAMED(EINVAL)};
#define KNOWN (sizeof(named) / sizeof(named[0]))
static long failures[KNOWN + 1]; /* the last slot: any other errno, "OTHER" */

static void count_failure(int err) {
	size_t i = 0;
	while (i < KNOWN && named[i].err != err)
		i++;
	failures[i]++;
}

static void close_with_rst(int fd) {
	struct linger l = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

int main(int argc, char **argv) {
	struct addr targets[MAX_ADDRS], sources[MAX_ADDRS];
	int ntargets = 0, nsources = 0, samples = 0;
	long count = -1, concurrency = 32;
	double timeout = 10.0;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (!strcmp(opt, "--samples")) {
			samples = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage_error("an option without its value");
		const char *val = argv[++i];
		char *rest;
		if (!strcmp(opt, "--target")) {
			if (ntargets == MAX_ADDRS || parse_addr(val, 1, &targets[ntargets]))
				usage_error("a bad --target (HOST:PORT or [IPv6]:PORT)");
			ntargets++;
		} else if (!strcmp(opt, "--source")) {
			if (nsources == MAX_ADDRS || parse_addr(val, 0, &sources[nsources]))
				usage_error("a bad --source (an IPv4 or IPv6 address)");
			nsources++;
		} else if (!strcmp(opt, "--count")) {
			count = strtol(val, &rest, 10);
			if (*rest || count < 1)
				usage_error("--count must be a positive integer");
		} else if (!strcmp(opt, "--concurrency")) {
			concurrency = strtol(val, &rest, 10);
			if (*rest || concurrency < 1 || concurrency > 65536)
				usage_error("--concurrency must be 1..65536");
		} else if (!strcmp(opt, "--timeout")) {
			timeout = strtod(val, &rest);
			if (*rest || !(timeout > 0))
				usage_error("--timeout must be a positive number of seconds");
		} else {
			usage_error("an unknown option");
		}
	}
	if (!ntargets || count < 0)
		usage_error("--target and --count are required");
	for (int s = 0; s < nsources; s++)
		for (int t = 0; t < ntargets; t++)
			if (sources[s].ss.ss_family != targets[t].ss.ss_family)
				usage_error("a --source of another family than a --target");

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if ((rlim_t)concurrency + 16 > rl.rlim_cur)
			usage_error("--concurrency exceeds the open-file limit");
	}

	struct pending *slots = calloc(concurrency, sizeof(*slots));
	double *times = samples ? malloc(count * sizeof(double)) : NULL;
	double *ramp_t = NULL;
	long *ramp_n = NULL, nramp = 0, ramp_cap = 0;
	struct epoll_event *events = calloc(concurrency, sizeof(*events));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!slots || !events || ep < 0 || (samples && !times)) {
		fprintf(stderr, "lvs-connrate: %s\n", strerror(errno));
		return 1;
	}

	long attempted = 0, connected = 0, done = 0, in_flight = 0;
	double first = now(), last_ok = first, next_ramp = first + RAMP_EVERY;
	int one = 1;
	while (done < count) {
		/* fill the free slots */
		for (long s = 0; s < concurrency && attempted < count; s++) {
			if (slots[s].started)
				continue;
			const struct addr *t = &targets[attempted % ntargets];
			int fd = socket(t->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			attempted++;
			if (fd < 0) {
				count_failure(errno);
				done++;
				continue;
			}
			if (nsources) {
				const struct addr *src = &sources[(attempted - 1) % nsources];
				setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
				if (bind(fd, (const struct sockaddr *)&src->ss, src->len) < 0) {
					count_failure(errno);
					close(fd);
					done++;
					continue;
				}
			}
			double started = now();
			if (connect(fd, (const struct sockaddr *)&t->ss, t->len) < 0 && errno != EINPROGRESS) {
				count_failure(errno);
				close(fd);
				done++;
				continue;
			}
			struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)s};
			epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			slots[s].fd = fd;
			slots[s].started = started;
			in_flight++;
		}
		int n = in_flight ? epoll_wait(ep, events, (int)concurrency, 50) : 0;
		double t_now = now();
		for (int i = 0; i < n; i++) {
			struct pending *p = &slots[events[i].data.u64];
			int err = 0;
			socklen_t len = sizeof(err);
			getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err) {
				count_failure(err);
			} else {
				if (samples)
					times[connected] = (t_now - p->started) * 1000.0;
				connected++;
				last_ok = t_now;
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
			close_with_rst(p->fd);
			p->started = 0;
			in_flight--;
			done++;
		}
		/* a connect the kernel still retries after --timeout is a failure */
		for (long s = 0; s < concurrency; s++) {
			if (slots[s].started && t_now - slots[s].started > timeout) {
				count_failure(ETIMEDOUT);
				epoll_ctl(ep, EPOLL_CTL_DEL, slots[s].fd, NULL);
				close_with_rst(slots[s].fd);
				slots[s].started = 0;
				in_flight--;
				done++;
			}
		}
		while (t_now >= next_ramp) {
			if (nramp == ramp_cap) {
				ramp_cap = ramp_cap ? 2 * ramp_cap : 256;
				ramp_t = realloc(ramp_t, ramp_cap * sizeof(double));
				ramp_n = realloc(ramp_n, ramp_cap * sizeof(long));
				if (!ramp_t || !ramp_n)
					return 1;
			}
			ramp_t[nramp] = next_ramp - first;
			ramp_n[nramp++] = connected;
			next_ramp += RAMP_EVERY;
		}
	}
	double end = now();

	printf("{\"tool\": \"lvs-connrate\", \"attempted\": %ld, \"connected\": %ld, \"held\": 0, "
	       "\"failures\": {", attempted, connected);
	const char *sep = "";
	for (size_t i = 0; i <= KNOWN; i++)
		if (failures[i]) {
			printf("%s\"%s\": %ld", sep, i < KNOWN ? named[i].name : "OTHER", failures[i]);
			sep = ", ";
		}
	printf("}, \"ramp_s\": %.3f, \"active_s\": %.3f, \"ramp\": [", end - first,
	       connected ? last_ok - first : 0.0);
	for (long i = 0; i < nramp; i++)
		printf("%s[%.1f, %ld]", i ? ", " : "", ramp_t[i], ramp_n[i]);
	printf("]");
	if (samples) {
		printf(", \"samples_ms\": [");
		for (long i = 0; i < connected; i++)
			printf("%s%.3f", i ? ", " : "", times[i]);
		printf("]");
	}
	printf("}\n");
	return 0;
}
