/* Shared protocol of the test targets.
 *
 * A target is started with stdin=/dev/null and stdout+stderr appended to a log file, in its
 * own session, with its working directory set to a scratch directory it may fill. It sets up
 * its state, prints "READY <pid>", waits for SIGUSR1 (sent after a restore, or directly by the
 * self-check tests), verifies its state and prints "PASS" or "FAIL <reasons>", exit 0/1.
 *
 * HANDOFF_CORRUPT=<mode> breaks one piece of state after SIGUSR1 and before the checks, so the
 * self-check tests can prove that each check is able to fail. Modes are per target.
 * HANDOFF_DOWNTIME_S bounds how far clocks may jump across a restore (default 600 s).
 */
#ifndef HANDOFF_TARGET_COMMON_H
#define HANDOFF_TARGET_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One write(2) per line: every process of a target shares one O_APPEND log, and stdio
 * buffers would be duplicated by fork or lost by _exit. */
__attribute__((format(printf, 1, 2), unused)) static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    if (line[n - 1] != '\n')
        line[n++] = '\n';
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(1, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += w;
    }
}

/* ---- failure collection (thread-safe: targets check from several threads) ---- */

static char failures[900];
static int failure_count;
static int failure_lock;

__attribute__((format(printf, 2, 3), unused)) static bool check(bool ok, const char *fmt, ...)
{
    if (ok)
        return true;
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    while (__atomic_exchange_n(&failure_lock, 1, __ATOMIC_ACQUIRE))
        ;
    size_t used = strlen(failures);
    snprintf(failures + used, sizeof failures - used, "%s%s", failure_count ? "; " : "", reason);
    failure_count++;
    __atomic_store_n(&failure_lock, 0, __ATOMIC_RELEASE);
    return false;
}

/* Prints the verdict and exits; exit status 0 on PASS, 1 on FAIL. */
__attribute__((noreturn, unused)) static void finish(void)
{
    if (failure_count == 0) {
        say("PASS");
        exit(0);
    }
    say("FAIL %s", failures);
    exit(1);
}

/* For children of multi-process targets: report reasons to the log, exit with the status. */
__attribute__((noreturn, unused)) static void finish_child(const char *role)
{
    if (failure_count)
        say("note: %s failed: %s", role, failures);
    _exit(failure_count ? 1 : 0);
}

__attribute__((noreturn, unused)) static void die(const char *what)
{
    say("FAIL setup: %s: %s", what, strerror(errno));
    exit(1);
}

/* ---- corruption modes ---- */

static const char *corrupt_mode;

/* Validates HANDOFF_CORRUPT against the target's list (NULL-terminated) before anything else,
 * so a misspelt mode fails loudly instead of silently passing. */
__attribute__((unused)) static void corrupt_init(const char *const *modes)
{
    corrupt_mode = getenv("HANDOFF_CORRUPT");
    if (!corrupt_mode || !*corrupt_mode) {
        corrupt_mode = NULL;
        return;
    }
    for (const char *const *m = modes; *m; m++)
        if (strcmp(*m, corrupt_mode) == 0)
            return;
    say("FAIL setup: unknown corruption mode '%s'", corrupt_mode);
    exit(1);
}

__attribute__((unused)) static bool corrupting(const char *mode)
{
    return corrupt_mode && strcmp(corrupt_mode, mode) == 0;
}

/* ---- SIGUSR1 ---- */

static volatile sig_atomic_t usr1_seen;

__attribute__((unused)) static void common_on_usr1(int sig)
{
    (void)sig;
    usr1_seen = 1;
}

/* Installs the SIGUSR1 handler and blocks SIGUSR1 so it is only taken inside wait_usr1()
 * (threads created afterwards inherit the block, so the signal goes to this thread). */
__attribute__((unused)) static void usr1_setup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = common_on_usr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL))
        die("sigaction(SIGUSR1)");
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &block, NULL))
        die("sigprocmask");
}

/* Like usr1_setup, but SIGUSR1 stays unblocked: for targets that poll usr1_seen in a loop. */
__attribute__((unused)) static void usr1_setup_unblocked(void)
{
    usr1_setup();
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
}

__attribute__((unused)) static void ready(void)
{
    say("READY %d", (int)getpid());
}

/* sigsuspend() with the current mask minus SIGUSR1, until SIGUSR1 has arrived. */
__attribute__((unused)) static void wait_usr1(void)
{
    sigset_t during;
    sigprocmask(SIG_BLOCK, NULL, &during);
    sigdelset(&during, SIGUSR1);
    while (!usr1_seen)
        sigsuspend(&during);
}

/* ---- time ---- */

__attribute__((unused)) static int64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((unused)) static int64_t downtime_allowance_ns(void)
{
    const char *s = getenv("HANDOFF_DOWNTIME_S");
    long v = s ? strtol(s, NULL, 10) : 600;
    return (int64_t)(v > 0 ? v : 600) * 1000000000;
}

__attribute__((unused)) static int64_t ts_ns(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Fills buf with a pattern that depends on a seed and the offset: any misplaced or missing
 * page is detected, not only a changed byte. */
__attribute__((unused)) static uint8_t pattern_byte(uint32_t seed, size_t off)
{
    uint32_t x = seed ^ (uint32_t)(off * 2654435761u) ^ (uint32_t)(off >> 12) * 40503u;
    x ^= x >> 15;
    return (uint8_t)(x * 2246822519u >> 24) | 1; /* never 0: holes are told apart */
}

__attribute__((unused)) static void fill_pattern(void *buf, size_t len, uint32_t seed)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = pattern_byte(seed, i);
}

/* Returns the offset of the first mismatch, or -1. */
__attribute__((unused)) static long check_pattern(const void *buf, size_t len, uint32_t seed)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != pattern_byte(seed, i))
            return (long)i;
    return -1;
}

__attribute__((unused)) static long first_nonzero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return (long)i;
    return -1;
}

/* Absolute path of a file in the scratch directory (the start-up cwd). */
static char scratch_dir[4096];

__attribute__((unused)) static const char *scratch(const char *name)
{
    static char paths[8][4096 + 64];
    static int next;
    if (!scratch_dir[0] && !getcwd(scratch_dir, sizeof scratch_dir))
        die("getcwd");
    char *p = paths[next++ % 8];
    snprintf(p, 4096 + 64, "%s/%s", scratch_dir, name);
    return p;
}

#endif
