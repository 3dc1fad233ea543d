/* vdso: calls clock_gettime, gettimeofday, time and getcpu through the vDSO in a tight loop,
 * so a dump usually stops the thread inside vDSO code. Before and after restore each result is
 * compared with the same clock read by a real syscall: a vDSO that reads the wrong time data
 * (the old kernel's layout, or no time-namespace offsets) shows as a difference. Clocks never
 * go backwards between iterations. */
#include "common.h"
#include <sched.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>

static const char *const modes[] = {"offset", "backwards", NULL};

#define AGREEMENT_NS 500000000 /* a vDSO read and a syscall read, back to back */
static const clockid_t clocks[] = {CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME, CLOCK_MONOTONIC_COARSE};
#define NCLOCKS (int)(sizeof clocks / sizeof clocks[0])
static int64_t last[NCLOCKS];
static int64_t skew;
static long iterations;

static void round_of_calls(bool compare)
{
    for (int c = 0; c < NCLOCKS; c++) {
        int64_t v = now_ns(clocks[c]) + (c == 0 ? skew : 0);
        if (c != 2) /* CLOCK_REALTIME may be stepped by an administrator */
            check(v >= last[c], "clock %d went back by %lld ns", clocks[c], (long long)(last[c] - v));
        last[c] = v;
        if (compare && c != 3) {
            struct timespec ts;
            syscall(SYS_clock_gettime, clocks[c], &ts);
            int64_t d = v - ts_ns(&ts);
            check(llabs(d) < AGREEMENT_NS, "vDSO clock %d differs from the syscall by %lld ns", clocks[c],
                  (long long)d);
        }
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    time_t t = time(NULL);
    if (compare)
        check(llabs((long long)t - tv.tv_sec) <= 1, "time() %lld and gettimeofday() %lld disagree", (long long)t,
              (long long)tv.tv_sec);
    int cpu = sched_getcpu();
    if (compare)
        check(cpu >= 0 && cpu < 4096, "getcpu returned %d", cpu);
    iterations++;
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup_unblocked();
    if (!getauxval(AT_SYSINFO_EHDR)) {
        say("FAIL setup: no vDSO");
        return 1;
    }
    round_of_calls(true);
    ready();
    while (!usr1_seen && failure_count == 0)
        round_of_calls((iterations & 0xffff) == 0);
    if (corrupting("offset"))
        skew = 2 * AGREEMENT_NS;
    if (corrupting("backwards"))
        last[1] += 1000000000;
    for (int i = 0; i < 100000 && failure_count == 0; i++)
        round_of_calls(i % 1000 == 0);
    finish();
}
