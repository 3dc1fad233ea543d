/* creds: started as root, drops to distinct real/effective/saved uids and gids with
 * supplementary groups, keeps a chosen subset of capabilities (distinct effective, permitted,
 * inheritable and ambient sets), drops two from the bounding set, sets securebits and
 * no_new_privs. After restore every one of these reads back the same. */
#include "common.h"
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static const char *const modes[] = {"caps", "ambient", "uid", NULL};

static const gid_t groups[] = {1001, 1002, 1003};
#define BIT(c) (1ULL << (c))
static const uint64_t permitted = BIT(CAP_CHOWN) | BIT(CAP_DAC_OVERRIDE) | BIT(CAP_KILL) | BIT(CAP_SETUID) |
                                  BIT(CAP_SETGID) | BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_SYS_PTRACE);
static const uint64_t effective = BIT(CAP_CHOWN) | BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE);
static const uint64_t inheritable = BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE);
static const uint64_t ambient = BIT(CAP_NET_BIND_SERVICE);
static const uint64_t bounding_dropped = BIT(CAP_SYS_MODULE) | BIT(CAP_SYS_RAWIO);
static const int securebits = SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP;

struct caps {
    uint64_t eff, prm, inh;
};

static int get_caps(struct caps *c)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d))
        return -1;
    c->eff = d[0].effective | (uint64_t)d[1].effective << 32;
    c->prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
    c->inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
    return 0;
}

static int set_caps(uint64_t eff, uint64_t prm, uint64_t inh)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {
        {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)},
    };
    return (int)syscall(SYS_capset, &h, d);
}

static int last_cap(void)
{
    FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "r");
    int n = CAP_LAST_CAP;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = CAP_LAST_CAP;
        fclose(f);
    }
    return n;
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    if (geteuid() != 0) {
        say("FAIL setup: the creds target must start as root");
        return 1;
    }
    int top = last_cap();
    uint64_t bounding = 0; /* a container may start with a reduced bounding set */
    for (int c = 0; c <= top; c++)
        if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1)
            bounding |= BIT(c);
    bounding &= ~bounding_dropped;
    if (setgroups(3, groups))
        die("setgroups");
    for (int c = 0; c <= top; c++)
        if (bounding_dropped & BIT(c) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0))
            die("PR_CAPBSET_DROP");
    if (prctl(PR_SET_SECUREBITS, securebits, 0, 0, 0))
        die("PR_SET_SECUREBITS");
    if (setresgid(2001, 2002, 2003))
        die("setresgid");
    if (setresuid(3001, 3002, 3003))
        die("setresuid");
    if (set_caps(effective, permitted, inheritable))
        die("capset");
    for (int c = 0; c <= top; c++)
        if (ambient & BIT(c) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0))
            die("PR_CAP_AMBIENT_RAISE");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        die("PR_SET_NO_NEW_PRIVS");
    int dumpable = prctl(PR_GET_DUMPABLE);
    ready();
    wait_usr1();

    if (corrupting("caps"))
        set_caps(effective & ~BIT(CAP_KILL), permitted, inheritable);
    if (corrupting("ambient"))
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, CAP_NET_BIND_SERVICE, 0, 0);
    if (corrupting("uid"))
        setresuid(-1, 3001, -1);

    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    check(r == 3001 && e == 3002 && s == 3003, "uids %d/%d/%d", r, e, s);
    check(gr == 2001 && ge == 2002 && gs == 2003, "gids %d/%d/%d", gr, ge, gs);
    int fsuid = setfsuid(-1), fsgid = setfsgid(-1);
    check(fsuid == 3002 && fsgid == 2002, "fsuid %d fsgid %d", fsuid, fsgid);
    gid_t now[16];
    int n = getgroups(16, now);
    check(n == 3 && memcmp(now, groups, sizeof groups) == 0, "%d supplementary groups", n);
    struct caps c = {0, 0, 0};
    if (check(get_caps(&c) == 0, "capget: %s", strerror(errno))) {
        check(c.eff == effective, "effective caps %#llx", (unsigned long long)c.eff);
        check(c.prm == permitted, "permitted caps %#llx", (unsigned long long)c.prm);
        check(c.inh == inheritable, "inheritable caps %#llx", (unsigned long long)c.inh);
    }
    for (int cap = 0; cap <= top; cap++) {
        check(prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == !!(bounding & BIT(cap)), "bounding set, cap %d", cap);
        check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == !!(ambient & BIT(cap)),
              "ambient set, cap %d", cap);
    }
    check(prctl(PR_GET_SECUREBITS) == securebits, "securebits %#x", prctl(PR_GET_SECUREBITS));
    check(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs lost");
    check(prctl(PR_GET_DUMPABLE) == dumpable, "dumpable %d, was %d", prctl(PR_GET_DUMPABLE), dumpable);
    finish();
}
