/* signals: dispositions with flags and masks, per-thread blocked masks and alternate stacks,
 * and signals left pending while blocked: queued real-time signals with values, a
 * process-wide pending signal and one pending on a single thread. The main thread waits in
 * sigsuspend(), so a dump must read its real mask, not sigsuspend's temporary one. */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>

static const char *const modes[] = {"handler", "mask", "pending", "thread-mask", "altstack", "thread-altstack", NULL};

#define RT_QUEUED (SIGRTMIN + 1)

static struct sigaction recorded[_NSIG];
static sigset_t main_mask, thread_mask;
static stack_t main_ss, thread_ss;
static pthread_barrier_t setup_done, go;
static pid_t thread_tid;
static volatile sig_atomic_t usr2_runs;
static volatile int usr2_code;
static volatile uintptr_t usr2_frame;

static void on_usr2(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    volatile int local = 0;
    usr2_frame = (uintptr_t)&local;
    usr2_code = si->si_code;
    usr2_runs++;
}

static void on_hup(int sig)
{
    (void)sig;
}

static void on_rt(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    (void)ctx;
}

static void set(int sig, void *handler, int flags, bool info, int mask1, int mask2)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (info)
        sa.sa_sigaction = handler;
    else
        sa.sa_handler = handler;
    sa.sa_flags = flags | (info ? SA_SIGINFO : 0);
    sigemptyset(&sa.sa_mask);
    if (mask1)
        sigaddset(&sa.sa_mask, mask1);
    if (mask2)
        sigaddset(&sa.sa_mask, mask2);
    if (sigaction(sig, &sa, NULL))
        die("sigaction");
}

static bool same_action(const struct sigaction *a, const struct sigaction *b)
{
    return a->sa_handler == b->sa_handler && a->sa_flags == b->sa_flags && a->sa_restorer == b->sa_restorer &&
           memcmp(&a->sa_mask, &b->sa_mask, sizeof(uint64_t)) == 0;
}

static bool same_set(const sigset_t *a, const sigset_t *b)
{
    for (int s = 1; s < _NSIG; s++)
        if (sigismember(a, s) != sigismember(b, s))
            return false;
    return true;
}

static void check_altstack(const char *who, const stack_t *want)
{
    stack_t now;
    sigaltstack(NULL, &now);
    check(now.ss_sp == want->ss_sp && now.ss_size == want->ss_size && now.ss_flags == want->ss_flags,
          "%s altstack %p+%zu flags %d, expected %p+%zu flags %d", who, now.ss_sp, now.ss_size, now.ss_flags,
          want->ss_sp, want->ss_size, want->ss_flags);
}

