/* memory: every kind of mapping a restore must rebuild.
 * private anonymous with untouched holes, shared anonymous shared with a child, private file
 * mapping with some dirtied pages, shared file mapping, memfd, mapping of a deleted file, a big
 * brk heap, a PROT_NONE guard page, and a grown stack that must keep growing after restore. */
#include "common.h"
#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define PAGE 4096
#define ANON_PAGES 64
#define SHARED_PAGES 16
#define FILE_PAGES 8
#define HEAP_BYTES (32u << 20)
#define HEAP_STRIDE_PAGES 64
#define STACK_BUF (1u << 20)

static const char *const modes[] = {"anon", "hole", "shared", "filepriv", "fileclean", "fileshared", "memfd",
                                    "deleted", "heap", "brk", "guard", "stack", "stackgrow", NULL};

static uint8_t *anon, *shanon, *fpriv, *fshared, *mfd, *deleted, *heap, *guard;
static int fshared_fd, mfd_fd, fpriv_fd;
static void *brk_end;
static pid_t shanon_child;
static const char *deleted_path;

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probing;

static void on_segv(int sig)
{
    (void)sig;
    if (probing)
        siglongjmp(probe_jmp, 1);
    say("FAIL unexpected SIGSEGV");
    _exit(1);
}

/* True when reading addr faults. */
static bool faults(volatile uint8_t *addr)
{
    if (sigsetjmp(probe_jmp, 1)) {
        probing = 0;
        return true;
    }
    probing = 1;
    (void)*addr;
    probing = 0;
    return false;
}

static int make_file(const char *name, uint32_t seed, size_t len)
{
    int fd = open(scratch(name), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(name);
    uint8_t *buf = malloc(len);
    fill_pattern(buf, len, seed);
    if (pwrite(fd, buf, len, 0) != (ssize_t)len)
        die("pwrite");
    free(buf);
    return fd;
}

static bool file_matches(int fd, size_t len, uint32_t seed)
{
    uint8_t *buf = malloc(len);
    bool ok = pread(fd, buf, len, 0) == (ssize_t)len && check_pattern(buf, len, seed) < 0;
    free(buf);
    return ok;
}

/* The perms column of /proc/self/maps for the mapping holding addr, and its name. */
static bool maps_entry(const void *addr, char perms[5], char *name, size_t name_len)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        int off = 0;
        if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %n", &lo, &hi, perms, &off) < 3)
            continue;
        if ((unsigned long)addr >= lo && (unsigned long)addr < hi) {
            snprintf(name, name_len, "%s", off ? line + off : "");
            name[strcspn(name, "\n")] = 0;
            found = true;
            break;
        }
    }
    fclose(f);
    return found;
}

/* The child sharing the anonymous shared mapping: waits for the parent's marker (written after
 * SIGUSR1), checks the pattern, answers with its own marker. */
static void shanon_child_main(void)
{
    while (memcmp(shanon, "PARENT!!", 8) != 0) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL); /* EINTR across a dump is fine: the loop re-checks */
    }
    check(check_pattern(shanon + PAGE, (SHARED_PAGES - 1) * PAGE, 0x5a5a) < 0, "shared anon pattern (child)");
    memcpy(shanon + 8, "CHILD!!!", 8);
    finish_child("shared-anon child");
}

static void setup(void)
{
    anon = mmap(NULL, ANON_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED)
        die("mmap anon");
    for (int i = 0; i < ANON_PAGES; i++)
        if (i % 4 < 2)
            fill_pattern(anon + i * PAGE, PAGE, 0x1000 + i);

    shanon = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shanon == MAP_FAILED)
        die("mmap shared anon");
    fill_pattern(shanon + PAGE, (SHARED_PAGES - 1) * PAGE, 0x5a5a);
    shanon_child = fork();
    if (shanon_child < 0)
        die("fork");
    if (shanon_child == 0)
        shanon_child_main();

    fpriv_fd = make_file("private.dat", 0x2000, FILE_PAGES * PAGE);
    fpriv = mmap(NULL, FILE_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fpriv_fd, 0);
    if (fpriv == MAP_FAILED)
        die("mmap private file");
    volatile uint8_t sink = 0;
    for (int i = 0; i < FILE_PAGES; i++)
        sink += fpriv[i * PAGE]; /* clean pages are present, backed by the page cache */
    (void)sink;
    fill_pattern(fpriv + 2 * PAGE, PAGE, 0x2222);
    fill_pattern(fpriv + 5 * PAGE, PAGE, 0x2555);

    fshared_fd = make_file("shared.dat", 0x3000, 4 * PAGE);
    fshared = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fshared_fd, 0);
    if (fshared == MAP_FAILED)
        die("mmap shared file");
    fill_pattern(fshared + PAGE, PAGE, 0x3111); /* written through the mapping */

    mfd_fd = memfd_create("handoff-memfd", 0);
    if (mfd_fd < 0 || ftruncate(mfd_fd, 4 * PAGE))
        die("memfd");
    mfd = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd_fd, 0);
    if (mfd == MAP_FAILED)
        die("mmap memfd");
    fill_pattern(mfd, 4 * PAGE, 0x4000);

    int dfd = make_file("deleted.dat", 0x5000, 4 * PAGE);
    deleted = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
    if (deleted == MAP_FAILED)
        die("mmap deleted");
    deleted_path = scratch("deleted.dat");
    unlink(deleted_path);
    close(dfd);

    heap = sbrk(HEAP_BYTES);
    if (heap == (void *)-1)
        die("sbrk");
    for (size_t p = 0; p < HEAP_BYTES / PAGE; p += HEAP_STRIDE_PAGES)
        fill_pattern(heap + p * PAGE, PAGE, 0x6000 + p);

    guard = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard == MAP_FAILED)
        die("mmap guard");
    fill_pattern(guard, 3 * PAGE, 0x7000);
    if (mprotect(guard + PAGE, PAGE, PROT_NONE))
        die("mprotect");

    brk_end = sbrk(0);
}

