/* threads: several threads, each with its own TLS values, stack contents, name and tid, waiting
 * in different ways when dumped (barrier futex, condition variable, busy spin). After SIGUSR1
 * every thread checks its own state; main checks the thread list. */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define WORKERS 6

static const char *const modes[] = {"tls", "name", "stack", "tid", NULL};

static __thread uint64_t tls_value;
static __thread uint8_t tls_buf[512];

struct worker {
    int index;
    pthread_t self;
    pid_t tid;
    uint64_t *tls_value_at;
    uint8_t *stack_buf_at;
    bool failed;
};

static struct worker workers[WORKERS];
static pthread_barrier_t setup_done, go_barrier;
static pthread_mutex_t go_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;
static volatile int go;
static int barrier_waiters;

static uint64_t expected_tls(int i)
{
    return 0xfeedface00000000ULL | (uint64_t)(i * 7919);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t stack_buf[4096];
    char name[16], want[16];
    snprintf(want, sizeof want, "worker-%d", w->index);
    prctl(PR_SET_NAME, want);
    tls_value = expected_tls(w->index);
    fill_pattern(tls_buf, sizeof tls_buf, 0xa000 + w->index);
    fill_pattern(stack_buf, sizeof stack_buf, 0xb000 + w->index);
    w->self = pthread_self();
    w->tid = (pid_t)syscall(SYS_gettid);
    w->tls_value_at = &tls_value;
    w->stack_buf_at = stack_buf;
    pthread_barrier_wait(&setup_done);

    switch (w->index % 3) {
    case 0:
        pthread_barrier_wait(&go_barrier);
        break;
    case 1:
        pthread_mutex_lock(&go_lock);
        while (!go)
            pthread_cond_wait(&go_cond, &go_lock);
        pthread_mutex_unlock(&go_lock);
        break;
    default:
        while (!go)
            asm volatile("pause");
    }

    int i = w->index;
    bool ok = true;
    ok &= check(syscall(SYS_gettid) == w->tid, "worker %d tid %ld, was %d", i, syscall(SYS_gettid), w->tid);
    ok &= check(pthread_equal(pthread_self(), w->self), "worker %d pthread_self changed", i);
    ok &= check(&tls_value == w->tls_value_at, "worker %d TLS moved", i);
    ok &= check(tls_value == expected_tls(i), "worker %d TLS value %#llx", i, (unsigned long long)tls_value);
    ok &= check(check_pattern(tls_buf, sizeof tls_buf, 0xa000 + i) < 0, "worker %d TLS buffer differs", i);
    ok &= check(check_pattern(stack_buf, sizeof stack_buf, 0xb000 + i) < 0, "worker %d stack differs", i);
    prctl(PR_GET_NAME, name);
    ok &= check(strcmp(name, want) == 0, "worker %d name '%s'", i, name);
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", w->tid);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof comm - 1);
        comm[n > 0 ? n - 1 : 0] = 0;
        close(fd);
    }
    ok &= check(strcmp(comm, want) == 0, "worker %d comm in /proc '%s'", i, comm);
    w->failed = !ok;
    return NULL;
}

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    prctl(PR_SET_NAME, "threads-main");
    for (int i = 0; i < WORKERS; i++)
        barrier_waiters += i % 3 == 0;
    pthread_barrier_init(&setup_done, NULL, WORKERS + 1);
    pthread_barrier_init(&go_barrier, NULL, barrier_waiters + 1);
    for (int i = 0; i < WORKERS; i++) {
        workers[i].index = i;
        pthread_t t;
        if (pthread_create(&t, NULL, worker_main, &workers[i]))
            die("pthread_create");
    }
    pthread_barrier_wait(&setup_done);
    ready();
    wait_usr1();

    if (corrupting("tls"))
        *workers[1].tls_value_at ^= 1;
    if (corrupting("stack"))
        workers[2].stack_buf_at[100] ^= 1;
    if (corrupting("name")) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d/comm", workers[3].tid);
        int fd = open(path, O_WRONLY);
        if (fd < 0 || write(fd, "renamed", 7) != 7)
            die("rename");
        close(fd);
    }
    if (corrupting("tid"))
        workers[4].tid++;

    check(count_tasks() == WORKERS + 1, "%d tasks, expected %d", count_tasks(), WORKERS + 1);
    pthread_mutex_lock(&go_lock);
    go = 1;
    pthread_cond_broadcast(&go_cond);
    pthread_mutex_unlock(&go_lock);
    pthread_barrier_wait(&go_barrier);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i].self, NULL);
    char name[16];
    prctl(PR_GET_NAME, name);
    check(strcmp(name, "threads-main") == 0, "main thread name '%s'", name);
    finish();
}
