/* pty: a job started from a shell on a pseudo-terminal.
 *   root  = the terminal: holds the pty master (fd 10)
 *   shell = session leader whose controlling terminal is the slave (fd 10)
 *   job   = its own process group, the terminal's foreground group (slave on fd 10)
 * The slave is raw-ish (no ICANON, no ECHO, no ICRNL, no IXON; output processing on) with a
 * 40x132 window. Queued at READY: "typed ahead" written by the terminal, unread by the job, and
 * "job output\n" written by the job (the terminal will read "job output\r\n"), unread.
 * After SIGUSR1 (root -> shell -> job): same pty index and slave name, termios, window size,
 * controlling terminal (/dev/tty opens and is the slave, tcgetsid, tty_nr), foreground group,
 * both queued byte strings arrive exactly, and a line written by the terminal reaches the job,
 * whose echo of it comes back. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

static const char *const modes[] = {"index", "termios", "winsize", "output", "input", "pgrp", "ctty", NULL};

#define FD 10
static const char typed[] = "typed ahead";
static const char job_out[] = "job output\n";
static const char job_out_seen[] = "job output\r\n";
static const char line[] = "ping\n";
static const char echo_seen[] = "echo:ping\r\n";

static int pty_index;
static char slave_path[64];
static struct termios want_termios;
static struct winsize want_ws = {.ws_row = 40, .ws_col = 132, .ws_xpixel = 640, .ws_ypixel = 480};
static pid_t root, shell, job;
static int sync_pipe[2];

static void place(int fd, int want)
{
    if (fd < 0)
        die("open");
    if (fd != want) {
        if (dup2(fd, want) < 0)
            die("dup2");
        close(fd);
    }
}

/* Reads exactly n bytes within 5 s (or fewer on timeout); returns how many. */
static size_t read_exact(int fd, char *buf, size_t n)
{
    size_t have = 0;
    while (have < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t r = read(fd, buf + have, n - have);
        if (r <= 0)
            break;
        have += r;
    }
    return have;
}

/* Nothing more is queued on fd within 100 ms. */
static bool nothing_more(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 100) == 0;
}

static bool same_termios(const struct termios *a, const struct termios *b)
{
    return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag && a->c_lflag == b->c_lflag &&
           memcmp(a->c_cc, b->c_cc, sizeof a->c_cc) == 0 && cfgetispeed(a) == cfgetispeed(b) && cfgetospeed(a) == cfgetospeed(b);
}

static void check_terminal(const char *role, int fd)
{
    struct termios t;
    struct winsize ws = {0};
    check(tcgetattr(fd, &t) == 0 && same_termios(&t, &want_termios), "%s: termios differ", role);
    check(ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row == want_ws.ws_row && ws.ws_col == want_ws.ws_col && ws.ws_xpixel == want_ws.ws_xpixel &&
              ws.ws_ypixel == want_ws.ws_ypixel,
          "%s: window %ux%u (%ux%u px)", role, ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel);
}

/* The device number as tty_nr and TIOCGDEV give it (new_encode_dev). */
static unsigned long encode_dev(dev_t d)
{
    return major(d) << 8 | (minor(d) & 0xff) | ((minor(d) & ~0xffu) << 12);
}

/* /dev/tty opens and is the slave (TIOCGDEV); the session and tty_nr agree. */
static void check_ctty(const char *role)
{
    struct stat want;
    stat(slave_path, &want);
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
    check(fd >= 0, "%s: open(/dev/tty): %s", role, strerror(errno));
    if (fd >= 0) {
        unsigned int dev = 0;
        check(ioctl(fd, TIOCGDEV, &dev) == 0 && dev == encode_dev(want.st_rdev), "%s: /dev/tty is device %#x, not %s", role, dev, slave_path);
        check(tcgetsid(fd) == shell, "%s: terminal session %d, expected %d", role, tcgetsid(fd), shell);
        close(fd);
    }
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024] = "";
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = 0;
        fclose(f);
    }
    char *p = strrchr(buf, ')');
    unsigned long tty_nr = 0;
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %lu", &tty_nr);
    check(tty_nr == encode_dev(want.st_rdev), "%s: tty_nr %#lx", role, tty_nr);
}

static void job_main(void)
{
    setpgid(0, 0);
    /* A job that is not in the foreground (a broken restore) must fail, not stop. */
    signal(SIGTTIN, SIG_IGN);
    signal(SIGTTOU, SIG_IGN);
    if (write(FD, job_out, strlen(job_out)) != (ssize_t)strlen(job_out))
        die("job write");
    if (write(sync_pipe[1], "j", 1) != 1)
        die("sync");
    wait_usr1();
    if (corrupting("ctty"))
        ioctl(FD, TIOCNOTTY);
    if (corrupting("termios")) {
        struct termios t;
        tcgetattr(FD, &t);
        t.c_oflag ^= ONLCR;
        tcsetattr(FD, TCSANOW, &t);
    }
    char name[64] = "";
    check(ttyname_r(FD, name, sizeof name) == 0 && strcmp(name, slave_path) == 0, "job: ttyname '%s', expected %s", name, slave_path);
    check(tcgetpgrp(FD) == getpgrp() && getpgrp() == getpid(), "job: foreground group %d, mine %d", tcgetpgrp(FD), getpgrp());
    check(getsid(0) == shell, "job: session %d, expected %d", getsid(0), shell);
    check_terminal("job", FD);
    check_ctty("job");
    /* The terminal's typed-ahead bytes come first, then the line it sends after the check. */
    char buf[64] = "";
    size_t want = strlen(typed) + strlen(line);
    size_t got = read_exact(FD, buf, want);
    check(got == want && memcmp(buf, typed, strlen(typed)) == 0 && memcmp(buf + strlen(typed), line, strlen(line)) == 0,
          "job: input differs (%zu bytes read)", got);
    if (write(FD, "echo:", 5) != 5 || write(FD, line, strlen(line)) != (ssize_t)strlen(line))
        check(false, "job: echo write: %s", strerror(errno));
    finish_child("job");
}