static void corrupt(void)
{
    if (corrupting("anon"))
        anon[5 * PAGE + 17] ^= 0x40;
    if (corrupting("hole"))
        anon[6 * PAGE + 100] = 1;
    if (corrupting("shared"))
        shanon[3 * PAGE] ^= 1;
    if (corrupting("filepriv"))
        fpriv[5 * PAGE + 9] ^= 1;
    if (corrupting("fileclean")) /* as if a clean page were restored as a copy: it stops following the file */
        ((volatile uint8_t *)fpriv)[0] = fpriv[0];
    if (corrupting("fileshared"))
        fshared[PAGE + 3] ^= 1;
    if (corrupting("memfd"))
        mfd[2 * PAGE] ^= 1;
    if (corrupting("deleted"))
        deleted[PAGE + 1] ^= 1;
    if (corrupting("heap"))
        heap[HEAP_STRIDE_PAGES * 7 * PAGE + 5] ^= 1;
    if (corrupting("brk"))
        sbrk(PAGE);
    if (corrupting("guard"))
        mprotect(guard + PAGE, PAGE, PROT_READ | PROT_WRITE);
}

static void verify(void)
{
    unsigned char resident[ANON_PAGES];
    if (check(mincore(anon, ANON_PAGES * PAGE, resident) == 0, "mincore: %s", strerror(errno)))
        for (int i = 0; i < ANON_PAGES; i++)
            if (i % 4 >= 2 && !check(!(resident[i] & 1), "anon hole page %d is resident", i))
                break;
    for (int i = 0; i < ANON_PAGES; i++) {
        long bad = i % 4 < 2 ? check_pattern(anon + i * PAGE, PAGE, 0x1000 + i) : first_nonzero(anon + i * PAGE, PAGE);
        if (!check(bad < 0, "anon page %d differs at %ld", i, bad))
            break;
    }

    memcpy(shanon, "PARENT!!", 8);
    int status = -1;
    for (int waited_ms = 0; waited_ms < 20000; waited_ms += 5) {
        if (waitpid(shanon_child, &status, WNOHANG) == shanon_child)
            break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (check(status != -1, "shared-anon child did not see the parent's write")) {
        check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "shared-anon child failed (status %#x)", status);
        check(memcmp(shanon + 8, "CHILD!!!", 8) == 0, "child's write to shared anon not visible");
    } else {
        kill(shanon_child, SIGKILL);
        waitpid(shanon_child, NULL, 0);
    }

    for (int i = 0; i < FILE_PAGES; i++) {
        uint32_t seed = i == 2 ? 0x2222 : i == 5 ? 0x2555 : 0x2000;
        size_t base = i == 2 || i == 5 ? 0 : (size_t)i * PAGE;
        long bad = -1;
        for (size_t b = 0; b < PAGE && bad < 0; b++)
            if (fpriv[i * PAGE + b] != pattern_byte(seed, base + b))
                bad = b;
        if (!check(bad < 0, "private file page %d differs at %ld", i, bad))
            break;
    }
    check(file_matches(fpriv_fd, FILE_PAGES * PAGE, 0x2000), "private mapping's file changed");
    /* A clean private page still follows the file; a dirtied one does not. */
    uint8_t marker = 0xee;
    if (pwrite(fpriv_fd, &marker, 1, 100) == 1 && pwrite(fpriv_fd, &marker, 1, 2 * PAGE + 100) == 1) {
        check(fpriv[100] == 0xee, "clean private file page no longer backed by the file");
        check(fpriv[2 * PAGE + 100] == pattern_byte(0x2222, 100), "dirty private file page follows the file");
    }

    long bad = check_pattern(fshared, PAGE, 0x3000);
    check(bad < 0, "shared file page 0 differs at %ld", bad);
    bad = check_pattern(fshared + PAGE, PAGE, 0x3111);
    check(bad < 0, "shared file page 1 differs at %ld", bad);
    uint8_t b1 = 0;
    fshared[3 * PAGE + 7] = 0xab;
    check(pread(fshared_fd, &b1, 1, 3 * PAGE + 7) == 1 && b1 == 0xab, "write to shared file mapping not in the file");
    b1 = 0xcd;
    check(pwrite(fshared_fd, &b1, 1, 2 * PAGE + 9) == 1 && fshared[2 * PAGE + 9] == 0xcd,
          "write to the file not in the shared mapping");

    bad = check_pattern(mfd, 4 * PAGE, 0x4000);
    check(bad < 0, "memfd mapping differs at %ld", bad);
    mfd[PAGE + 1] = 0x11;
    check(pread(mfd_fd, &b1, 1, PAGE + 1) == 1 && b1 == 0x11, "memfd mapping not shared with the memfd");

    bad = check_pattern(deleted, 4 * PAGE, 0x5000);
    check(bad < 0, "deleted-file mapping differs at %ld", bad);
    char perms[5], name[4096];
    if (check(maps_entry(deleted, perms, name, sizeof name), "deleted-file mapping missing from maps")) {
        check(strstr(name, "(deleted)") != NULL, "deleted-file mapping shows as '%s'", name);
        check(strcmp(perms, "rw-s") == 0, "deleted-file mapping perms %s", perms);
    }
    check(access(deleted_path, F_OK) != 0, "deleted file exists again");

    check(sbrk(0) == brk_end, "brk moved: %p, was %p", sbrk(0), brk_end);
    for (size_t p = 0; p < HEAP_BYTES / PAGE; p++) {
        bad = p % HEAP_STRIDE_PAGES == 0 ? check_pattern(heap + p * PAGE, PAGE, 0x6000 + p)
                                         : first_nonzero(heap + p * PAGE, PAGE);
        if (!check(bad < 0, "heap page %zu differs at %ld", p, bad))
            break;
    }
    uint8_t *more = sbrk(PAGE * 16);
    if (check(more != (void *)-1, "heap cannot grow after restore")) {
        memset(more, 0x77, PAGE * 16);
        sbrk(-PAGE * 16);
    }

    check(maps_entry(guard + PAGE, perms, name, sizeof name) && strcmp(perms, "---p") == 0, "guard page perms %s",
          perms);
    check(maps_entry(guard, perms, name, sizeof name) && strcmp(perms, "rw-p") == 0, "page below guard perms %s",
          perms);
    check(faults(guard + PAGE), "guard page is readable");
    check(!faults(guard) && !faults(guard + 2 * PAGE), "pages around the guard fault");
    check(check_pattern(guard, PAGE, 0x7000) < 0, "page below guard differs");
}

