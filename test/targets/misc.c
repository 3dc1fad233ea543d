/* misc: per-process attributes. umask, cwd, comm, personality, every rlimit, nice value,
 * scheduling policy, timer slack, child-subreaper, THP-disable, oom_score_adj, and the
 * memory-map descriptors (/proc/self/cmdline, environ, auxv, exe) that a restore must set
 * with PR_SET_MM. */
#include "common.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

static const char *const modes[] = {"umask", "cwd", "rlimit", "name", "nice", "personality", "cmdline", NULL};

struct blob {
    char data[8192];
    ssize_t len;
};

static void slurp(const char *path, struct blob *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    b->len = -1;
    if (fd < 0)
        return;
    b->len = 0;
    ssize_t n;
    while (b->len < (ssize_t)sizeof b->data && (n = read(fd, b->data + b->len, sizeof b->data - b->len)) > 0)
        b->len += n;
    close(fd);
}

static bool same_file(const char *path, const struct blob *want)
{
    struct blob now;
    slurp(path, &now);
    return now.len == want->len && memcmp(now.data, want->data, now.len) == 0;
}

static int read_int(const char *path)
{
    struct blob b;
    slurp(path, &b);
    return b.len > 0 ? atoi(b.data) : -99999;
}

int main(int argc, char **argv)
{
    (void)argc;
    corrupt_init(modes);
    usr1_setup();
    const char *sub = scratch("cwd-here");
    mkdir(sub, 0700);
    if (chdir(sub))
        die("chdir");
    struct stat cwd_st;
    stat(".", &cwd_st);
    umask(027);
    prctl(PR_SET_NAME, "misc-target");
    unsigned long persona = PER_LINUX | ADDR_NO_RANDOMIZE;
    personality(persona);
    struct rlimit nofile = {777, 999}, msgq = {12345, 23456}, core = {0, 4096 * 1024};
    if (setrlimit(RLIMIT_NOFILE, &nofile) || setrlimit(RLIMIT_MSGQUEUE, &msgq) || setrlimit(RLIMIT_CORE, &core))
        die("setrlimit");
    struct rlimit limits[RLIM_NLIMITS];
    for (int r = 0; r < RLIM_NLIMITS; r++)
        getrlimit(r, &limits[r]);
    setpriority(PRIO_PROCESS, 0, 7);
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &sp))
        die("SCHED_BATCH");
    prctl(PR_SET_TIMERSLACK, 123456, 0, 0, 0);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    int oom = open("/proc/self/oom_score_adj", O_WRONLY);
    if (oom < 0 || write(oom, "123", 3) != 3)
        die("oom_score_adj");
    close(oom);
    static struct blob cmdline, environ_, auxv;
    slurp("/proc/self/cmdline", &cmdline);
    slurp("/proc/self/environ", &environ_);
    slurp("/proc/self/auxv", &auxv);
    char exe[4096] = "", exe_now[4096] = "";
    if (readlink("/proc/self/exe", exe, sizeof exe - 1) < 0)
        die("readlink exe");
    ready();
    wait_usr1();

    if (corrupting("umask"))
        umask(022);
    if (corrupting("cwd"))
        (void)!chdir("..");
    if (corrupting("rlimit")) {
        nofile.rlim_cur = 778;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (corrupting("name"))
        prctl(PR_SET_NAME, "renamed");
    if (corrupting("nice"))
        setpriority(PRIO_PROCESS, 0, 8);
    if (corrupting("personality"))
        personality(PER_LINUX);
    if (corrupting("cmdline"))
        argv[0][0] ^= 1;

    mode_t mask = umask(0);
    umask(mask);
    check(mask == 027, "umask %03o", mask);
    char cwd[4096] = "";
    struct stat now_st;
    check(getcwd(cwd, sizeof cwd) && strcmp(cwd, sub) == 0, "cwd '%s'", cwd);
    check(stat(".", &now_st) == 0 && now_st.st_ino == cwd_st.st_ino && now_st.st_dev == cwd_st.st_dev,
          "'.' is another directory");
    char name[16];
    prctl(PR_GET_NAME, name);
    check(strcmp(name, "misc-target") == 0, "name '%s'", name);
    struct blob comm;
    slurp("/proc/self/comm", &comm);
    check(comm.len == 12 && memcmp(comm.data, "misc-target\n", 12) == 0, "/proc/self/comm differs");
    check((unsigned long)personality(0xffffffff) == persona, "personality %#x", personality(0xffffffff));
    for (int r = 0; r < RLIM_NLIMITS; r++) {
        struct rlimit l;
        getrlimit(r, &l);
        check(l.rlim_cur == limits[r].rlim_cur && l.rlim_max == limits[r].rlim_max, "rlimit %d is %llu/%llu", r,
              (unsigned long long)l.rlim_cur, (unsigned long long)l.rlim_max);
    }
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    check(nice == 7, "nice %d", nice);
    check(sched_getscheduler(0) == SCHED_BATCH, "scheduling policy %d", sched_getscheduler(0));
    check(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == 123456, "timer slack %d", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));
    int subreaper = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
    check(subreaper == 1, "child subreaper flag lost");
    check(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP-disable flag lost");
    check(read_int("/proc/self/oom_score_adj") == 123, "oom_score_adj %d", read_int("/proc/self/oom_score_adj"));
    check(same_file("/proc/self/cmdline", &cmdline), "/proc/self/cmdline differs");
    check(same_file("/proc/self/environ", &environ_), "/proc/self/environ differs");
    check(same_file("/proc/self/auxv", &auxv), "/proc/self/auxv differs");
    check(readlink("/proc/self/exe", exe_now, sizeof exe_now - 1) > 0 && strcmp(exe, exe_now) == 0,
          "/proc/self/exe is '%s'", exe_now);
    finish();
}
