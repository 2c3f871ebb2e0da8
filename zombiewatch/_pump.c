/* zombiewatch._pump: the event monitor's wake-ups, in a native thread.
 *
 * A Python watcher pays 11-15 us of CPU for each bare wake-up (the
 * interpreter, the GIL, the objects), and following a tree from kernel
 * events takes about two wake-ups per child: its fork event, whose pidfd
 * must be opened before its parent reaps it, and the reap itself, the
 * pidfd's HUP (docs/BENCHMARKS.md, "Kernel events against sampling").
 * This thread takes those wake-ups instead, holding no GIL: it reads the
 * connector's datagrams in batches, opens a pidfd for each child forked by
 * a member of the tree the moment its fork event is read, and stamps each
 * HUP with CLOCK_MONOTONIC when epoll returns it. It keeps what it saw as
 * records, in the order seen; the Python monitor takes them once per tick
 * (zombiewatch/_feeds.py) and applies the same rules to them as to the
 * events it reads itself. This file decides nothing about the tree beyond
 * "is the parent a member": membership is what Python declares (watch,
 * forget) plus the children opened here.
 *
 * reap(), apart from the pump, is the ground-truth record's waitpid
 * (zombiewatch/_record.py); see its comment.
 *
 * Records: (what, timestamp_ns, six ints).
 *   FORK: parent pid, parent tgid, child pid, child tgid, watch id (0: not
 *         tried here; -1: tried, and the child was reaped already or no
 *         descriptor was left), 0.
 *   EXIT: pid, tgid, exit code, exit signal, parent pid, parent tgid (as
 *         the kernel sends them).
 *   HUP:  pid, watch id, 0, 0, 0, 0; the time is the wake-up's. The watch
 *         ends with it: its pidfd is closed, and a reaped process is no
 *         member (it forks no more).
 * A watch id names one pidfd: a pid may name two processes over a run, an
 * id never does.
 *
 * Within one wake-up the connector is drained before the HUPs are
 * recorded, as the Python monitor does: a parent's exit must be known
 * before the reaps of the zombies it left to an adopter (docs/DESIGN.md,
 * "Handed-off zombies").
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define EV_FORK 0x00000001u /* PROC_EVENT_FORK, <linux/cn_proc.h> */
#define EV_EXIT 0x80000000u /* PROC_EVENT_EXIT */
#define EV_HUP 0x40000000u  /* ours: a pidfd's HUP, the reap */

/* nlmsghdr (16) + cn_msg (20), then struct proc_event: what, cpu,
 * timestamp_ns, and the event's union (six ints for fork and exit). */
#define EV_OFFSET 36
#define EV_SIZE (EV_OFFSET + 16 + 24)

#define TAG_NETLINK UINT64_MAX
#define TAG_STOP (UINT64_MAX - 1)
#define BATCH 64       /* datagrams per recvmmsg, epoll events per wait */
#define THREAD_ROUNDS 16 /* batches the thread reads per round */
#define DGRAM 256      /* an event is 76 bytes */
/* Records held for the monitor: it takes them every tick (10 ms by
 * default), so this is a stalled monitor's margin. Past it the thread
 * stops reading, the socket fills and the kernel counts the loss (ENOBUFS),
 * which the monitor reports and repairs with a walk. */
#define MAX_RECORDS (1u << 20)

typedef struct {
    uint32_t what;
    uint64_t ts;
    int32_t f[6];
} record;

typedef struct {
    int32_t pid; /* 0: empty; -1: deleted */
    int32_t fd;  /* -1: a member without a pidfd (the root, an unwatched one) */
    uint32_t id;
} entry;

