/* zombie: two children that died before the dump and were not reaped, one by exit(42), one by
 * SIGTERM. After restore they are still zombies of this process, and waitpid() reports how
 * each one died. */
#include "common.h"
#include <fcntl.h>
#include <sys/wait.h>

static const char *const modes[] = {"reap", "reap-signalled", NULL};

/* State letter and parent from /proc/<pid>/stat ('?' when unreadable). */
static char proc_state(pid_t pid, pid_t *ppid)
{
    char path[64], buf[512] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    char *close_paren = n > 0 ? strrchr(buf, ')') : NULL;
    char state = '?';
    int parent = 0;
    if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &parent) != 2)
        return '?';
    *ppid = parent;
    return state;
}

static void check_zombie(const char *what, pid_t pid)
{
    pid_t ppid = 0;
    char state = proc_state(pid, &ppid);
    check(state == 'Z', "%s (pid %d) is in state %c", what, pid, state);
    check(state == '?' || ppid == getpid(), "%s has parent %d", what, ppid);
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    pid_t exited = fork();
    if (exited < 0)
        die("fork");
    if (exited == 0)
        _exit(42);
    pid_t signalled = fork();
    if (signalled < 0)
        die("fork");
    if (signalled == 0) {
        for (;;)
            pause();
    }
    kill(signalled, SIGTERM);
    siginfo_t si;
    /* WNOWAIT: wait until both are dead, leaving them zombies. */
    if (waitid(P_PID, exited, &si, WEXITED | WNOWAIT) || waitid(P_PID, signalled, &si, WEXITED | WNOWAIT))
        die("waitid");
    say("note: zombies %d (exit 42) and %d (SIGTERM)", exited, signalled);
    ready();
    wait_usr1();
    if (corrupting("reap"))
        waitpid(exited, NULL, 0);
    if (corrupting("reap-signalled"))
        waitpid(signalled, NULL, 0);

    check_zombie("exited child", exited);
    check_zombie("signalled child", signalled);
    int status = 0;
    pid_t got = waitpid(exited, &status, WNOHANG);
    check(got == exited && WIFEXITED(status) && WEXITSTATUS(status) == 42,
          "waitpid on the exited child: %d, status %#x", got, status);
    status = 0;
    got = waitpid(signalled, &status, WNOHANG);
    check(got == signalled && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
          "waitpid on the signalled child: %d, status %#x", got, status);
    check(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "other children appeared");
    finish();
}
