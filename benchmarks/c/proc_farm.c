/* Process fixtures for zombiewatch's monitor benchmark (issue 8).
 *
 *     proc_farm tree LIVE ZOMBIES [SECONDS]
 *         fork LIVE children that sleep and ZOMBIES children that exit at
 *         once and are never collected; print a ready line when every
 *         child is in place, then wait.
 *     proc_farm churn SECONDS
 *         fork a child every 0.5 ms that lives 0-10 ms; collect finished
 *         children only every 20 ms, so zombies come and go all the time.
 *
 * Every mode is bounded: it ends by itself after SECONDS (default 600).
 * SIGTERM (what killpg sends) ends it early: the live children die of it
 * (default action) and the parent collects every child before it exits,
 * so nothing is left behind for init. The ready line is JSON:
 * {"event": "ready", "pid": N}.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL); /* EINTR by SIGTERM is fine: the loops check stop */
}

static void collect_all(void)
{
    kill(0, SIGTERM); /* our group: the live children, and us (handled) */
    while (wait(NULL) > 0 || errno == EINTR)
        ;
}

static int tree(long live, long zombies, double seconds)
{
    for (long i = 0; i < live + zombies && !stop; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("proc_farm: fork");
            collect_all();
            return 3;
        }
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            if (i < zombies)
                _exit(0);
            double end = now() + seconds + 5;
            while (now() < end)
                pause(); /* SIGTERM ends it; the bound ends it if we are gone */
            _exit(0);
        }
    }
    /* Zombies are in place once waitid(WNOWAIT) has seen that many exits;
     * counting exits without collecting them needs /proc, so poll it. */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    double give_up = now() + 30;
    while (!stop && now() < give_up) {
        long z = 0;
        FILE *f = fopen(path, "r");
        int pid;
        while (f && fscanf(f, "%d", &pid) == 1) {
            char stat_path[64], buf[256];
            snprintf(stat_path, sizeof stat_path, "/proc/%d/stat", pid);
            FILE *s = fopen(stat_path, "r");
            if (s && fgets(buf, sizeof buf, s)) {
                char *p = strrchr(buf, ')');
                if (p && p[2] == 'Z')
                    z++;
            }
            if (s)
                fclose(s);
        }
        if (f)
            fclose(f);
        if (z >= zombies)
            break;
        nap(0.005);
    }
    printf("{\"event\": \"ready\", \"pid\": %d}\n", (int)getpid());
    fflush(stdout);
    double end = now() + seconds;
    while (!stop && now() < end)
        nap(0.05);
    collect_all();
    return 0;
}

static int churn(double seconds)
{
    printf("{\"event\": \"ready\", \"pid\": %d}\n", (int)getpid());
    fflush(stdout);
    double end = now() + seconds, next_reap = now() + 0.02;
    unsigned seed = (unsigned)getpid();
    while (!stop && now() < end) {
        int life_us = (int)(rand_r(&seed) % 10000);
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            usleep((useconds_t)life_us);
            _exit(0);
        }
        nap(0.0005);
        if (now() >= next_reap) {
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
            next_reap = now() + 0.02;
        }
    }
    collect_all();
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    if (argc >= 4 && strcmp(argv[1], "tree") == 0)
        return tree(atol(argv[2]), atol(argv[3]), argc > 4 ? atof(argv[4]) : 600);
    if (argc >= 3 && strcmp(argv[1], "churn") == 0)
        return churn(atof(argv[2]));
    fprintf(stderr, "usage: proc_farm tree LIVE ZOMBIES [SECONDS] | churn SECONDS\n");
    return 2;
}
