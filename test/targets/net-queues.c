/* net-queues: what waits in socket queues must come back exactly.
 *  - for each unix type (stream, dgram, seqpacket) a socketpair a->b with four queued
 *    messages: plain bytes; bytes with a pipe read end (the pipe holding bytes, its write end
 *    kept) and a file (offset 4, the file also kept open here: one open file description)
 *    as SCM_RIGHTS; bytes with b itself (in flight in its own queue) and c, a socket living
 *    only in flight whose own queue holds bytes and whose peer d is kept; plain bytes again;
 *  - UDP on 127.0.0.1: two datagrams from two senders, then connected to the first sender,
 *    then a 3000-byte datagram from it; UDP wildcard-bound on [::]: one datagram from [::1]
 *    and one from an IPv4 sender (read as ::ffff:127.0.0.1).
 *  - with HANDOFF_UNIX_SERVER=DIR and HANDOFF_UNIX_OUTSIDE=closed|reconnect: a stream socket
 *    connected to DIR/stream.sock and a datagram socket bound to inside.sock connected to
 *    DIR/dgram.sock, served by a process that is not dumped and has queued a message on each
 *    (stream: "from outside"; dgram: "reply-1" sent to inside.sock before the dump).
 * After SIGUSR1 every message comes out with its bytes and as many descriptors, each of
 * them working (pipe bytes and writes, the shared file offset, the socket's identity, the
 * in-flight socket's queue and peer); the datagrams come from the same senders in order; the
 * outside sockets give their queued message, then (closed) EOF/EPIPE and ECONNREFUSED, or
 * (reconnect) the datagram socket is connected to DIR/dgram.sock again and can send to it. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static const char *const modes[] = {"message", "fd", "udp", NULL};

static const int types[3] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
static const char *const type_names[3] = {"stream", "dgram", "seqpacket"};
static int pa[3], pb[3], pd[3], pw[3], pf[3];
static int u4, u4s1, u4s2, u6, u6s, u6s4;
static struct sockaddr_in u4s1_addr, u4s2_addr;
static struct sockaddr_in6 u6s_addr;
static struct sockaddr_in u6s4_addr;
static const char *outside_mode, *server_dir;
static int o_st = -1, o_dg = -1;

static void send_fds(int fd, const char *text, const int *fds, int n, const char *what)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } cb;
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n) {
        memset(&cb, 0, sizeof cb);
        mh.msg_control = cb.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)strlen(text))
        die(what);
}

/* One message with its descriptors; returns its length, -1 and errno when none. */
static ssize_t recv_fds(int fd, char *buf, size_t len, int *fds, int *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } cb;
    struct iovec iov = {.iov_base = buf, .iov_len = len - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof cb.buf};
    *nfds = 0;
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    buf[n] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
            *nfds += k;
        }
    }
    return n;
}

static void setup_in_flight(void)
{
    for (int t = 0; t < 3; t++) {
        int sv[2], cd[2], p[2];
        if (socketpair(AF_UNIX, types[t], 0, sv) || socketpair(AF_UNIX, SOCK_STREAM, 0, cd) || pipe(p))
            die("socketpair/pipe");
        pa[t] = sv[0];
        pb[t] = sv[1];
        pd[t] = cd[1];
        pw[t] = p[1];
        if (send(cd[1], "in c", 4, 0) != 4)
            die("send to c");
        char text[32];
        snprintf(text, sizeof text, "pipe-%s", type_names[t]);
        if (write(p[1], text, strlen(text)) != (ssize_t)strlen(text))
            die("write pipe");
        char name[32];
        snprintf(name, sizeof name, "inflight-%s.txt", type_names[t]);
        pf[t] = open(scratch(name), O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (pf[t] < 0 || write(pf[t], "0123456789", 10) != 10 || lseek(pf[t], 4, SEEK_SET) != 4)
            die("inflight file");
        send_fds(pa[t], "plain before", NULL, 0, "send plain");
        int files[2] = {p[0], pf[t]};
        send_fds(pa[t], "pipe and file", files, 2, "send pipe and file");
        int socks[2] = {pb[t], cd[0]};
        send_fds(pa[t], "sockets", socks, 2, "send sockets");
        send_fds(pa[t], "plain after", NULL, 0, "send plain after");
        close(p[0]);
        close(cd[0]);
    }
}

static int udp_bound(int family, const char *addr, void *out, socklen_t len)
{
    int fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0)
        die("socket(udp)");
    if (family == AF_INET) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        inet_pton(AF_INET, addr, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof a))
            die("bind udp4");
    } else {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6};
        inet_pton(AF_INET6, addr, &a.sin6_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof a))
            die("bind udp6");
    }
    if (out && getsockname(fd, out, &len))
        die("getsockname udp");
    return fd;
}