typedef struct Pump {
    PyObject_HEAD
    int nl_fd;   /* the connector's socket: borrowed, the Connector closes it */
    int exit_fd; /* its socket of exit events where they come apart; else -1 */
    int ep_fd;
    int stop_fd;
    pthread_t thread;
    int inited;   /* __init__ ran (once only; its fds are -1 until then) */
    int closing;  /* release() began */
    int running;  /* a thread to join */
    int stopping;
    pthread_mutex_t mu;
    record *recs;
    size_t nrecs, caprecs;
    entry *table; /* open addressing on pid: the members and their pidfds */
    size_t tcap, tused;
    entry *retired; /* pidfds of processes whose pid went to a new one */
    size_t nretired, capretired;
    uint32_t next_id;
    unsigned long long lost; /* ENOBUFS: the kernel dropped events */
    unsigned long long wakeups;
    struct Pump *next_open; /* the open pumps, for fork() */
    char bufs[BATCH][DGRAM];
} Pump;

/* -- fork() -----------------------------------------------------------------
 * A process that forks while a pump runs (a runner starting a command, a
 * test forking a worker) gives its child a copy of each pump without its
 * thread, and of each mutex in whatever state the thread left it. So every
 * fork waits for the pumps' locks, and the child starts with them free and
 * each pump marked as having no thread: it still works there, reading only
 * when taken from, and closing it joins nothing. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct Pump *open_pumps;

static void before_fork(void) {
    pthread_mutex_lock(&open_lock);
    for (struct Pump *p = open_pumps; p != NULL; p = p->next_open) pthread_mutex_lock(&p->mu);
}

static void after_fork_parent(void) {
    for (struct Pump *p = open_pumps; p != NULL; p = p->next_open) pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&open_lock);
}

static void after_fork_child(void) {
    for (struct Pump *p = open_pumps; p != NULL; p = p->next_open) {
        pthread_mutex_unlock(&p->mu);
        p->running = 0;
    }
    pthread_mutex_unlock(&open_lock);
}

static void opened(struct Pump *p) {
    pthread_mutex_lock(&open_lock);
    p->next_open = open_pumps;
    open_pumps = p;
    pthread_mutex_unlock(&open_lock);
}

static void closed(struct Pump *p) {
    pthread_mutex_lock(&open_lock);
    for (struct Pump **at = &open_pumps; *at != NULL; at = &(*at)->next_open) {
        if (*at == p) {
            *at = p->next_open;
            break;
        }
    }
    pthread_mutex_unlock(&open_lock);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* -- the members' table ------------------------------------------------- */

static entry *find(Pump *p, int32_t pid) {
    size_t mask = p->tcap - 1;
    for (size_t i = ((uint32_t)pid * 2654435761u) & mask;; i = (i + 1) & mask) {
        entry *e = &p->table[i];
        if (e->pid == pid) return e;
        if (e->pid == 0) return NULL;
    }
}

/* Rehash without the deleted slots; double only if the members need it
 * (a long watch deletes as many members as it adds). */
static int grow(Pump *p) {
    size_t old = p->tcap, live = 0;
    entry *was = p->table;
    for (size_t i = 0; i < old; i++) live += was[i].pid > 0;
    size_t cap = live * 4 > old ? old * 2 : old;
    entry *table = calloc(cap, sizeof(entry));
    if (table == NULL) return -1;
    p->table = table;
    p->tcap = cap;
    p->tused = 0;
    for (size_t i = 0; i < old; i++) {
        if (was[i].pid <= 0) continue;
        size_t mask = p->tcap - 1;
        size_t j = ((uint32_t)was[i].pid * 2654435761u) & mask;
        while (table[j].pid != 0) j = (j + 1) & mask;
        table[j] = was[i];
        p->tused++;
    }
    free(was);
    return 0;
}

/* The member ``pid``'s entry, made if new; NULL only without memory. */
static entry *member(Pump *p, int32_t pid) {
    entry *e = find(p, pid);
    if (e != NULL) return e;
    if ((p->tused + 1) * 2 > p->tcap && grow(p) < 0) return NULL;
    size_t mask = p->tcap - 1;
    size_t i = ((uint32_t)pid * 2654435761u) & mask;
    while (p->table[i].pid > 0) i = (i + 1) & mask;
    if (p->table[i].pid == 0) p->tused++; /* a deleted slot is counted already */
    e = &p->table[i];
    e->pid = pid;
    e->fd = -1;
    e->id = 0;
    return e;
}

