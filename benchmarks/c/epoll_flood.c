/* The reference flooder: one thread, epoll, non-blocking sockets.
 *
 *     epoll_flood HOST PORT CONNECTIONS CONCURRENCY [DEADLINE_S] [TIMEOUT_S] [LINES]
 *
 * Keeps CONCURRENCY connections open until CONNECTIONS have been made. Each
 * sends LINES distinct mixed-case lines (the same bytes as zombiewatch's
 * flooder), half-closes, and must get exactly the same bytes back in upper
 * case; it is then closed. A connection that takes longer than TIMEOUT_S
 * (default 10) fails; at DEADLINE_S (default 60) the flood stops, the
 * connections still open are counted as cut and the rest are never made.
 * Prints one JSON line:
 * connections, ok, failed, cut, elapsed_s, conn_per_s (right answers per
 * second) and the p50/p99 of whole-connection latency in ms.
 * Written for zombiewatch's benchmarks (issue 8); meant for loopback.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum phase { FREE, CONNECTING, READING };

struct slot {
    int fd;
    enum phase phase;
    double started;
    size_t got;
    size_t want;
    char expected[4096];
    char buf[4096];
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, long n, double p)
{
    if (n == 0)
        return 0.0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static struct sockaddr_in target;
static int epfd, lines = 1;
static long next_index, connections, ok, failed, cut, n_lat;
static double timeout_s = 10.0, *latencies;

static void finish(struct slot *s, int good)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    s->phase = FREE;
    if (good) {
        ok++;
        latencies[n_lat++] = now() - s->started;
    } else {
        failed++;
    }
}

/* Start the next connection in slot s; returns 0 when none is left. */
static int start(struct slot *s)
{
    if (next_index >= connections)
        return 0;
    long index = next_index++;
    char line[128];
    s->want = 0;
    for (int n = 0; n < lines; n++) {
        int len = snprintf(line, sizeof line, "zombiewatch conn %ld line %d: Hello\n", index, n);
        if (s->want + (size_t)len > sizeof s->expected)
            break;
        memcpy(s->buf + s->want, line, (size_t)len);
        s->want += (size_t)len;
    }
    for (size_t i = 0; i < s->want; i++) {
        char c = s->buf[i];
        s->expected[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    s->got = 0;
    s->started = now();
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0) {
        failed++;
        return 1;
    }
    s->phase = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    if (connect(s->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->phase = FREE;
        failed++;
        return 1;
    }
    epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
    return 1;
}

static void on_event(struct slot *s, unsigned events)
{
    if (s->phase == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & EPOLLERR)) {
            finish(s, 0);
            return;
        }
        /* The request is small: one write fits the socket buffer. */
        if (write(s->fd, s->buf, s->want) != (ssize_t)s->want) {
            finish(s, 0);
            return;
        }
        shutdown(s->fd, SHUT_WR);
        s->phase = READING;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
        return;
    }
    for (;;) {
        ssize_t n = read(s->fd, s->buf + s->got, sizeof s->buf - s->got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            finish(s, 0); /* EOF before the whole reply, or reset */
            return;
        }
        s->got += (size_t)n;
        if (s->got >= s->want) {
            finish(s, s->got == s->want && memcmp(s->buf, s->expected, s->want) == 0);
            return;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS CONCURRENCY [DEADLINE_S] [TIMEOUT_S] [LINES]\n",
                argv[0]);
        return 2;
    }
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1) {
        fprintf(stderr, "epoll_flood: HOST must be an IPv4 address\n");
        return 2;
    }
    connections = atol(argv[3]);
    long concurrency = atol(argv[4]);
    double deadline_s = argc > 5 ? atof(argv[5]) : 60.0;
    if (argc > 6)
        timeout_s = atof(argv[6]);
    if (argc > 7)
        lines = atoi(argv[7]);
    if (connections < 1 || concurrency < 1 || lines < 1 || lines > 64) {
        fprintf(stderr, "epoll_flood: bad counts\n");
        return 2;
    }
    if (concurrency > connections)
        concurrency = connections;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct slot *slots = calloc((size_t)concurrency, sizeof *slots);
    latencies = calloc((size_t)connections, sizeof *latencies);
    struct epoll_event *events = calloc((size_t)concurrency, sizeof *events);
    if (!slots || !latencies || !events) {
        perror("calloc");
        return 3;
    }
    epfd = epoll_create1(0);

    double began = now(), stop_at = began + deadline_s, last_sweep = began;
    for (;;) {
        /* Fill free slots; a slot whose start failed at once is filled again. */
        long open_now = 0;
        for (long i = 0; i < concurrency; i++) {
            while (slots[i].phase == FREE && start(&slots[i]) && slots[i].phase == FREE)
                ;
            open_now += slots[i].phase != FREE;
        }
        if (open_now == 0)
            break;
        double t = now();
        if (t >= stop_at)
            break;
        int n = epoll_wait(epfd, events, (int)concurrency, 50);
        for (int i = 0; i < n; i++)
            on_event(events[i].data.ptr, events[i].events);
        t = now();
        if (t - last_sweep >= 0.05) {
            last_sweep = t;
            for (long i = 0; i < concurrency; i++)
                if (slots[i].phase != FREE && t - slots[i].started > timeout_s)
                    finish(&slots[i], 0);
        }
    }
    double elapsed = now() - began;
    if (elapsed > deadline_s)
        elapsed = deadline_s;
    for (long i = 0; i < concurrency; i++)
        if (slots[i].phase != FREE) {
            close(slots[i].fd);
            slots[i].phase = FREE;
            cut++;
        }
    qsort(latencies, (size_t)n_lat, sizeof *latencies, cmp_double);
    printf("{\"connections\": %ld, \"ok\": %ld, \"failed\": %ld, \"cut\": %ld, "
           "\"elapsed_s\": %.4f, \"conn_per_s\": %.1f, "
           "\"latency_ms\": {\"p50\": %.3f, \"p99\": %.3f}}\n",
           connections, ok, failed, cut, elapsed, elapsed > 0 ? (double)ok / elapsed : 0.0,
           percentile(latencies, n_lat, 0.50) * 1e3, percentile(latencies, n_lat, 0.99) * 1e3);
    return failed || cut ? 1 : 0;
}
