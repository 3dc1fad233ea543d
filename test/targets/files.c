/* files: file descriptors at fixed numbers with their offsets, flags and identities.
 *   10 regular file, O_RDWR, offset 4321       11 O_APPEND log
 *   12 O_CLOEXEC                                13 deleted file, still open, offset 123
 *   14 directory                                15/16/17 /dev/null, /dev/zero (O_NONBLOCK), /dev/urandom
 *   20+21 one open file description (dup)       22 a description shared with a forked child
 *   23 O_PATH
 * After restore: same numbers, same flags, offsets, inodes; sharing of descriptions within the
 * process and with the child; and exactly the fds open at READY (a leaked restorer fd shows).
 * The offsets of 0-2 are not compared: the log is shared and appended to. */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

static const char *const modes[] = {"offset", "cloexec", "append", "dup", "fork-shared", "deleted", "leak",
                                    "nonblock", NULL};

static const int fds[] = {0, 1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23};
#define NFDS (int)(sizeof fds / sizeof fds[0])

struct fd_state {
    int fl, fd_flags;
    struct stat st;
    off_t offset;
};
static struct fd_state before[NFDS];
static pid_t child;

static void place(int fd, int want)
{
    if (fd < 0)
        die("open");
    if (fd != want) {
        if (dup3(fd, want, fcntl(fd, F_GETFD) & FD_CLOEXEC ? O_CLOEXEC : 0) < 0)
            die("dup3");
        close(fd);
    }
}

static void record(struct fd_state *s, int fd)
{
    s->fl = fcntl(fd, F_GETFL);
    s->fd_flags = fcntl(fd, F_GETFD);
    fstat(fd, &s->st);
    s->offset = lseek(fd, 0, SEEK_CUR);
}

/* The set of open fds, as a bitmap of the first 1024 numbers. */
static void open_fds(uint8_t set[128])
{
    memset(set, 0, 128);
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        die("opendir /proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d) && fd < 1024)
            set[fd / 8] |= 1 << fd % 8;
    }
    closedir(d);
}

static uint8_t fds_at_ready[128];

static void check_open_fds(const char *who)
{
    uint8_t now[128];
    open_fds(now);
    for (int fd = 0; fd < 1024; fd++) {
        bool was = fds_at_ready[fd / 8] >> fd % 8 & 1, is = now[fd / 8] >> fd % 8 & 1;
        check(was == is, "%s: fd %d %s", who, fd, is ? "is open" : "is missing");
    }
}

