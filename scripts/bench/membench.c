/* membench: the benchmark's target process.
 *
 * `membench MIB [SEED]` maps MIB MiB of private anonymous memory, writes a pattern into every
 * page (so every page is resident and no two pages are alike), prints "READY <pid>" and waits
 * for SIGUSR1. Then it checks every word of the pattern and prints "PASS" (exit 0) or
 * "FAIL <what>" (exit 1). Sent to a restored copy, SIGUSR1 proves the restore brought back
 * every page at its place. MEMBENCH_CORRUPT_PAGE=N flips a byte of page N before the check, so
 * the bench can prove the check is able to fail.
 *
 * Start it with stdout on a regular file (the log survives a dump/restore; a pipe does not). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t usr1_seen;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_seen = 1;
}

/* One write(2) per line: stdio buffering would not survive a kill after the dump. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(1, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += w;
    }
}

/* splitmix64 of (seed, word index): cheap, never repeats between pages, never a zero page. */
static inline uint64_t word_at(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) | 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: membench MIB [SEED]\n");
        return 2;
    }
    size_t mib = strtoull(argv[1], NULL, 10);
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x68616e646f6666ull;
    if (mib == 0) {
        fprintf(stderr, "membench: MIB must be > 0\n");
        return 2;
    }
    size_t bytes = mib << 20, words = bytes / sizeof(uint64_t);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigset_t block, during;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    /* Blocked until sigsuspend: a SIGUSR1 sent early stays pending instead of being lost. */
    if (sigaction(SIGUSR1, &sa, NULL) || sigprocmask(SIG_BLOCK, &block, &during)) {
        say("FAIL setup: signals: %s", strerror(errno));
        return 1;
    }
    sigdelset(&during, SIGUSR1);

    uint64_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        say("FAIL setup: mmap %zu MiB: %s", mib, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < words; i++)
        mem[i] = word_at(seed, i);

    say("READY %d", (int)getpid());
    while (!usr1_seen)
        sigsuspend(&during);

    const char *corrupt = getenv("MEMBENCH_CORRUPT_PAGE");
    if (corrupt && *corrupt) {
        size_t page = strtoull(corrupt, NULL, 10);
        if (page < bytes / 4096)
            ((volatile uint8_t *)mem)[page * 4096 + 100] ^= 0x40;
    }

    size_t bad_pages = 0, first_bad = SIZE_MAX;
    const size_t words_per_page = 4096 / sizeof(uint64_t);
    for (size_t page = 0; page < words / words_per_page; page++) {
        for (size_t j = 0; j < words_per_page; j++) {
            size_t i = page * words_per_page + j;
            if (mem[i] != word_at(seed, i)) {
                if (first_bad == SIZE_MAX)
                    first_bad = i * sizeof(uint64_t);
                bad_pages++;
                break;
            }
        }
    }
    if (bad_pages) {
        say("FAIL %zu of %zu pages differ, first at offset %zu", bad_pages, bytes / 4096, first_bad);
        return 1;
    }
    say("PASS");
    return 0;
}