static void sendto_or_die(int fd, const void *buf, size_t len, const void *to, socklen_t tolen)
{
    if (sendto(fd, buf, len, 0, to, tolen) != (ssize_t)len)
        die("sendto");
}

/* Waits until `fd` has `count` datagrams queued (loopback delivery is quick, not instant). */
static void wait_queued(int fd, int count)
{
    for (int tries = 0; tries < 500; tries++) {
        int off = 0, seen = 0;
        setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
        char buf[4096];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT)) >= 0)
            seen++;
        off = -1;
        setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
        if (seen >= count)
            return;
        usleep(2000);
    }
    die("datagrams not queued");
}

static void setup_udp(void)
{
    struct sockaddr_in local4;
    struct sockaddr_in6 local6;
    u4 = udp_bound(AF_INET, "127.0.0.1", &local4, sizeof local4);
    u4s1 = udp_bound(AF_INET, "127.0.0.1", &u4s1_addr, sizeof u4s1_addr);
    u4s2 = udp_bound(AF_INET, "127.0.0.1", &u4s2_addr, sizeof u4s2_addr);
    sendto_or_die(u4s1, "u4-1", 4, &local4, sizeof local4);
    sendto_or_die(u4s2, "u4-2", 4, &local4, sizeof local4);
    wait_queued(u4, 2);
    if (connect(u4, (struct sockaddr *)&u4s1_addr, sizeof u4s1_addr))
        die("connect udp4");
    uint8_t big[3000];
    fill_pattern(big, sizeof big, 0x4d00);
    sendto_or_die(u4s1, big, sizeof big, &local4, sizeof local4);
    wait_queued(u4, 3);

    u6 = udp_bound(AF_INET6, "::", &local6, sizeof local6);
    u6s = udp_bound(AF_INET6, "::1", &u6s_addr, sizeof u6s_addr);
    u6s4 = udp_bound(AF_INET, "127.0.0.1", &u6s4_addr, sizeof u6s4_addr);
    struct sockaddr_in6 to6 = local6;
    inet_pton(AF_INET6, "::1", &to6.sin6_addr);
    sendto_or_die(u6s, "u6-1", 4, &to6, sizeof to6);
    struct sockaddr_in to4 = {.sin_family = AF_INET, .sin_port = local6.sin6_port, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    sendto_or_die(u6s4, "u6-v4", 5, &to4, sizeof to4);
    wait_queued(u6, 2);
}

static socklen_t unix_addr(struct sockaddr_un *a, const char *dir, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    return sizeof *a;
}

static void setup_outside(void)
{
    outside_mode = getenv("HANDOFF_UNIX_OUTSIDE");
    server_dir = getenv("HANDOFF_UNIX_SERVER");
    if (!outside_mode || !server_dir)
        return;
    struct sockaddr_un a;
    o_st = socket(AF_UNIX, SOCK_STREAM, 0);
    if (o_st < 0 || connect(o_st, (struct sockaddr *)&a, unix_addr(&a, server_dir, "stream.sock")))
        die("connect to the outside stream server");
    o_dg = socket(AF_UNIX, SOCK_DGRAM, 0);
    unlink(scratch("inside.sock"));
    if (o_dg < 0 || bind(o_dg, (struct sockaddr *)&a, unix_addr(&a, scratch_dir, "inside.sock")))
        die("bind inside.sock");
    if (connect(o_dg, (struct sockaddr *)&a, unix_addr(&a, server_dir, "dgram.sock")))
        die("connect to the outside dgram server");
    if (send(o_dg, "hello server", 12, 0) != 12)
        die("send to the outside dgram server");
    /* The server answers both at once; READY only once both answers wait here, unread. */
    struct pollfd p[2] = {{.fd = o_st, .events = POLLIN}, {.fd = o_dg, .events = POLLIN}};
    bool both = false;
    for (int tries = 0; tries < 1000 && !both; tries++) {
        both = poll(p, 2, 10) >= 0 && (p[0].revents & POLLIN) && (p[1].revents & POLLIN);
        if (!both)
            usleep(10000);
    }
    if (!both)
        die("no answer from the outside server");
}

static void corrupt(void)
{
    char buf[64];
    int fds[8], n;
    if (corrupting("message") && recv_fds(pb[1], buf, sizeof buf, fds, &n) >= 0)
        for (int i = 0; i < n; i++)
            close(fds[i]);
    if (corrupting("fd")) {
        int p[2];
        /* Another pipe behind the write end (its read end stays open: no SIGPIPE). */
        if (pipe(p) == 0) {
            dup2(p[1], pw[0]);
            close(p[1]);
        }
    }
    if (corrupting("udp"))
        (void)!recv(u4, buf, sizeof buf, MSG_DONTWAIT);
}

static void check_pipe_and_file(int t, const int *fds)
{
    const char *tn = type_names[t];
    char got[32] = "", want[32];
    snprintf(want, sizeof want, "pipe-%s", tn);
    ssize_t r = read(fds[0], got, sizeof got - 1);
    check(r == (ssize_t)strlen(want) && memcmp(got, want, r) == 0, "%s: pipe in flight holds '%.*s'", tn, (int)(r > 0 ? r : 0), got);
    memset(got, 0, sizeof got);
    check(write(pw[t], "more", 4) == 4 && read(fds[0], got, 4) == 4 && memcmp(got, "more", 4) == 0,
          "%s: the pipe in flight is not the pipe written here", tn);
    memset(got, 0, sizeof got);
    check(read(fds[1], got, 2) == 2 && memcmp(got, "45", 2) == 0, "%s: file in flight reads '%s' at its offset, expected 45", tn, got);
    memset(got, 0, sizeof got);
    check(read(pf[t], got, 2) == 2 && memcmp(got, "67", 2) == 0, "%s: the file here does not share the offset (reads '%s')", tn, got);
}

static void check_sockets(int t, const int *fds)
{
    const char *tn = type_names[t];
    struct stat self, got_self;
    check(fstat(fds[0], &got_self) == 0 && fstat(pb[t], &self) == 0 && self.st_ino == got_self.st_ino,
          "%s: the socket in flight is not the receiving socket itself", tn);
    char got[16] = "";
    check(recv(fds[1], got, sizeof got, MSG_DONTWAIT) == 4 && memcmp(got, "in c", 4) == 0, "%s: the socket living in flight lost its queue", tn);
    check(send(pd[t], "hi c", 4, MSG_NOSIGNAL) == 4 && recv(fds[1], got, sizeof got, MSG_DONTWAIT) == 4 && memcmp(got, "hi c", 4) == 0,
          "%s: the socket living in flight lost its peer", tn);
}

static void check_in_flight(int t)
{
    const char *tn = type_names[t];
    /* A stream read stops after the bytes that carry descriptors: the plain bytes queued
     * before them come in the same read. */
    static const struct {
        const char *text;
        int fds;
    } messages[] = {{"plain before", 0}, {"pipe and file", 2}, {"sockets", 2}, {"plain after", 0}},
      stream[] = {{"plain beforepipe and file", 2}, {"sockets", 2}, {"plain after", 0}};
    bool is_stream = types[t] == SOCK_STREAM;
    int count = is_stream ? 3 : 4;
    for (int i = 0; i < count; i++) {
        const char *text = is_stream ? stream[i].text : messages[i].text;
        int want = is_stream ? stream[i].fds : messages[i].fds;
        char buf[256];
        int fds[8], nfds;
        ssize_t n = recv_fds(pb[t], buf, sizeof buf, fds, &nfds);
        bool ok = check(n >= 0 && strcmp(buf, text) == 0 && nfds == want, "%s: message %d is '%s' with %d fds, expected '%s' with %d", tn, i,
                        n >= 0 ? buf : strerror(errno), nfds, text, want);
        if (ok && strstr(text, "pipe and file"))
            check_pipe_and_file(t, fds);
        if (ok && strcmp(text, "sockets") == 0)
            check_sockets(t, fds);
        for (int k = 0; k < nfds; k++)
            close(fds[k]);
        if (!ok)
            return;
    }
    char buf[16];
    ssize_t n = recv(pb[t], buf, sizeof buf, MSG_DONTWAIT);
    check(n < 0 && errno == EAGAIN, "%s: more than was queued (recv %zd)", tn, n);
    check(send(pa[t], "ping", 4, MSG_NOSIGNAL) == 4 && recv(pb[t], buf, sizeof buf, MSG_DONTWAIT) == 4, "%s: the pair does not talk", tn);
}

static bool same_sa(const void *a, const void *b, socklen_t len)
{
    return memcmp(a, b, len) == 0;
}

static void check_udp(void)
{
    char buf[4096];
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(u4, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &len);
    check(n == 4 && memcmp(buf, "u4-1", 4) == 0 && same_sa(&from, &u4s1_addr, sizeof u4s1_addr), "udp4: first datagram wrong (%zd) or from another sender", n);
    len = sizeof from;
    n = recvfrom(u4, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &len);
    check(n == 4 && memcmp(buf, "u4-2", 4) == 0 && same_sa(&from, &u4s2_addr, sizeof u4s2_addr), "udp4: second datagram wrong (%zd) or from another sender", n);
    len = sizeof from;
    n = recvfrom(u4, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &len);
    check(n == 3000 && check_pattern(buf, 3000, 0x4d00) < 0 && same_sa(&from, &u4s1_addr, sizeof u4s1_addr), "udp4: third datagram wrong (%zd)", n);
    n = recv(u4, buf, sizeof buf, MSG_DONTWAIT);
    check(n < 0 && errno == EAGAIN, "udp4: more than was queued (%zd)", n);
    struct sockaddr_in peer;
    len = sizeof peer;
    check(getpeername(u4, (struct sockaddr *)&peer, &len) == 0 && same_sa(&peer, &u4s1_addr, sizeof peer), "udp4: not connected to its peer");

    struct sockaddr_in6 from6;
    len = sizeof from6;
    n = recvfrom(u6, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from6, &len);
    check(n == 4 && memcmp(buf, "u6-1", 4) == 0 && memcmp(&from6.sin6_addr, &u6s_addr.sin6_addr, 16) == 0 && from6.sin6_port == u6s_addr.sin6_port,
          "udp6: first datagram wrong (%zd) or from another sender", n);
    len = sizeof from6;
    n = recvfrom(u6, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from6, &len);
    struct in6_addr mapped;
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped);
    check(n == 5 && memcmp(buf, "u6-v4", 5) == 0 && memcmp(&from6.sin6_addr, &mapped, 16) == 0 && from6.sin6_port == u6s4_addr.sin_port,
          "udp6: IPv4 datagram wrong (%zd) or from another sender", n);
    n = recv(u6, buf, sizeof buf, MSG_DONTWAIT);
    check(n < 0 && errno == EAGAIN, "udp6: more than was queued (%zd)", n);
}