static void child_main(void)
{
    wait_usr1();
    if (corrupting("fork-shared"))
        place(open(scratch("forked.dat"), O_RDWR), 22);
    check(lseek(22, 0, SEEK_CUR) == 99, "child sees offset %ld on fd 22", (long)lseek(22, 0, SEEK_CUR));
    check_open_fds("child");
    lseek(22, 777, SEEK_SET);
    finish_child("files child");
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    uint8_t buf[10000];
    fill_pattern(buf, sizeof buf, 0xc000);

    place(open(scratch("regular.dat"), O_RDWR | O_CREAT | O_TRUNC, 0600), 10);
    if (write(10, buf, sizeof buf) != sizeof buf)
        die("write");
    lseek(10, 4321, SEEK_SET);
    place(open(scratch("append.log"), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600), 11);
    if (write(11, "line1\n", 6) != 6)
        die("write");
    place(open(scratch("regular.dat"), O_RDONLY | O_CLOEXEC), 12);
    place(open(scratch("gone.dat"), O_RDWR | O_CREAT | O_TRUNC, 0600), 13);
    if (write(13, buf, 5000) != 5000)
        die("write");
    lseek(13, 123, SEEK_SET);
    unlink(scratch("gone.dat"));
    place(open(scratch(""), O_RDONLY | O_DIRECTORY), 14);
    place(open("/dev/null", O_WRONLY), 15);
    place(open("/dev/zero", O_RDONLY | O_NONBLOCK), 16);
    place(open("/dev/urandom", O_RDONLY), 17);
    place(open(scratch("shared.dat"), O_RDWR | O_CREAT | O_TRUNC, 0600), 20);
    if (write(20, buf, 2000) != 2000 || dup2(20, 21) != 21)
        die("dup2");
    lseek(20, 555, SEEK_SET);
    place(open(scratch("forked.dat"), O_RDWR | O_CREAT | O_TRUNC, 0600), 22);
    if (write(22, buf, 1000) != 1000)
        die("write");
    lseek(22, 99, SEEK_SET);
    place(open(scratch("regular.dat"), O_PATH), 23);

    child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        open_fds(fds_at_ready);
        child_main();
    }
    for (int i = 0; i < NFDS; i++)
        record(&before[i], fds[i]);
    open_fds(fds_at_ready);
    ready();
    wait_usr1();

    if (corrupting("offset"))
        lseek(10, 1, SEEK_CUR);
    if (corrupting("cloexec"))
        fcntl(12, F_SETFD, 0);
    if (corrupting("append"))
        fcntl(11, F_SETFL, fcntl(11, F_GETFL) & ~O_APPEND);
    if (corrupting("dup"))
        place(open(scratch("shared.dat"), O_RDWR), 21);
    if (corrupting("deleted"))
        pwrite(13, "x", 1, 10);
    if (corrupting("leak"))
        place(open("/dev/null", O_RDONLY), 30);
    if (corrupting("nonblock"))
        fcntl(16, F_SETFL, O_RDONLY);

    for (int i = 0; i < NFDS; i++) {
        struct fd_state now;
        record(&now, fds[i]);
        int fd = fds[i];
        check(now.fl == before[i].fl, "fd %d status flags %#o, were %#o", fd, now.fl, before[i].fl);
        check(now.fd_flags == before[i].fd_flags, "fd %d fd flags %d, were %d", fd, now.fd_flags,
              before[i].fd_flags);
        /* A deleted file can only come back as a new inode with the same contents (checked
         * below); every other fd must refer to the very same file. */
        check(now.st.st_dev == before[i].st.st_dev && (fd == 13 || now.st.st_ino == before[i].st.st_ino) &&
                  now.st.st_mode == before[i].st.st_mode && now.st.st_rdev == before[i].st.st_rdev,
              "fd %d refers to another file", fd);
        check(fd <= 2 || now.offset == before[i].offset, "fd %d offset %ld, was %ld", fd, (long)now.offset,
              (long)before[i].offset);
    }
    check_open_fds("parent");

    uint8_t got[100];
    check(read(10, got, sizeof got) == sizeof got && memcmp(got, buf + 4321, sizeof got) == 0,
          "regular file content at the offset differs");
    lseek(11, 0, SEEK_SET);
    if (write(11, "after\n", 6) == 6) {
        char log[32] = "";
        int n = pread(open(scratch("append.log"), O_RDONLY | O_CLOEXEC), log, sizeof log - 1, 0);
        check(n == 12 && memcmp(log, "line1\nafter\n", 12) == 0, "O_APPEND write did not append");
    }
    struct stat st;
    check(fstat(13, &st) == 0 && st.st_nlink == 0 && st.st_size == 5000, "deleted file has nlink %lu size %ld",
          (unsigned long)st.st_nlink, (long)st.st_size);
    check(pread(13, got, sizeof got, 0) == sizeof got && memcmp(got, buf, sizeof got) == 0,
          "deleted file content differs");
    char link[4200] = "";
    readlink("/proc/self/fd/13", link, sizeof link - 1);
    check(strstr(link, " (deleted)") != NULL, "fd 13 links to '%s'", link);
    int via_dir = openat(14, "regular.dat", O_RDONLY | O_CLOEXEC);
    check(via_dir >= 0 && fstat(via_dir, &st) == 0 && st.st_ino == before[3].st.st_ino,
          "openat on the directory fd does not reach regular.dat");
    check(before[8].st.st_rdev == makedev(1, 3) && before[9].st.st_rdev == makedev(1, 5) &&
              before[10].st.st_rdev == makedev(1, 9),
          "device numbers of null/zero/urandom");
    check(write(15, "x", 1) == 1, "write to /dev/null");
    memset(got, 1, sizeof got);
    check(read(16, got, sizeof got) == sizeof got && first_nonzero(got, sizeof got) < 0, "read from /dev/zero");
    memset(got, 0, sizeof got);
    check(read(17, got, 32) == 32 && first_nonzero(got, 32) >= 0, "read from /dev/urandom");
    lseek(20, 1000, SEEK_SET);
    check(lseek(21, 0, SEEK_CUR) == 1000, "fds 20 and 21 no longer share an open file description");

    kill(child, SIGUSR1);
    int status = 0;
    waitpid(child, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %#x)", status);
    check(lseek(22, 0, SEEK_CUR) == 777, "child's seek on fd 22 not seen by the parent (offset %ld)",
          (long)lseek(22, 0, SEEK_CUR));
    finish();
}
