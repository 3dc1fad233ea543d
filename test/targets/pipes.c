/* pipes: a pipe with 70000 buffered bytes and a 128 KiB capacity (10/11), a FIFO with
 * buffered data (12 read end O_NONBLOCK, 13 write end), a pipe shared with a child that
 * writes into it after restore (14/15), and an empty O_NONBLOCK pipe (16/17).
 * After restore the buffered bytes are all there, in order, exactly once. */
#include "common.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *const modes[] = {"drain", "size", "fifo", "split", "extra", NULL};

#define BUFFERED 70000
#define CAPACITY (128 << 10)
static const char fifo_data[] = "fifo-data-123";
static const char child_msg[] = "hello from the child\n";

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

static void make_pipe(int rd, int wr, int flags)
{
    int p[2];
    if (pipe2(p, flags))
        die("pipe2");
    /* Park the ends on high numbers first so the renumbering never closes a fresh end. */
    place(p[0], 100 + rd);
    place(p[1], 100 + wr);
    place(100 + rd, rd);
    place(100 + wr, wr);
}

static int queued(int fd)
{
    int n = -1;
    ioctl(fd, FIONREAD, &n);
    return n;
}

static bool same_pipe(int rd, int wr)
{
    struct stat a, b;
    return fstat(rd, &a) == 0 && fstat(wr, &b) == 0 && a.st_ino == b.st_ino && S_ISFIFO(a.st_mode);
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    uint8_t *data = malloc(BUFFERED);
    fill_pattern(data, BUFFERED, 0xd000);

    make_pipe(10, 11, 0);
    if (fcntl(11, F_SETPIPE_SZ, CAPACITY) < CAPACITY)
        die("F_SETPIPE_SZ");
    if (write(11, data, BUFFERED) != BUFFERED)
        die("write pipe");

    const char *fifo = scratch("fifo");
    unlink(fifo);
    if (mkfifo(fifo, 0600))
        die("mkfifo");
    place(open(fifo, O_RDONLY | O_NONBLOCK), 12);
    place(open(fifo, O_WRONLY), 13);
    if (write(13, fifo_data, sizeof fifo_data) != sizeof fifo_data)
        die("write fifo");

    make_pipe(14, 15, 0);
    make_pipe(16, 17, O_NONBLOCK);

    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        wait_usr1();
        check(write(15, child_msg, sizeof child_msg) == sizeof child_msg, "child's write: %s", strerror(errno));
        finish_child("pipes child");
    }
    ready();
    wait_usr1();

    uint8_t byte;
    if (corrupting("drain"))
        (void)!read(10, &byte, 1);
    if (corrupting("size"))
        fcntl(11, F_SETPIPE_SZ, 2 * CAPACITY);
    if (corrupting("fifo"))
        (void)!read(12, &byte, 1);
    if (corrupting("split"))
        make_pipe(100, 11, 0);
    if (corrupting("extra"))
        (void)!write(17, "x", 1);

    check(fcntl(10, F_GETPIPE_SZ) == CAPACITY, "pipe capacity %d", fcntl(10, F_GETPIPE_SZ));
    check(same_pipe(10, 11), "fds 10 and 11 are not the two ends of one pipe");
    check(queued(10) == BUFFERED, "%d bytes queued in the pipe, expected %d", queued(10), BUFFERED);
    uint8_t *got = calloc(1, BUFFERED);
    size_t have = 0;
    fcntl(10, F_SETFL, O_NONBLOCK);
    while (have < BUFFERED) {
        ssize_t n = read(10, got + have, BUFFERED - have);
        if (n <= 0)
            break;
        have += n;
    }
    check(have == BUFFERED && memcmp(got, data, BUFFERED) == 0, "pipe contents differ (%zu bytes read)", have);
    check(read(10, &byte, 1) == -1 && errno == EAGAIN, "pipe holds more than was buffered");
    check(write(11, "ping", 4) == 4 && read(10, got, 4) == 4 && memcmp(got, "ping", 4) == 0,
          "write-then-read through the pipe");

    struct stat st, path_st;
    check(fstat(12, &st) == 0 && S_ISFIFO(st.st_mode) && stat(fifo, &path_st) == 0 && st.st_ino == path_st.st_ino,
          "fd 12 is not the FIFO at %s", fifo);
    check(same_pipe(12, 13), "FIFO ends are not the same pipe");
    check(fcntl(12, F_GETFL) & O_NONBLOCK, "FIFO read end lost O_NONBLOCK");
    check(queued(12) == sizeof fifo_data, "%d bytes queued in the FIFO", queued(12));
    char fbuf[64] = "";
    check(read(12, fbuf, sizeof fbuf) == sizeof fifo_data && memcmp(fbuf, fifo_data, sizeof fifo_data) == 0,
          "FIFO contents differ");

    check(queued(16) == 0, "empty pipe holds %d bytes", queued(16));
    check(read(16, &byte, 1) == -1 && errno == EAGAIN, "empty O_NONBLOCK pipe does not say EAGAIN");

    kill(child, SIGUSR1);
    char msg[64] = "";
    check(read(14, msg, sizeof msg) == sizeof child_msg && memcmp(msg, child_msg, sizeof child_msg) == 0,
          "message from the child through the shared pipe differs: '%s'", msg);
    int status = 0;
    waitpid(child, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %#x)", status);
    finish();
}