static void *thread_main(void *arg)
{
    (void)arg;
    sigset_t more;
    sigemptyset(&more);
    sigaddset(&more, SIGUSR2);
    sigaddset(&more, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &more, NULL);
    pthread_sigmask(SIG_BLOCK, NULL, &thread_mask);
    thread_ss.ss_size = 32768;
    thread_ss.ss_sp = malloc(thread_ss.ss_size);
    sigaltstack(&thread_ss, NULL);
    thread_tid = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&setup_done);
    pthread_barrier_wait(&go);

    if (corrupting("thread-mask"))
        pthread_sigmask(SIG_UNBLOCK, &more, NULL);
    if (corrupting("thread-altstack")) {
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
    }
    sigset_t mask, pending;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    check(same_set(&mask, &thread_mask), "thread blocked mask differs");
    check_altstack("thread", &thread_ss);
    sigpending(&pending);
    check(sigismember(&pending, SIGUSR2), "SIGUSR2 no longer pending on the thread");
    check(sigismember(&pending, SIGWINCH), "process-wide SIGWINCH not pending (seen from the thread)");
    siginfo_t si;
    struct timespec zero = {0, 0};
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    int got = sigtimedwait(&usr2, &si, &zero);
    /* tgkill reports SI_TKILL or, on some kernels, SI_USER: either is a faithful copy. */
    check(got == SIGUSR2 && (si.si_code == SI_TKILL || si.si_code == SI_USER) && si.si_pid == getpid(),
          "thread-directed SIGUSR2: got %d code %d pid %d", got, si.si_code, si.si_pid);
    return NULL;
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    set(SIGUSR2, on_usr2, SA_RESTART | SA_ONSTACK, true, SIGINT, SIGQUIT);
    set(SIGHUP, on_hup, SA_RESETHAND | SA_NODEFER, false, SIGUSR2, 0);
    set(SIGINT, SIG_IGN, 0, false, 0, 0);
    set(SIGCHLD, SIG_DFL, SA_NOCLDSTOP, false, 0, 0);
    set(RT_QUEUED, on_rt, SA_RESTART, true, 0, 0);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, RT_QUEUED);
    sigaddset(&block, SIGWINCH);
    sigaddset(&block, SIGQUIT);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigprocmask(SIG_BLOCK, NULL, &main_mask);

    static uint8_t altstack[65536];
    main_ss.ss_sp = altstack;
    main_ss.ss_size = sizeof altstack;
    sigaltstack(&main_ss, NULL);

    pthread_barrier_init(&setup_done, NULL, 2);
    pthread_barrier_init(&go, NULL, 2);
    pthread_t thread;
    if (pthread_create(&thread, NULL, thread_main, NULL))
        die("pthread_create");
    pthread_barrier_wait(&setup_done);

    union sigval v = {.sival_int = 42};
    sigqueue(getpid(), RT_QUEUED, v);
    v.sival_int = 43;
    sigqueue(getpid(), RT_QUEUED, v);
    kill(getpid(), SIGWINCH);
    syscall(SYS_tgkill, getpid(), thread_tid, SIGUSR2);

    for (int s = 1; s < _NSIG; s++)
        sigaction(s, NULL, &recorded[s]);
    ready();
    wait_usr1();

    if (corrupting("handler"))
        set(SIGUSR2, on_usr2, SA_ONSTACK, true, SIGINT, SIGQUIT);
    if (corrupting("mask")) {
        sigset_t quit;
        sigemptyset(&quit);
        sigaddset(&quit, SIGQUIT);
        sigprocmask(SIG_UNBLOCK, &quit, NULL);
    }
    if (corrupting("pending")) {
        struct timespec zero = {0, 0};
        sigtimedwait(&block, NULL, &zero);
    }
    if (corrupting("altstack")) {
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
    }

    for (int s = 1; s < _NSIG; s++) {
        struct sigaction now;
        if (sigaction(s, NULL, &now) == 0)
            check(same_action(&now, &recorded[s]), "disposition of signal %d differs", s);
    }
    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    check(same_set(&mask, &main_mask), "main blocked mask differs");
    check_altstack("main", &main_ss);

    pthread_barrier_wait(&go);
    pthread_join(thread, NULL);

    sigset_t pending;
    sigpending(&pending);
    check(sigismember(&pending, RT_QUEUED), "queued RT signal not pending");
    check(sigismember(&pending, SIGWINCH), "process-wide SIGWINCH not pending");
    check(!sigismember(&pending, SIGUSR2), "the thread's SIGUSR2 is pending on main");
    struct timespec zero = {0, 0};
    siginfo_t si;
    for (int want = 42; want <= 43; want++) {
        sigset_t rt;
        sigemptyset(&rt);
        sigaddset(&rt, RT_QUEUED);
        int got = sigtimedwait(&rt, &si, &zero);
        check(got == RT_QUEUED && si.si_code == SI_QUEUE && si.si_value.sival_int == want,
              "queued RT signal %d: got %d code %d value %d", want, got, si.si_code, si.si_value.sival_int);
    }
    sigset_t winch;
    sigemptyset(&winch);
    sigaddset(&winch, SIGWINCH);
    int got = sigtimedwait(&winch, &si, &zero);
    check(got == SIGWINCH && si.si_code == SI_USER && si.si_pid == getpid(), "SIGWINCH: got %d code %d", got,
          si.si_code);
    sigpending(&pending);
    check(!sigismember(&pending, RT_QUEUED) && !sigismember(&pending, SIGWINCH), "signals pending after draining");

    /* The restored dispositions work: an ignored signal stays ignored, a handler runs on the
     * alternate stack. */
    kill(getpid(), SIGINT);
    raise(SIGUSR2);
    check(usr2_runs == 1, "SIGUSR2 handler ran %d times", usr2_runs);
    check(usr2_code == SI_TKILL || usr2_code == SI_USER, "SIGUSR2 si_code %d", usr2_code);
    check(usr2_frame >= (uintptr_t)altstack && usr2_frame < (uintptr_t)altstack + sizeof altstack,
          "SIGUSR2 handler did not run on the alternate stack");
    finish();
}