static void retire(Pump *p, entry *e) {
    if (p->nretired == p->capretired) {
        size_t cap = p->capretired ? p->capretired * 2 : 16;
        entry *r = realloc(p->retired, cap * sizeof(entry));
        if (r == NULL) { /* keep the pid's newest process; the old one's HUP is lost */
            close(e->fd);
            return;
        }
        p->retired = r;
        p->capretired = cap;
    }
    p->retired[p->nretired++] = *e;
}

/* True if the process of ``fd`` exited and was collected: its pid may name
 * another process now (docs/FACTS.md, "Kernel events"). */
static int collected(int fd) {
    struct pollfd q = {fd, POLLIN, 0};
    if (poll(&q, 1, 0) != 1) return 0; /* running */
    return syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) < 0 && errno == ESRCH;
}

/* Watch ``pid``: its pidfd, registered for HUP only, once. Returns the
 * watch id, or 0 if the process is gone (ESRCH) or no descriptor is left. */
static uint32_t open_watch(Pump *p, int32_t pid) {
    entry *e = member(p, pid);
    if (e == NULL) return 0;
    if (e->fd >= 0) {
        if (!collected(e->fd)) return e->id; /* the same process */
        retire(p, e);
        e->fd = -1;
        e->id = 0;
    }
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        /* Gone (ESRCH): a reaped process forks no more, so it is no member
         * either. Out of descriptors: a live member, unwatched. */
        if (errno == ESRCH) e->pid = -1;
        return 0;
    }
    /* Records carry ids as ints: 1..INT32_MAX, then round again (an id
     * from 2^31 watches ago is long closed). */
    uint32_t id = p->next_id >= INT32_MAX ? 1 : p->next_id + 1;
    p->next_id = id;
    /* No event bits: epoll adds HUP and ERR to any registration, and POLLIN
     * at the exit would be a wake-up per child for nothing. Level-triggered:
     * a HUP the thread has taken from epoll but not yet recorded (it waits
     * for the lock) is still there for take()'s own look, so a take never
     * misses a reap that happened before it; whichever records it first
     * closes the pidfd, and the other finds the watch ended. */
    struct epoll_event ev = {.events = 0, .data.u64 = ((uint64_t)id << 32) | (uint32_t)pid};
    if (epoll_ctl(p->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return 0;
    }
    e->fd = fd;
    e->id = id;
    return id;
}

static entry *by_id(Pump *p, int32_t pid, uint32_t id, size_t *retired_at);

/* True if watch ``id`` of ``pid`` is of a zombie: exited, not collected. */
static int uncollected(Pump *p, int32_t pid, uint32_t id) {
    size_t at;
    entry *e = by_id(p, pid, id, &at);
    if (e == NULL || e->fd < 0) return 0; /* ended with its HUP: collected */
    struct pollfd q = {e->fd, POLLIN, 0};
    if (poll(&q, 1, 0) != 1 || !(q.revents & POLLIN)) return 0; /* running */
    if (syscall(SYS_pidfd_send_signal, e->fd, 0, NULL, 0) == 0) return 1;
    return errno == EPERM; /* another user's: it exists all the same */
}

static entry *by_id(Pump *p, int32_t pid, uint32_t id, size_t *retired_at) {
    entry *e = find(p, pid);
    *retired_at = SIZE_MAX;
    if (e != NULL && e->id == id) return e;
    for (size_t i = 0; i < p->nretired; i++) {
        if (p->retired[i].pid == pid && p->retired[i].id == id) {
            *retired_at = i;
            return &p->retired[i];
        }
    }
    return NULL;
}

/* -- reading ---------------------------------------------------------------- */

static void add(Pump *p, uint32_t what, uint64_t ts, const int32_t f[6]) {
    if (p->nrecs == p->caprecs) {
        size_t cap = p->caprecs * 2;
        record *r = realloc(p->recs, cap * sizeof(record));
        if (r == NULL) {
            p->lost++;
            return;
        }
        p->recs = r;
        p->caprecs = cap;
    }
    record *r = &p->recs[p->nrecs++];
    r->what = what;
    r->ts = ts;
    memcpy(r->f, f, sizeof(r->f));
}

