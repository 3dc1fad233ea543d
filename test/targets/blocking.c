/* blocking: threads sit in blocking syscalls when dumped, and READY is printed only once
 * /proc/self/task/<tid>/syscall shows each of them inside its call:
 *   reader   read() on an empty pipe          -> gets the bytes written after restore
 *   sleeper  nanosleep(HANDOFF_SLEEP_MS)      -> EINTR-loop with the remaining time; the total
 *                                                sleep is never short, nor longer than the
 *                                                downtime allowance beyond the request
 *   deadline clock_nanosleep(TIMER_ABSTIME)   -> wakes at, not before, its deadline
 *   waiter   futex(FUTEX_WAIT)                -> woken by the futex word set after restore
 *   poller   poll() on an empty pipe           -> POLLIN once data arrives
 *   writer   write() into a full pipe          -> every byte arrives, in order, exactly once */
#include "common.h"
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>

static const char *const modes[] = {"data", "early", "futex", "drop", NULL};

#define WRITER_EXTRA 5000
static int64_t sleep_ns;
static int read_pipe[2], poll_pipe[2], full_pipe[2];
static uint32_t futex_word;
static volatile pid_t tids[6];
static char read_got[64];
static ssize_t read_ret;
static int64_t sleep_start, sleep_end, deadline, deadline_woke;
static int poll_ret, poll_revents;
static size_t full_capacity, written;

static void *reader(void *a)
{
    (void)a;
    tids[0] = (pid_t)syscall(SYS_gettid);
    do
        read_ret = read(read_pipe[0], read_got, sizeof read_got - 1);
    while (read_ret < 0 && errno == EINTR);
    return NULL;
}

static void *sleeper(void *a)
{
    (void)a;
    tids[1] = (pid_t)syscall(SYS_gettid);
    sleep_start = now_ns(CLOCK_MONOTONIC);
    struct timespec req = {sleep_ns / 1000000000, sleep_ns % 1000000000};
    while (nanosleep(&req, &req) == -1 && errno == EINTR)
        ;
    sleep_end = now_ns(CLOCK_MONOTONIC);
    return NULL;
}

static void *deadliner(void *a)
{
    (void)a;
    tids[2] = (pid_t)syscall(SYS_gettid);
    struct timespec at = {deadline / 1000000000, deadline % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
    deadline_woke = now_ns(CLOCK_MONOTONIC);
    return NULL;
}

static void *waiter(void *a)
{
    (void)a;
    tids[3] = (pid_t)syscall(SYS_gettid);
    while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
        syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    return NULL;
}

static void *poller(void *a)
{
    (void)a;
    tids[4] = (pid_t)syscall(SYS_gettid);
    struct pollfd p = {poll_pipe[0], POLLIN, 0};
    do
        poll_ret = poll(&p, 1, -1);
    while (poll_ret < 0 && errno == EINTR);
    poll_revents = p.revents;
    return NULL;
}

static void *writer(void *a)
{
    (void)a;
    size_t total = full_capacity + WRITER_EXTRA;
    uint8_t *data = malloc(total);
    fill_pattern(data, total, 0xe000);
    /* Fill without blocking, then block on the rest. */
    fcntl(full_pipe[1], F_SETFL, O_NONBLOCK);
    ssize_t n;
    while (written < total && (n = write(full_pipe[1], data + written, total - written)) > 0)
        written += n;
    fcntl(full_pipe[1], F_SETFL, 0);
    tids[5] = (pid_t)syscall(SYS_gettid);
    while (written < total) {
        n = write(full_pipe[1], data + written, total - written);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        written += n;
    }
    close(full_pipe[1]);
    free(data);
    return NULL;
}

/* True when the thread is blocked in one of the given syscalls. */
static bool in_syscall(pid_t tid, int nr1, int nr2)
{
    char path[64], buf[256] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0 || buf[0] < '0' || buf[0] > '9')
        return false; /* "running" */
    int nr = atoi(buf);
    return nr == nr1 || nr == nr2;
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    const char *ms = getenv("HANDOFF_SLEEP_MS");
    sleep_ns = (int64_t)(ms ? atol(ms) : 3000) * 1000000;
    if (pipe(read_pipe) || pipe(poll_pipe) || pipe(full_pipe))
        die("pipe");
    full_capacity = fcntl(full_pipe[1], F_GETPIPE_SZ);
    deadline = now_ns(CLOCK_MONOTONIC) + sleep_ns;

    void *(*fns[6])(void *) = {reader, sleeper, deadliner, waiter, poller, writer};
    const int calls[6][2] = {{SYS_read, SYS_read},
                             {SYS_nanosleep, SYS_clock_nanosleep},
                             {SYS_clock_nanosleep, SYS_clock_nanosleep},
                             {SYS_futex, SYS_futex},
                             {SYS_poll, SYS_ppoll},
                             {SYS_write, SYS_write}};
    pthread_t threads[6];
    for (int i = 0; i < 6; i++)
        if (pthread_create(&threads[i], NULL, fns[i], NULL))
            die("pthread_create");
    for (int i = 0; i < 6; i++)
        while (!tids[i] || !in_syscall(tids[i], calls[i][0], calls[i][1])) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    ready();
    wait_usr1();

    const char *msg = corrupting("data") ? "corrupted\n" : "after-restore\n";
    check(write(read_pipe[1], msg, strlen(msg)) == (ssize_t)strlen(msg), "write to reader's pipe");
    check(write(poll_pipe[1], "q", 1) == 1, "write to poller's pipe");
    __atomic_store_n(&futex_word, corrupting("futex") ? 2 : 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);

    size_t total = full_capacity + WRITER_EXTRA, have = 0;
    uint8_t *got = malloc(total + 1);
    ssize_t n;
    if (corrupting("drop"))
        (void)!read(full_pipe[0], got, 1);
    while (have <= total && (n = read(full_pipe[0], got + have, total + 1 - have)) > 0)
        have += n;
    check(have == total && check_pattern(got, total, 0xe000) < 0, "pipe writer's stream: %zu of %zu bytes%s", have,
          total, have == total ? ", contents differ" : "");

    for (int i = 0; i < 6; i++)
        pthread_join(threads[i], NULL);
    if (corrupting("early"))
        sleep_start += 10 * sleep_ns;

    check(read_ret == 14 && memcmp(read_got, "after-restore\n", 14) == 0, "reader got %zd bytes '%.*s'", read_ret,
          (int)(read_ret > 0 ? read_ret : 0), read_got);
    int64_t slept = sleep_end - sleep_start;
    check(slept >= sleep_ns, "nanosleep returned after %lld of %lld ns", (long long)slept, (long long)sleep_ns);
    check(slept <= sleep_ns + downtime_allowance_ns(), "nanosleep took %lld ns", (long long)slept);
    check(deadline_woke >= deadline, "clock_nanosleep woke %lld ns before its deadline",
          (long long)(deadline - deadline_woke));
    check(deadline_woke - deadline <= downtime_allowance_ns(), "clock_nanosleep woke %lld ns late",
          (long long)(deadline_woke - deadline));
    check(futex_word == 1, "futex word %u", futex_word);
    check(poll_ret == 1 && poll_revents == POLLIN, "poll returned %d revents %#x", poll_ret, poll_revents);
    char q = 0;
    check(read(poll_pipe[0], &q, 1) == 1 && q == 'q', "poller's pipe");
    check(written == total, "writer wrote %zu of %zu bytes", written, total);
    finish();
}
