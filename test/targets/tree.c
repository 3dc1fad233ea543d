/* tree: a three-level process tree in one session.
 *   root (session leader, its own group)
 *   +- job   (own process group: a background job)   +- grandchild (in job's group)
 *   +- sibling (in root's group)
 * SIGUSR1 goes to the root, which forwards it down. Each process checks getppid, getpgid and
 * getsid against the values at READY, reports to the log and exits; each parent reaps its own
 * children (so the parent links are real) and the root prints the verdict. */
#include "common.h"
#include <sys/prctl.h>
#include <sys/wait.h>

static const char *const modes[] = {"pgid", "sid", "name", NULL};

static pid_t root, job, grandchild, sibling;
static int sync_pipe[2];

static void check_ids(const char *role, pid_t ppid, pid_t pgid)
{
    char name[16], want[16];
    snprintf(want, sizeof want, "tree-%s", role);
    prctl(PR_GET_NAME, name);
    check(strcmp(name, want) == 0, "%s: name '%s'", role, name);
    check(getppid() == ppid, "%s: ppid %d, expected %d", role, getppid(), ppid);
    check(getpgid(0) == pgid, "%s: pgid %d, expected %d", role, getpgid(0), pgid);
    check(getsid(0) == root, "%s: sid %d, expected %d", role, getsid(0), root);
    if (failure_count == 0)
        say("note: tree %s pid=%d ppid=%d pgid=%d sid=%d ok", role, getpid(), getppid(), getpgid(0), getsid(0));
}

static void reap(const char *role, pid_t pid)
{
    int status = 0;
    pid_t got = waitpid(pid, &status, 0);
    check(got == pid, "%s is not a child of %d: %s", role, getpid(), got < 0 ? strerror(errno) : "?");
    if (got == pid)
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed (status %#x)", role, status);
}

static void set_up_done(void)
{
    if (write(sync_pipe[1], "x", 1) != 1)
        die("sync write");
    close(sync_pipe[0]);
    close(sync_pipe[1]);
}

static void name(const char *role)
{
    char n[16];
    snprintf(n, sizeof n, "tree-%s", role);
    prctl(PR_SET_NAME, n);
}

static void grandchild_main(pid_t parent)
{
    name("grandchild");
    set_up_done();
    wait_usr1();
    if (corrupting("pgid"))
        setpgid(0, 0);
    check_ids("grandchild", parent, job);
    finish_child("grandchild");
}

static void job_main(void)
{
    name("job");
    setpgid(0, 0);
    job = getpid();
    grandchild = fork();
    if (grandchild < 0)
        die("fork");
    if (grandchild == 0)
        grandchild_main(job);
    set_up_done();
    wait_usr1();
    kill(grandchild, SIGUSR1);
    check_ids("job", root, job);
    reap("grandchild", grandchild);
    finish_child("job");
}

static void sibling_main(void)
{
    name("sibling");
    set_up_done();
    wait_usr1();
    if (corrupting("sid"))
        setsid();
    check_ids("sibling", root, root);
    finish_child("sibling");
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    if (getsid(0) != getpid() && setsid() < 0)
        die("setsid");
    root = getpid();
    name("root");
    if (pipe(sync_pipe))
        die("pipe");
    job = fork();
    if (job < 0)
        die("fork");
    if (job == 0)
        job_main();
    setpgid(job, job); /* also from the parent: no window where the job is in root's group */
    sibling = fork();
    if (sibling < 0)
        die("fork");
    if (sibling == 0)
        sibling_main();
    close(sync_pipe[1]);
    char buf[3];
    size_t have = 0;
    while (have < 3) {
        ssize_t n = read(sync_pipe[0], buf + have, 3 - have);
        if (n <= 0)
            die("sync read");
        have += n;
    }
    close(sync_pipe[0]);
    say("note: tree root=%d job=%d sibling=%d", root, job, sibling);
    ready();
    wait_usr1();
    if (corrupting("name"))
        prctl(PR_SET_NAME, "renamed");
    kill(job, SIGUSR1);
    kill(sibling, SIGUSR1);
    check_ids("root", getppid(), root); /* the root's parent is whoever restored it */
    reap("job", job);
    reap("sibling", sibling);
    check(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "root has children besides job and sibling");
    finish();
}