/* Read the datagrams waiting on socket ``fd`` (under the lock), at most
 * ``rounds`` batches of them (0: all). */
static void drain(Pump *p, int fd, int rounds) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int round = 0; rounds == 0 || round < rounds; round++) {
        if (p->nrecs >= MAX_RECORDS) return; /* the monitor is stalled; see MAX_RECORDS */
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = p->bufs[i];
            iov[i].iov_len = DGRAM;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == ENOBUFS) { /* events dropped; the socket still works */
                p->lost++;
                continue;
            }
            if (errno == EINTR) continue;
            return; /* EAGAIN: empty */
        }
        for (int i = 0; i < n; i++) {
            const char *b = p->bufs[i];
            if (msgs[i].msg_len < EV_SIZE) continue;
            uint32_t what;
            uint64_t ts;
            int32_t f[6];
            memcpy(&what, b + EV_OFFSET, 4);
            memcpy(&ts, b + EV_OFFSET + 8, 8);
            memcpy(f, b + EV_OFFSET + 16, sizeof(f));
            if (what == EV_FORK) {
                /* A child (not a thread) of a member: watch it now, before
                 * its parent can reap it. */
                int32_t id = 0;
                if (f[2] == f[3] && find(p, f[1]) != NULL) {
                    id = (int32_t)open_watch(p, f[3]);
                    if (id == 0) id = -1; /* gone already: no use trying again */
                }
                f[4] = id;
                f[5] = 0;
            } else if (what != EV_EXIT) {
                continue; /* the subscription's ack, or another kind */
            }
            add(p, what, ts, f);
        }
        if (n < BATCH) return;
    }
}

/* Merge the records [a, b) and [b, nrecs), each in the order read, into
 * one in the kernel's time order. */
static void merge(Pump *p, size_t a, size_t b) {
    size_t end = p->nrecs, i = a, j = b, k = 0;
    record *out = malloc((end - a) * sizeof(record));
    if (out == NULL) return; /* left as read: the monitor copes with any order */
    while (i < b && j < end) out[k++] = p->recs[j].ts < p->recs[i].ts ? p->recs[j++] : p->recs[i++];
    while (i < b) out[k++] = p->recs[i++];
    while (j < end) out[k++] = p->recs[j++];
    memcpy(&p->recs[a], out, k * sizeof(record));
    free(out);
}

/* Close watch ``id`` of ``pid`` and end it (and the membership, if it is
 * the pid's current one). */
static void end_watch(Pump *p, int32_t pid, uint32_t id) {
    size_t at;
    entry *e = by_id(p, pid, id, &at);
    if (e == NULL) return;
    close(e->fd); /* which unregisters it from epoll */
    if (at != SIZE_MAX) {
        p->retired[at] = p->retired[--p->nretired];
    } else {
        e->pid = -1;
    }
}

/* One round: the connector, then the HUPs ``ready`` returned at ``ts``.
 * With a socket of exit events apart (``exit_fd``, which wakes nobody: an
 * exit event carries its own time and needs no prompt answer), its events
 * are read first and merged with the others by their time. */
static void handle(Pump *p, struct epoll_event *ready, int n, uint64_t ts, int rounds) {
    size_t a = p->nrecs;
    if (p->exit_fd >= 0) drain(p, p->exit_fd, rounds);
    size_t b = p->nrecs;
    drain(p, p->nl_fd, rounds);
    if (a < b && b < p->nrecs) merge(p, a, b);
    for (int i = 0; i < n; i++) {
        uint64_t tag = ready[i].data.u64;
        if (tag == TAG_NETLINK || tag == TAG_STOP) continue;
        int32_t pid = (int32_t)(uint32_t)(tag & 0xffffffffu);
        uint32_t id = (uint32_t)(tag >> 32);
        size_t at;
        if (by_id(p, pid, id, &at) == NULL) continue; /* recorded by the other look, or forgotten */
        int32_t f[6] = {pid, (int32_t)id, 0, 0, 0, 0};
        add(p, EV_HUP, ts, f);
        /* Reaped: the watch has told all it can. A reaped process forks no
         * more, so its membership ends too. */
        end_watch(p, pid, id);
    }
}