static void shell_main(void)
{
    shell = getpid();
    if (setsid() < 0)
        die("setsid");
    place(open(slave_path, O_RDWR), FD); /* no O_NOCTTY: it becomes our controlling terminal */
    struct termios t;
    if (tcgetattr(FD, &t))
        die("tcgetattr");
    t.c_lflag &= ~(ICANON | ECHO | IEXTEN);
    t.c_iflag &= ~(ICRNL | IXON);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(FD, TCSANOW, &t) || ioctl(FD, TIOCSWINSZ, &want_ws))
        die("termios");
    tcgetattr(FD, &want_termios);
    job = fork();
    if (job < 0)
        die("fork");
    if (job == 0)
        job_main();
    setpgid(job, job);
    if (tcsetpgrp(FD, job))
        die("tcsetpgrp");
    if (write(sync_pipe[1], "s", 1) != 1)
        die("sync");
    wait_usr1();
    if (corrupting("pgrp")) {
        signal(SIGTTOU, SIG_IGN);
        tcsetpgrp(FD, getpgrp());
    }
    kill(job, SIGUSR1);
    check(tcgetpgrp(FD) == job, "shell: foreground group %d, expected the job %d", tcgetpgrp(FD), job);
    check_ctty("shell");
    int status = 0;
    check(waitpid(job, &status, 0) == job && WIFEXITED(status) && WEXITSTATUS(status) == 0, "shell: job failed (status %#x)", status);
    finish_child("shell");
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    root = getpid();
    place(posix_openpt(O_RDWR | O_NOCTTY), FD);
    if (grantpt(FD) || unlockpt(FD) || ioctl(FD, TIOCGPTN, &pty_index))
        die("pty");
    snprintf(slave_path, sizeof slave_path, "/dev/pts/%d", pty_index);
    if (pipe(sync_pipe))
        die("pipe");
    /* The shell's values (termios as the kernel stored it) are needed by every process: the
     * shell sets them before the job exists, the root computes the same after sync. */
    shell = fork();
    if (shell < 0)
        die("fork");
    if (shell == 0)
        shell_main();
    char c;
    for (int i = 0; i < 2; i++)
        if (read(sync_pipe[0], &c, 1) != 1)
            die("sync read");
    if (tcgetattr(FD, &want_termios)) /* on a master: the slave's termios */
        die("tcgetattr");
    job = tcgetpgrp(FD);
    if (write(FD, typed, strlen(typed)) != (ssize_t)strlen(typed))
        die("write typed");
    ready();
    wait_usr1();
    kill(shell, SIGUSR1);

    if (corrupting("index"))
        place(posix_openpt(O_RDWR | O_NOCTTY), FD);
    if (corrupting("winsize")) {
        struct winsize ws = want_ws;
        ws.ws_col++;
        ioctl(FD, TIOCSWINSZ, &ws);
    }
    if (corrupting("input"))
        (void)!write(FD, "x", 1);
    int index = -1;
    check(ioctl(FD, TIOCGPTN, &index) == 0 && index == pty_index, "terminal: pty index %d, expected %d", index, pty_index);
    char *name = ptsname(FD);
    check(name && strcmp(name, slave_path) == 0, "terminal: ptsname %s, expected %s", name ? name : "?", slave_path);
    check_terminal("terminal", FD);
    char buf[64] = "";
    if (corrupting("output"))
        (void)!read(FD, buf, 1);
    size_t got = read_exact(FD, buf, strlen(job_out_seen));
    check(got == strlen(job_out_seen) && memcmp(buf, job_out_seen, got) == 0 && nothing_more(FD), "terminal: pending output differs (%zu bytes read)", got);
    if (write(FD, line, strlen(line)) != (ssize_t)strlen(line))
        check(false, "terminal: write: %s", strerror(errno));
    memset(buf, 0, sizeof buf);
    got = read_exact(FD, buf, strlen(echo_seen));
    check(got == strlen(echo_seen) && memcmp(buf, echo_seen, got) == 0, "terminal: echo differs (%zu bytes read)", got);
    int status = 0;
    pid_t reaped = waitpid(shell, &status, 0);
    check(reaped == shell && WIFEXITED(status) && WEXITSTATUS(status) == 0, "shell failed (status %#x, waitpid %d: %s)", status, reaped, strerror(errno));
    finish();
}
