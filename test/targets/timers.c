/* timers: interval timers (ITIMER_REAL, ITIMER_VIRTUAL) and POSIX timers delivering signals.
 * After restore the intervals are exact, the remaining times lie between "continued" and
 * "frozen while dumped" (never re-armed from scratch, never beyond what was set), the timer
 * ids still work and the fast periodic timer keeps firing with its signal value. */
#include "common.h"
#include <sys/time.h>

static const char *const modes[] = {"itimer", "rearm", "interval", "virtual", NULL};

#define TICK_SIG (SIGRTMIN + 2)
#define SLOW_SIG (SIGRTMIN + 3)
#define TICK_VALUE 0x1234
#define SET_UP_AGE_NS 300000000 /* timers are this old at READY: a re-arm from scratch shows */
#define SLACK_NS 100000000

static volatile sig_atomic_t ticks, bad_tick_values, alarms, slow_fired;

static void on_tick(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != TICK_VALUE)
        bad_tick_values++;
    ticks++;
}

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void on_slow(int sig)
{
    (void)sig;
    slow_fired++;
}

static int64_t tv_ns(const struct timeval *tv)
{
    return (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000;
}

static void handle(int sig, void (*fn)(int), void (*info_fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (info_fn) {
        sa.sa_sigaction = info_fn;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
    } else {
        sa.sa_handler = fn;
        sa.sa_flags = SA_RESTART;
    }
    sigaction(sig, &sa, NULL);
}

static timer_t make_timer(int sig, int value, int64_t first_ns, int64_t interval_ns)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = value;
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t))
        die("timer_create");
    struct itimerspec its = {
        .it_value = {first_ns / 1000000000, first_ns % 1000000000},
        .it_interval = {interval_ns / 1000000000, interval_ns % 1000000000},
    };
    if (timer_settime(t, 0, &its, NULL))
        die("timer_settime");
    return t;
}

/* remaining must be at most (set - age at READY) and at least (set - elapsed since set). */
static void check_remaining(const char *what, int64_t remaining, int64_t set, int64_t elapsed)
{
    check(remaining > 0, "%s disarmed", what);
    check(remaining <= set - SET_UP_AGE_NS, "%s re-armed: %lld ns left of %lld", what, (long long)remaining,
          (long long)set);
    check(remaining >= set - elapsed - SLACK_NS, "%s ran fast: %lld ns left after %lld ns of %lld", what,
          (long long)remaining, (long long)elapsed, (long long)set);
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    handle(SIGALRM, on_alarm, NULL);
    handle(SIGVTALRM, on_alarm, NULL);
    handle(TICK_SIG, NULL, on_tick);
    handle(SLOW_SIG, on_slow, NULL);

    const int64_t real_value = 100500000000, real_interval = 50250000000;
    const int64_t virt_value = 500000000000, virt_interval = 7125000000;
    const int64_t slow_value = 200000000000, slow_interval = 30500000000;
    const int64_t tick = 20000000;
    int64_t t0 = now_ns(CLOCK_MONOTONIC);
    struct itimerval real = {{real_interval / 1000000000, real_interval % 1000000000 / 1000},
                             {real_value / 1000000000, real_value % 1000000000 / 1000}};
    struct itimerval virt = {{virt_interval / 1000000000, virt_interval % 1000000000 / 1000},
                             {virt_value / 1000000000, virt_value % 1000000000 / 1000}};
    if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL))
        die("setitimer");
    timer_t slow = make_timer(SLOW_SIG, 0xa, slow_value, slow_interval);
    timer_t fast = make_timer(TICK_SIG, TICK_VALUE, tick, tick);

    struct timespec age = {0, SET_UP_AGE_NS};
    while (nanosleep(&age, &age))
        ;
    ready();
    wait_usr1();

    if (corrupting("itimer")) {
        real.it_interval.tv_usec = 0;
        setitimer(ITIMER_REAL, &real, NULL);
    }
    if (corrupting("rearm"))
        slow = make_timer(SLOW_SIG, 0xa, slow_value, slow_interval);
    if (corrupting("interval"))
        fast = make_timer(TICK_SIG, TICK_VALUE, tick, 2 * tick);
    if (corrupting("virtual")) {
        virt.it_interval.tv_sec++;
        setitimer(ITIMER_VIRTUAL, &virt, NULL);
    }

    int64_t elapsed = now_ns(CLOCK_MONOTONIC) - t0;
    struct itimerval now;
    getitimer(ITIMER_REAL, &now);
    check(tv_ns(&now.it_interval) == real_interval, "ITIMER_REAL interval %lld ns",
          (long long)tv_ns(&now.it_interval));
    check_remaining("ITIMER_REAL", tv_ns(&now.it_value), real_value, elapsed);
    getitimer(ITIMER_VIRTUAL, &now);
    check(tv_ns(&now.it_interval) == virt_interval, "ITIMER_VIRTUAL interval %lld ns",
          (long long)tv_ns(&now.it_interval));
    /* CPU-time timers are rounded up to the scheduler tick (at most 10 ms at HZ=100). */
    check(tv_ns(&now.it_value) > 0 && tv_ns(&now.it_value) <= virt_value + 10000000, "ITIMER_VIRTUAL value %lld ns",
          (long long)tv_ns(&now.it_value));

    struct itimerspec its;
    if (check(timer_gettime(slow, &its) == 0, "slow POSIX timer id gone: %s", strerror(errno))) {
        check(ts_ns(&its.it_interval) == slow_interval, "slow POSIX timer interval %lld ns",
              (long long)ts_ns(&its.it_interval));
        check_remaining("slow POSIX timer", ts_ns(&its.it_value), slow_value, elapsed);
    }
    if (check(timer_gettime(fast, &its) == 0, "fast POSIX timer id gone: %s", strerror(errno)))
        check(ts_ns(&its.it_interval) == tick, "fast POSIX timer interval %lld ns",
              (long long)ts_ns(&its.it_interval));

    /* The periodic timer keeps firing: wait for five more ticks (a generous 20 s bound, it
     * only matters when the timer is dead). */
    int start = ticks;
    for (int i = 0; i < 2000 && ticks < start + 5; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    check(ticks >= start + 5, "periodic POSIX timer stopped firing (%d ticks)", ticks - start);
    check(bad_tick_values == 0, "%d timer signals with a wrong value or code", bad_tick_values);
    check(alarms == 0, "ITIMER_REAL or ITIMER_VIRTUAL fired early");
    check(slow_fired == 0, "slow POSIX timer fired early");
    finish();
}