/* Grows the stack by depth * 64 KiB after restore; fails cleanly if the stack does not grow. */
static int grow(int depth)
{
    volatile uint8_t frame[64 << 10];
    for (size_t i = 0; i < sizeof frame; i += PAGE)
        frame[i] = (uint8_t)depth;
    int below = depth > 0 ? grow(depth - 1) : 0;
    return below + frame[PAGE] - (uint8_t)depth;
}

static void deep(void)
{
    volatile uint8_t buf[STACK_BUF];
    fill_pattern((uint8_t *)buf, STACK_BUF, 0x8000);
    ready();
    wait_usr1();
    corrupt();
    if (corrupting("stack"))
        buf[STACK_BUF / 2] ^= 1;
    verify();
    long bad = check_pattern((uint8_t *)buf, STACK_BUF, 0x8000);
    check(bad < 0, "stack buffer differs at %ld", bad);
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    static uint8_t altstack[64 << 10];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);

    setup();
    deep();

    if (sigsetjmp(probe_jmp, 1)) {
        probing = 0;
        check(false, "stack cannot grow after restore");
        finish();
    }
    if (corrupting("stackgrow")) {
        /* A 1 MiB stack limit makes the 4 MiB growth below fault, as a non-growing stack would. */
        struct rlimit rl = {1 << 20, 1 << 20};
        setrlimit(RLIMIT_STACK, &rl);
    }
    probing = 1;
    int r = grow(64);
    probing = 0;
    check(r == 0, "grown stack frames differ");
    finish();
}