static void *loop(void *arg) {
    Pump *p = arg;
    struct epoll_event ready[BATCH];
    for (;;) {
        int n = epoll_wait(p->ep_fd, ready, BATCH, -1);
        if (n < 0 && errno != EINTR) break;
        uint64_t ts = now_ns();
        pthread_mutex_lock(&p->mu);
        if (p->stopping) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->wakeups++;
        int stalled = p->nrecs >= MAX_RECORDS;
        /* A bounded round, so a Python call waiting for the lock is not held
         * up for long by a host-wide burst; epoll wakes us again at once
         * for the rest. */
        if (n > 0) handle(p, ready, n, ts, THREAD_ROUNDS);
        pthread_mutex_unlock(&p->mu);
        if (stalled) { /* the connector stays readable: do not spin on it */
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

/* -- the Python type ---------------------------------------------------------- */

/* Lock the pump from Python. While the lock is busy, wait for it without
 * the GIL, but never hold the lock while waiting for the GIL: a thread
 * that forks holds the GIL and takes every pump's lock (before_fork), so
 * the two waits would deadlock (a test run hung so). */
static void lock_pump(Pump *p) {
    while (pthread_mutex_trylock(&p->mu) != 0) {
        Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&p->mu);
        pthread_mutex_unlock(&p->mu);
        Py_END_ALLOW_THREADS
    }
}

static void release(Pump *p) {
    if (!p->inited || p->closing) return; /* never opened, or closing already */
    p->closing = 1;
    /* Marked before the GIL goes: a child forked during the join must not
     * join a thread it does not have. */
    int joined = p->running;
    p->running = 0;
    if (joined) {
        lock_pump(p);
        p->stopping = 1;
        pthread_mutex_unlock(&p->mu);
        uint64_t one = 1;
        ssize_t w = write(p->stop_fd, &one, sizeof(one));
        (void)w;
        Py_BEGIN_ALLOW_THREADS pthread_join(p->thread, NULL);
        Py_END_ALLOW_THREADS
    }
    closed(p);
    for (size_t i = 0; p->table != NULL && i < p->tcap; i++)
        if (p->table[i].pid > 0 && p->table[i].fd >= 0) close(p->table[i].fd);
    for (size_t i = 0; i < p->nretired; i++) close(p->retired[i].fd);
    free(p->table);
    free(p->retired);
    free(p->recs);
    p->table = p->retired = NULL;
    p->recs = NULL;
    p->tcap = p->nretired = p->nrecs = 0;
    int *fds[] = {&p->ep_fd, &p->stop_fd, &p->nl_fd, &p->exit_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0) close(*fds[i]);
        *fds[i] = -1;
    }
}

static int Pump_init(Pump *p, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"netlink_fd", "root", "exit_fd", "thread", NULL};
    int nl_fd, root, exit_fd = -1, thread = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|ip", kwlist, &nl_fd, &root, &exit_fd,
                                     &thread))
        return -1;
    if (p->inited) {
        PyErr_SetString(PyExc_RuntimeError, "a Pump is made once");
        return -1;
    }
    if (root <= 0) {
        PyErr_SetString(PyExc_ValueError, "root must be a pid");
        return -1;
    }
    p->inited = 1;
    p->nl_fd = p->exit_fd = p->ep_fd = p->stop_fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    /* Copies of the connector's sockets, closed with the pump: read by
     * number, a socket closed first would leave the number to any file. */
    p->nl_fd = fcntl(nl_fd, F_DUPFD_CLOEXEC, 0);
    if (p->nl_fd < 0 || (exit_fd >= 0 && (p->exit_fd = fcntl(exit_fd, F_DUPFD_CLOEXEC, 0)) < 0)) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    p->tcap = 1024;
    p->table = calloc(p->tcap, sizeof(entry));
    p->caprecs = 4096;
    p->recs = malloc(p->caprecs * sizeof(record));
    if (p->table == NULL || p->recs == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    p->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->ep_fd < 0 || p->stop_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event nl = {.events = EPOLLIN, .data.u64 = TAG_NETLINK};
    struct epoll_event st = {.events = EPOLLIN, .data.u64 = TAG_STOP};
    if (epoll_ctl(p->ep_fd, EPOLL_CTL_ADD, p->nl_fd, &nl) < 0 ||
        epoll_ctl(p->ep_fd, EPOLL_CTL_ADD, p->stop_fd, &st) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (member(p, root) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    opened(p); /* before the thread: a fork from now on finds it */
    if (!thread) return 0; /* read only when taken from, as in a forked child */
    /* The thread blocks every signal, so the kernel delivers them to the
     * interpreter's threads, which run the handlers. */
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &was);
    int err = pthread_create(&p->thread, NULL, loop, p);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    p->running = 1;
    return 0;
}

static PyObject *Pump_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Pump *p = (Pump *)PyType_GenericNew(type, args, kwds);
    if (p != NULL) p->nl_fd = p->exit_fd = p->ep_fd = p->stop_fd = -1;
    return (PyObject *)p;
}

