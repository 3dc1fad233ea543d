/* reaper: not a target but a harness helper. `reaper [--setsid] STATUS_FILE CMD ARGS...` becomes a child
 * subreaper, runs CMD, and reaps every process that ends up its child: CMD itself and
 * everything orphaned below it (a restored tree detached by `handoff restore --detach`). Each
 * death is appended to STATUS_FILE as "<pid> exit <code>" or "<pid> signal <sig>", CMD's as
 * "command <pid> exit <code>". It exits when it has no children left. --setsid starts CMD in a
 * new session.
 * Without it, orphans go to pid 1, which in some containers never reaps: their pids would stay
 * taken and their exit statuses unknown. CMD starts with only fds 0-2 open. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    bool new_session = argc > 1 && strcmp(argv[1], "--setsid") == 0;
    if (new_session) {
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: reaper [--setsid] STATUS_FILE CMD [ARGS...]\n");
        return 2;
    }
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) {
        perror("reaper");
        return 2;
    }
    pid_t cmd = fork();
    if (cmd < 0) {
        perror("fork");
        return 2;
    }
    if (cmd == 0) {
        /* Fds the test runner inherited from its own parent must not reach the program under
         * test: the tool would see them as objects shared with an outside process. */
        if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        if (new_session && setsid() < 0) {
            perror("setsid");
            _exit(127);
        }
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int cmd_code = 127;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char line[96];
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        int n = WIFEXITED(status) ? snprintf(line, sizeof line, "%s%d exit %d\n", pid == cmd ? "command " : "", pid, code)
                                  : snprintf(line, sizeof line, "%s%d signal %d\n", pid == cmd ? "command " : "", pid,
                                             WTERMSIG(status));
        if (write(out, line, n) != n)
            perror("reaper: write");
        if (pid == cmd)
            cmd_code = code;
    }
    return cmd_code;
}
