/* clocks: CLOCK_MONOTONIC and CLOCK_BOOTTIME, sampled every 2 ms before and after the dump,
 * never go backwards and never jump by more than the downtime allowance (HANDOFF_DOWNTIME_S);
 * their difference (time spent suspended) stays put. After a reboot both restart near zero,
 * so this only passes when the restore puts the process in a suitably offset time namespace.
 * Per-process CPU clocks are not checked: no interface can set them. */
#include "common.h"

static const char *const modes[] = {"backwards", "jump", "boottime", NULL};

static int64_t last_mono, last_boot, suspended_at_start, largest_step;

static void sample(void)
{
    int64_t boot = now_ns(CLOCK_BOOTTIME);
    int64_t mono = now_ns(CLOCK_MONOTONIC);
    int64_t allowance = downtime_allowance_ns() + 1000000000;
    if (last_mono) {
        check(mono >= last_mono, "CLOCK_MONOTONIC went back by %lld ns", (long long)(last_mono - mono));
        check(boot >= last_boot, "CLOCK_BOOTTIME went back by %lld ns", (long long)(last_boot - boot));
        check(mono - last_mono <= allowance, "CLOCK_MONOTONIC jumped by %lld ns", (long long)(mono - last_mono));
        check(boot - last_boot <= allowance, "CLOCK_BOOTTIME jumped by %lld ns", (long long)(boot - last_boot));
        if (mono - last_mono > largest_step)
            largest_step = mono - last_mono;
    }
    int64_t suspended = boot - mono;
    check(llabs(suspended - suspended_at_start) < 1000000000, "CLOCK_BOOTTIME - CLOCK_MONOTONIC moved by %lld ns",
          (long long)(suspended - suspended_at_start));
    last_mono = mono;
    last_boot = boot;
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup_unblocked();
    suspended_at_start = now_ns(CLOCK_BOOTTIME) - now_ns(CLOCK_MONOTONIC);
    sample();
    ready();
    while (!usr1_seen && failure_count == 0) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        sample();
    }
    if (corrupting("backwards"))
        last_mono += 10000000000;
    if (corrupting("jump"))
        last_boot -= downtime_allowance_ns() + 2000000000;
    if (corrupting("boottime"))
        suspended_at_start -= 5000000000;
    for (int i = 0; i < 10 && failure_count == 0; i++) {
        sample();
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (failure_count == 0)
        say("note: largest step between samples %lld ns", (long long)largest_step);
    finish();
}