static void Pump_dealloc(Pump *p) {
    release(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int check_open(Pump *p) {
    if (!p->inited || p->closing || p->table == NULL) {
        PyErr_SetString(PyExc_ValueError, "the pump is closed");
        return -1;
    }
    return 0;
}

static PyObject *Pump_take(Pump *p, PyObject *Py_UNUSED(ignored)) {
    if (check_open(p) < 0) return NULL;
    struct epoll_event ready[BATCH];
    record *recs;
    size_t n;
    lock_pump(p);
    /* What the thread has not woken for yet, as a look at this moment. */
    int k = epoll_wait(p->ep_fd, ready, BATCH, 0);
    handle(p, ready, k > 0 ? k : 0, now_ns(), 0);
    recs = p->recs;
    n = p->nrecs;
    p->caprecs = 4096;
    p->recs = malloc(p->caprecs * sizeof(record));
    p->nrecs = 0;
    if (p->recs == NULL) { /* keep the old buffer; report the failure */
        p->recs = recs;
        p->caprecs = n > 4096 ? n : 4096;
        p->nrecs = n;
        pthread_mutex_unlock(&p->mu);
        return PyErr_NoMemory();
    }
    pthread_mutex_unlock(&p->mu);
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out != NULL && i < n; i++) {
        record *r = &recs[i];
        PyObject *t = Py_BuildValue("(IKiiiiii)", r->what, (unsigned long long)r->ts, r->f[0],
                                    r->f[1], r->f[2], r->f[3], r->f[4], r->f[5]);
        if (t == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    free(recs);
    return out;
}

/* A pid from Python: a process's, never 0 or negative (the table's
 * empty and deleted slots). */
static int pid_arg(PyObject *arg, int32_t *pid) {
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (value <= 0 || value > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "not a pid: %ld", value);
        return -1;
    }
    *pid = (int32_t)value;
    return 0;
}

static int watch_args(Pump *p, PyObject *args, int32_t *pid, uint32_t *id) {
    PyObject *pid_obj;
    unsigned int watch;
    if (check_open(p) < 0 || !PyArg_ParseTuple(args, "OI", &pid_obj, &watch)) return -1;
    if (pid_arg(pid_obj, pid) < 0) return -1;
    *id = watch;
    return 0;
}

static PyObject *Pump_watch(Pump *p, PyObject *arg) {
    int32_t pid;
    if (check_open(p) < 0 || pid_arg(arg, &pid) < 0) return NULL;
    lock_pump(p);
    uint32_t id = open_watch(p, pid);
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromUnsignedLong(id);
}

static PyObject *Pump_fd(Pump *p, PyObject *args) {
    int32_t pid;
    uint32_t id;
    if (watch_args(p, args, &pid, &id) < 0) return NULL;
    size_t at;
    lock_pump(p);
    entry *e = id ? by_id(p, pid, id, &at) : NULL;
    int fd = e != NULL ? e->fd : -1;
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromLong(fd);
}

static PyObject *Pump_uncollected(Pump *p, PyObject *args) {
    int32_t pid;
    uint32_t id;
    if (watch_args(p, args, &pid, &id) < 0) return NULL;
    lock_pump(p); /* the thread may end the watch with its HUP meanwhile */
    int zombie = id ? uncollected(p, pid, id) : 0;
    pthread_mutex_unlock(&p->mu);
    return PyBool_FromLong(zombie);
}

static PyObject *Pump_forget(Pump *p, PyObject *args) {
    int32_t pid;
    uint32_t id;
    if (watch_args(p, args, &pid, &id) < 0) return NULL;
    lock_pump(p);
    if (id != 0) {
        end_watch(p, pid, id);
    } else {
        entry *e = find(p, pid);
        if (e != NULL && e->fd < 0) e->pid = -1; /* a member without a pidfd */
    }
    pthread_mutex_unlock(&p->mu);
    Py_RETURN_NONE;
}

static PyObject *Pump_close(Pump *p, PyObject *Py_UNUSED(ignored)) {
    release(p);
    Py_RETURN_NONE;
}

static PyObject *Pump_get_lost(Pump *p, void *Py_UNUSED(closure)) {
    if (!p->inited) return PyLong_FromLong(0);
    lock_pump(p);
    unsigned long long lost = p->lost;
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromUnsignedLongLong(lost);
}

static PyObject *Pump_get_wakeups(Pump *p, void *Py_UNUSED(closure)) {
    if (!p->inited) return PyLong_FromLong(0);
    lock_pump(p);
    unsigned long long n = p->wakeups;
    pthread_mutex_unlock(&p->mu);
    return PyLong_FromUnsignedLongLong(n);
}

static PyMethodDef Pump_methods[] = {
    {"take", (PyCFunction)Pump_take, METH_NOARGS,
     "take() -> list of (what, ts_ns, six ints): what was seen since the last take, oldest first."},
    {"watch", (PyCFunction)Pump_watch, METH_O,
     "watch(pid) -> id: make pid a member and watch it for its reap (0: gone, or no descriptor)."},
    {"fd", (PyCFunction)Pump_fd, METH_VARARGS,
     "fd(pid, id) -> the watch's pidfd, or -1 (the thread may close it at its HUP)."},
    {"uncollected", (PyCFunction)Pump_uncollected, METH_VARARGS,
     "uncollected(pid, id) -> True if that watch's process exited and was not collected."},
    {"forget", (PyCFunction)Pump_forget, METH_VARARGS,
     "forget(pid, id): close that watch and end the membership (id 0: a member without one).\n"
     "A watch whose HUP was taken is closed already."},
    {"close", (PyCFunction)Pump_close, METH_NOARGS, "Stop the thread and close every pidfd."},
    {NULL}};

static PyGetSetDef Pump_getset[] = {
    {"lost", (getter)Pump_get_lost, NULL, "times the kernel dropped events (ENOBUFS)", NULL},
    {"wakeups", (getter)Pump_get_wakeups, NULL, "the thread's wake-ups so far", NULL},
    {NULL}};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zombiewatch._pump.Pump",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Pump(netlink_fd, root, exit_fd=-1, thread=True): follow root's tree from a\n"
              "subscribed connector socket (and its socket of exit events, read but never\n"
              "waited on). Without a thread it reads only when taken from.",
    .tp_new = Pump_new,
    .tp_init = (initproc)Pump_init,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_methods = Pump_methods,
    .tp_getset = Pump_getset,
};

/* The ground-truth record's reap (zombiewatch/_record.py). Find an exited
 * child without collecting it (waitid with WNOWAIT), read its final times
 * from /proc/PID/schedstat (a zombie's is readable until it is collected),
 * collect it (wait4, WNOHANG) and stamp that moment with CLOCK_MONOTONIC,
 * all without the GIL. In Python each step would wait for the GIL again:
 * os.waitpid collects at once but its caller stamps only once it holds the
 * GIL (337 us late at p50 in the reaper-thread server, whose accepting
 * thread forks holding it), and a reap made in Python steps is held back
 * by the same waits (docs/FACTS.md, "The GIL and a reap's stamp").
 * A signal that interrupts the blocking wait is handled as CPython does
 * (PEP 475): the handlers run, and the wait goes on unless one raised. */
static int read_schedstat(pid_t pid, long long *run, long long *wait) {
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    return sscanf(buf, "%lld %lld", run, wait) == 2 ? 0 : -1;
}

static PyObject *module_reap(PyObject *Py_UNUSED(self), PyObject *args) {
    int pid, options;
    if (!PyArg_ParseTuple(args, "ii:reap", &pid, &options)) return NULL;
    if (pid == 0 || pid < -1 || (options & ~WNOHANG)) {
        PyErr_SetString(PyExc_ValueError, "reap() takes a pid > 0 or -1, and no option but WNOHANG");
        return NULL;
    }
    idtype_t idtype = pid == -1 ? P_ALL : P_PID;
    id_t id = pid == -1 ? 0 : (id_t)pid;
    for (;;) {
        siginfo_t info;
        struct rusage ru;
        struct timespec ts = {0, 0};
        long long run = -1, waited = -1;
        int status = 0, err = 0;
        pid_t which = 0, got = 0;
        Py_BEGIN_ALLOW_THREADS
        memset(&info, 0, sizeof info);
        if (waitid(idtype, id, &info, WEXITED | WNOWAIT | (options & WNOHANG)) < 0) {
            err = errno;
        } else if (info.si_pid != 0) {
            which = info.si_pid;
            if (read_schedstat(which, &run, &waited) < 0) run = waited = -1;
            got = wait4(which, &status, WNOHANG, &ru);
            clock_gettime(CLOCK_MONOTONIC, &ts);
            if (got < 0) err = errno;
        }
        Py_END_ALLOW_THREADS
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0) return NULL;
            continue;
        }
        if (err == ECHILD && which != 0 && which != pid) continue; /* another thread took it */
        if (err != 0) {
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (which == 0) return Py_BuildValue("(iiLLL)", 0, 0, -1LL, -1LL, 0LL); /* WNOHANG: none */
        if (got == 0) continue; /* taken by another thread, its pid already reused */
        if (run < 0) { /* no /proc: the CPU time wait4 gives; the wait unknown */
            run = ((long long)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                  ((long long)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
            waited = -1;
        }
        long long stamp = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        return Py_BuildValue("(iiLLL)", (int)got, status, run, waited, stamp);
    }
}

static PyMethodDef module_methods[] = {
    {"reap", module_reap, METH_VARARGS,
     "reap(pid, options) -> (pid, status, cpu_ns, wait_ns, stamp_ns): waitpid(pid, options)\n"
     "for pid -1 or > 0 and options 0 or WNOHANG, made without the GIL, with the child's\n"
     "times on a CPU and waiting for one (-1: unknown) read just before it was collected,\n"
     "and the CLOCK_MONOTONIC moment right after; (0, 0, -1, -1, 0) if WNOHANG found none."},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "zombiewatch._pump",
    .m_doc = "The event monitor's wake-ups in a native thread; the record's reaps.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__pump(void) {
    if (PyType_Ready(&PumpType) < 0) return NULL;
    static int registered;
    if (!registered && pthread_atfork(before_fork, after_fork_parent, after_fork_child) == 0)
        registered = 1;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&PumpType);
    if (PyModule_AddObject(m, "Pump", (PyObject *)&PumpType) < 0) {
        Py_DECREF(&PumpType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "FORK", EV_FORK);
    PyModule_AddIntConstant(m, "EXIT", (long)EV_EXIT);
    PyModule_AddIntConstant(m, "HUP", EV_HUP);
    return m;
}
