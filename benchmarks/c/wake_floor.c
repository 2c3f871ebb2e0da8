/* The floor under any event watcher's cost, in C: the CPU of one bare
 * epoll wake-up on this machine (benchmarks/wake_floor.py runs it beside
 * the same loop in Python).
 *
 *     wake_floor [WAKES]        (default 3000; about 4 s)
 *
 * A child writes one byte to a pipe every millisecond; the parent waits in
 * epoll_wait, reads the byte and waits again. Prints the wake-ups and the
 * CPU of each, user and system. Bounded in count; the writer exits by
 * itself. Written for zombiewatch's benchmarks (issue 14).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double micros(struct timeval t) { return t.tv_sec * 1e6 + t.tv_usec; }

int main(int argc, char **argv)
{
    int wakes = argc > 1 ? atoi(argv[1]) : 3000;
    int fds[2];
    if (wakes < 1 || pipe(fds) < 0) {
        fprintf(stderr, "usage: %s [WAKES]\n", argv[0]);
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        struct timespec ms = {0, 1000000};
        for (int i = 0; i < wakes; i++) {
            if (write(fds[1], "x", 1) != 1)
                _exit(1);
            nanosleep(&ms, NULL);
        }
        _exit(0);
    }
    close(fds[1]);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[0]};
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    long seen = 0;
    char buf[4096];
    for (;;) {
        if (epoll_wait(ep, &ev, 1, 5000) <= 0)
            break; /* the writer is gone without closing: stop all the same */
        seen++;
        if (read(fds[0], buf, sizeof buf) <= 0)
            break;
    }
    getrusage(RUSAGE_SELF, &after);
    waitpid(pid, NULL, 0);
    double user = (micros(after.ru_utime) - micros(before.ru_utime)) / (seen ? seen : 1);
    double sys = (micros(after.ru_stime) - micros(before.ru_stime)) / (seen ? seen : 1);
    printf("%ld wake-ups: %.1f us of CPU each (user %.1f, system %.1f)\n", seen, user + sys, user,
           sys);
    return 0;
}