static void check_outside(void)
{
    if (o_st < 0)
        return;
    char buf[64] = "";
    ssize_t n = recv(o_st, buf, sizeof buf, MSG_DONTWAIT);
    check(n == 12 && memcmp(buf, "from outside", 12) == 0, "outside stream: queued message lost (%zd)", n);
    n = recv(o_st, buf, sizeof buf, MSG_DONTWAIT);
    check(n == 0, "outside stream: no EOF after the queue (%zd, %s)", n, n < 0 ? strerror(errno) : "data");
    errno = 0;
    n = send(o_st, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    check(n < 0 && errno == EPIPE, "outside stream: writes are not refused with EPIPE (%zd, %s)", n, strerror(errno));

    memset(buf, 0, sizeof buf);
    n = recv(o_dg, buf, sizeof buf, MSG_DONTWAIT);
    check(n == 7 && memcmp(buf, "reply-1", 7) == 0, "outside dgram: queued datagram lost (%zd)", n);
    struct sockaddr_un peer = {0}, want;
    socklen_t len = sizeof peer;
    int rc = getpeername(o_dg, (struct sockaddr *)&peer, &len);
    unix_addr(&want, server_dir, "dgram.sock");
    errno = 0;
    n = send(o_dg, "after restore", 13, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (strcmp(outside_mode, "reconnect") == 0) {
        check(rc == 0 && strcmp(peer.sun_path, want.sun_path) == 0, "outside dgram: not connected to %s again", want.sun_path);
        check(n == 13, "outside dgram: cannot send to the outside peer (%s)", strerror(errno));
    } else {
        check(n < 0 && errno == ECONNREFUSED, "outside dgram: writes not refused (%zd, %s)", n, strerror(errno));
    }
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    setup_in_flight();
    setup_udp();
    setup_outside();
    ready();
    wait_usr1();

    corrupt();
    for (int t = 0; t < 3; t++)
        check_in_flight(t);
    check_udp();
    check_outside();
    finish();
}
