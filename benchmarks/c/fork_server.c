/* The reference: a classic fork-per-connection upper-case line server.
 *
 *     fork_server [PORT]        (default 0: the kernel picks one)
 *
 * Binds 127.0.0.1, listens with a backlog of 4096, prints one JSON ready
 * line ({"event": "listening", "port": P, "pid": N}) and accepts forever.
 * A SIGCHLD handler loops waitpid(-1, WNOHANG) until nothing is left to
 * collect (signals coalesce). Each child reads lines and sends each back
 * in upper case until EOF, then exits; 10 s of idleness end it. SIGTERM
 * keeps its default action, so killpg() stops the server and its children.
 * Written for zombiewatch's benchmarks (issue 8); loopback only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_sigchld(int sig)
{
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void serve(int conn)
{
    char buf[65536];
    struct timeval idle = {10, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
    for (;;) {
        ssize_t n = read(conn, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* EOF, timeout or reset */
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        if (write_all(conn, buf, (size_t)n) < 0)
            return;
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int one = 1;
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);

    int lsock = socket(AF_INET, SOCK_STREAM, 0);
    if (lsock < 0) {
        perror("socket");
        return 3;
    }
    setsockopt(lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)port);
    if (bind(lsock, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lsock, 4096) < 0) {
        perror("bind/listen");
        return 3;
    }
    getsockname(lsock, (struct sockaddr *)&addr, &len);
    printf("{\"event\": \"listening\", \"port\": %d, \"pid\": %d}\n", ntohs(addr.sin_port),
           (int)getpid());
    fflush(stdout);

    for (;;) {
        int conn = accept(lsock, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                usleep(100000); /* out of resources: leave the client in the backlog */
                continue;
            }
            perror("accept");
            return 3;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(lsock);
            signal(SIGCHLD, SIG_DFL);
            serve(conn);
            _exit(0);
        }
        /* pid < 0 (EAGAIN): refuse this one connection, keep accepting. */
        close(conn);
    }
}
