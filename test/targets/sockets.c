/* sockets: unix and UDP sockets with state that must survive a restore.
 *  - unix stream socketpair, 3000 bytes queued one way and 500 the other;
 *  - unix seqpacket socketpair with three queued messages (boundaries matter);
 *  - unix dgram socketpair with two queued datagrams;
 *  - unix stream listener bound to a path in the scratch dir, no pending connections;
 *  - unix dgram socket bound to an abstract name, nothing queued;
 *  - UDP socket on 127.0.0.1 (ephemeral port, SO_REUSEADDR, SO_RCVBUF) connected to a
 *    second local UDP socket;
 *  - unix stream socketpair whose one end wrote a message and then shut down for writing.
 * After SIGUSR1 every queued byte/message comes out in order and with its boundaries, the
 * pairs still talk both ways, names, peers and options are unchanged and the EOF follows
 * the queued data. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *const modes[] = {"stream", "stream-back", "talk", "seqpacket", "boundary", "dgram", "listener",
                                    "abstract", "udp-peer", "udp-rcvbuf", "udp-reuseaddr", "eof", NULL};

#define STREAM_AB 3000 /* queued at stream_b */
#define STREAM_BA 500  /* queued at stream_a */
#define UDP_RCVBUF 65536
static const size_t seq_sizes[] = {100, 1, 700};
static const size_t dgram_sizes[] = {60, 1200};
static const char last_words[] = "last words before SHUT_WR";

static int stream_a, stream_b, seq_a, seq_b, dgram_a, dgram_b, listener, abstract_fd, udp_fd, udp_peer, shut_a, shut_b;
static struct sockaddr_un listener_addr, abstract_addr;
static socklen_t abstract_len;
static struct sockaddr_in udp_local, udp_remote;
static int udp_rcvbuf_seen;

static void send_all(int fd, const void *buf, size_t len, const char *what)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die(what);
        p += n;
        len -= n;
    }
}

static void send_msg(int fd, uint32_t seed, size_t len, const char *what)
{
    uint8_t buf[2048];
    fill_pattern(buf, len, seed);
    if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
        die(what);
}

static void make_pair(int type, int *a, int *b)
{
    int sv[2];
    if (socketpair(AF_UNIX, type, 0, sv))
        die("socketpair");
    *a = sv[0];
    *b = sv[1];
}

static int queued(int fd)
{
    int n = -1;
    ioctl(fd, FIONREAD, &n);
    return n;
}

/* Reads exactly len stream bytes without blocking and compares them with the pattern. */
static void check_stream(int fd, size_t len, uint32_t seed, const char *what)
{
    uint8_t *got = calloc(1, len + 1);
    size_t have = 0;
    while (have < len) {
        ssize_t n = recv(fd, got + have, len - have, MSG_DONTWAIT);
        if (n <= 0)
            break;
        have += n;
    }
    long bad = check_pattern(got, len, seed);
    check(have == len && bad < 0, "%s: %zu of %zu queued bytes read, first wrong byte at %ld", what, have, len, bad);
    free(got);
}

/* Reads one message without blocking: it must be exactly the expected one (length and bytes). */
static bool check_message(int fd, size_t len, uint32_t seed, const char *what, int index)
{
    uint8_t got[4096];
    ssize_t n = recv(fd, got, sizeof got, MSG_DONTWAIT | MSG_TRUNC);
    if (!check(n >= 0, "%s: message %d missing: %s", what, index, n < 0 ? strerror(errno) : ""))
        return false;
    return check((size_t)n == len && check_pattern(got, len, seed) < 0, "%s: message %d is %zd bytes (expected %zu) or differs",
                 what, index, n, len);
}

static void check_nothing_left(int fd, const char *what)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT);
    check(n < 0 && errno == EAGAIN, "%s: more than was queued (recv %zd, %s)", what, n,
          n < 0 ? strerror(errno) : n == 0 ? "EOF" : "data");
}

/* A fresh message in each direction goes through at once. */
static void check_talks(int a, int b, const char *what)
{
    char buf[16] = "";
    errno = 0;
    bool ab = send(a, "ping", 4, MSG_NOSIGNAL | MSG_DONTWAIT) == 4 && recv(b, buf, sizeof buf, MSG_DONTWAIT) == 4 &&
              memcmp(buf, "ping", 4) == 0;
    check(ab, "%s: first end to second does not talk (%s)", what, strerror(errno));
    errno = 0;
    bool ba = send(b, "pong", 4, MSG_NOSIGNAL | MSG_DONTWAIT) == 4 && recv(a, buf, sizeof buf, MSG_DONTWAIT) == 4 &&
              memcmp(buf, "pong", 4) == 0;
    check(ba, "%s: second end to first does not talk (%s)", what, strerror(errno));
}

static void setup_unix(void)
{
    make_pair(SOCK_STREAM, &stream_a, &stream_b);
    uint8_t *buf = malloc(STREAM_AB);
    fill_pattern(buf, STREAM_AB, 0x5a00);
    send_all(stream_a, buf, STREAM_AB, "stream a->b");
    fill_pattern(buf, STREAM_BA, 0x5b00);
    send_all(stream_b, buf, STREAM_BA, "stream b->a");
    free(buf);

    make_pair(SOCK_SEQPACKET, &seq_a, &seq_b);
    for (int i = 0; i < 3; i++)
        send_msg(seq_a, 0x5e00 + i, seq_sizes[i], "seqpacket send");

    make_pair(SOCK_DGRAM, &dgram_a, &dgram_b);
    for (int i = 0; i < 2; i++)
        send_msg(dgram_b, 0xd600 + i, dgram_sizes[i], "dgram send");

    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listener < 0)
        die("socket(listener)");
    listener_addr.sun_family = AF_UNIX;
    snprintf(listener_addr.sun_path, sizeof listener_addr.sun_path, "%s", scratch("listener.sock"));
    if (strlen(scratch("listener.sock")) >= sizeof listener_addr.sun_path) {
        errno = ENAMETOOLONG;
        die("listener path");
    }
    unlink(listener_addr.sun_path);
    if (bind(listener, (struct sockaddr *)&listener_addr, sizeof listener_addr) || listen(listener, 8))
        die("bind/listen path listener");

    abstract_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (abstract_fd < 0)
        die("socket(abstract)");
    abstract_addr.sun_family = AF_UNIX;
    int len = snprintf(abstract_addr.sun_path + 1, sizeof abstract_addr.sun_path - 1, "handoff-sockets-%d", (int)getpid());
    abstract_len = offsetof(struct sockaddr_un, sun_path) + 1 + len;
    if (bind(abstract_fd, (struct sockaddr *)&abstract_addr, abstract_len))
        die("bind abstract");

    make_pair(SOCK_STREAM, &shut_a, &shut_b);
    send_all(shut_a, last_words, sizeof last_words, "write before shutdown");
    if (shutdown(shut_a, SHUT_WR))
        die("shutdown");
}

static void setup_udp(void)
{
    int one = 1, rcvbuf = UDP_RCVBUF;
    udp_peer = socket(AF_INET, SOCK_DGRAM, 0);
    udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (udp_peer < 0 || udp_fd < 0)
        die("socket(udp)");
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof udp_remote;
    if (bind(udp_peer, (struct sockaddr *)&any, sizeof any) || getsockname(udp_peer, (struct sockaddr *)&udp_remote, &len))
        die("bind udp peer");
    if (setsockopt(udp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf))
        die("setsockopt udp");
    len = sizeof udp_local;
    if (bind(udp_fd, (struct sockaddr *)&any, sizeof any) ||
        connect(udp_fd, (struct sockaddr *)&udp_remote, sizeof udp_remote) ||
        getsockname(udp_fd, (struct sockaddr *)&udp_local, &len))
        die("bind/connect udp");
    len = sizeof udp_rcvbuf_seen;
    if (getsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &udp_rcvbuf_seen, &len))
        die("getsockopt SO_RCVBUF");
}

static void corrupt(void)
{
    uint8_t buf[4096];
    if (corrupting("stream"))
        (void)!recv(stream_b, buf, 1, 0);
    if (corrupting("stream-back"))
        (void)!send(stream_b, "x", 1, MSG_NOSIGNAL);
    if (corrupting("talk"))
        shutdown(stream_b, SHUT_RD);
    if (corrupting("seqpacket"))
        (void)!recv(seq_b, buf, sizeof buf, 0);
    if (corrupting("boundary")) {
        /* Same bytes, one message instead of three. */
        size_t total = 0;
        for (int i = 0; i < 3; i++)
            total += recv(seq_b, buf + total, sizeof buf - total, 0);
        (void)!send(seq_a, buf, total, 0);
    }
    if (corrupting("dgram"))
        (void)!recv(dgram_a, buf, sizeof buf, 0);
    if (corrupting("listener")) {
        int fresh = socket(AF_UNIX, SOCK_STREAM, 0);
        dup2(fresh, listener);
        close(fresh);
    }
    if (corrupting("abstract")) {
        int fresh = socket(AF_UNIX, SOCK_DGRAM, 0);
        dup2(fresh, abstract_fd);
        close(fresh);
    }
    if (corrupting("udp-peer")) {
        struct sockaddr_in other = udp_local;
        connect(udp_fd, (struct sockaddr *)&other, sizeof other);
    }
    if (corrupting("udp-rcvbuf")) {
        int size = UDP_RCVBUF * 2;
        setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
    if (corrupting("udp-reuseaddr")) {
        int zero = 0;
        setsockopt(udp_fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero);
    }
    if (corrupting("eof")) {
        /* The same queued words, but no shutdown behind them. */
        int a, b;
        make_pair(SOCK_STREAM, &a, &b);
        send_all(a, last_words, sizeof last_words, "eof corruption");
        dup2(a, shut_a);
        dup2(b, shut_b);
        close(a);
        close(b);
    }
}

static bool is_type(int fd, int type)
{
    int got = -1;
    socklen_t len = sizeof got;
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &len) == 0 && got == type;
}

static void check_pairs(void)
{
    check(is_type(stream_a, SOCK_STREAM) && is_type(seq_a, SOCK_SEQPACKET) && is_type(dgram_a, SOCK_DGRAM),
          "a socketpair changed type");
    check(queued(stream_b) == STREAM_AB, "stream: %d bytes queued, expected %d", queued(stream_b), STREAM_AB);
    check(queued(stream_a) == STREAM_BA, "stream back: %d bytes queued, expected %d", queued(stream_a), STREAM_BA);
    check_stream(stream_b, STREAM_AB, 0x5a00, "stream a->b");
    check_nothing_left(stream_b, "stream a->b");
    check_stream(stream_a, STREAM_BA, 0x5b00, "stream b->a");
    check_nothing_left(stream_a, "stream b->a");
    check_talks(stream_a, stream_b, "stream pair");

    for (int i = 0; i < 3; i++)
        if (!check_message(seq_b, seq_sizes[i], 0x5e00 + i, "seqpacket", i))
            break;
    check_nothing_left(seq_b, "seqpacket");
    check_nothing_left(seq_a, "seqpacket (other end)");
    check_talks(seq_a, seq_b, "seqpacket pair");

    for (int i = 0; i < 2; i++)
        if (!check_message(dgram_a, dgram_sizes[i], 0xd600 + i, "dgram", i))
            break;
    check_nothing_left(dgram_a, "dgram");
    check_nothing_left(dgram_b, "dgram (other end)");
    check_talks(dgram_a, dgram_b, "dgram pair");
}

static void check_listener(void)
{
    struct sockaddr_un got = {0};
    socklen_t len = sizeof got;
    check(getsockname(listener, (struct sockaddr *)&got, &len) == 0 && got.sun_family == AF_UNIX &&
              strcmp(got.sun_path, listener_addr.sun_path) == 0,
          "path listener is named '%s', expected '%s'", got.sun_path, listener_addr.sun_path);
    int accepting = 0;
    len = sizeof accepting;
    check(getsockopt(listener, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting, "path listener is not listening");
    int client = socket(AF_UNIX, SOCK_STREAM, 0);
    int rc = connect(client, (struct sockaddr *)&listener_addr, sizeof listener_addr);
    if (!check(rc == 0, "connect to %s: %s", listener_addr.sun_path, strerror(errno))) {
        close(client);
        return;
    }
    /* A unix connect() completes only once the connection is in the accept queue. */
    int served = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
    char buf[8] = "";
    check(served >= 0, "accept on the path listener: %s", strerror(errno));
    check(served >= 0 && send(client, "hi", 2, MSG_NOSIGNAL) == 2 && recv(served, buf, sizeof buf, MSG_DONTWAIT) == 2 &&
              memcmp(buf, "hi", 2) == 0,
          "accepted connection does not carry data");
    close(client);
    if (served >= 0)
        close(served);
}

static void check_abstract(void)
{
    struct sockaddr_un got = {0};
    socklen_t len = sizeof got;
    check(getsockname(abstract_fd, (struct sockaddr *)&got, &len) == 0 && len == abstract_len &&
              memcmp(&got, &abstract_addr, len) == 0,
          "abstract socket is named '@%.*s'", len > sizeof(sa_family_t) + 1 ? (int)(len - sizeof(sa_family_t) - 1) : 0,
          got.sun_path + 1);
    int second = socket(AF_UNIX, SOCK_DGRAM, 0);
    errno = 0;
    int rc = bind(second, (struct sockaddr *)&abstract_addr, abstract_len);
    check(rc < 0 && errno == EADDRINUSE, "second bind to the abstract name: %s", rc == 0 ? "succeeded" : strerror(errno));
    close(second);
    check_nothing_left(abstract_fd, "abstract dgram socket");
    int sender = socket(AF_UNIX, SOCK_DGRAM, 0);
    char buf[16] = "";
    errno = 0;
    bool arrived = sendto(sender, "abs", 3, MSG_DONTWAIT, (struct sockaddr *)&abstract_addr, abstract_len) == 3 &&
                   recv(abstract_fd, buf, sizeof buf, MSG_DONTWAIT) == 3 && memcmp(buf, "abs", 3) == 0;
    check(arrived, "datagram to the abstract name does not arrive: %s", strerror(errno));
    close(sender);
}

/* recv for loopback UDP; the poll only guards against hanging when a datagram is lost. */
static ssize_t recv_udp(int fd, char *buf, size_t len)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) {
        errno = ETIMEDOUT;
        return -1;
    }
    return recv(fd, buf, len, MSG_DONTWAIT);
}

static bool same_in(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_family == b->sin_family && a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

static void check_udp(void)
{
    struct sockaddr_in local = {0}, remote = {0}, peer_local = {0};
    socklen_t len = sizeof local;
    getsockname(udp_fd, (struct sockaddr *)&local, &len);
    len = sizeof remote;
    errno = 0;
    int rc = getpeername(udp_fd, (struct sockaddr *)&remote, &len);
    len = sizeof peer_local;
    getsockname(udp_peer, (struct sockaddr *)&peer_local, &len);
    check(same_in(&local, &udp_local), "UDP socket bound to %s:%d, expected port %d", inet_ntoa(local.sin_addr),
          ntohs(local.sin_port), ntohs(udp_local.sin_port));
    bool peered = check(rc == 0 && same_in(&remote, &udp_remote), "UDP socket connected to port %d (%s), expected %d",
          ntohs(remote.sin_port), rc ? strerror(errno) : "", ntohs(udp_remote.sin_port));
    check(same_in(&peer_local, &udp_remote), "second UDP socket bound to port %d, expected %d", ntohs(peer_local.sin_port),
          ntohs(udp_remote.sin_port));
    int rcvbuf = -1, reuse = -1;
    len = sizeof rcvbuf;
    getsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len);
    len = sizeof reuse;
    getsockopt(udp_fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len);
    check(rcvbuf == udp_rcvbuf_seen, "UDP SO_RCVBUF %d, expected %d", rcvbuf, udp_rcvbuf_seen);
    check(reuse == 1, "UDP SO_REUSEADDR is %d", reuse);

    /* A datagram to a wrong peer would only time out: the verdict is FAIL already. */
    if (!peered)
        return;
    char buf[16] = "";
    errno = 0;
    bool out = send(udp_fd, "udp1", 4, MSG_DONTWAIT) == 4 && recv_udp(udp_peer, buf, sizeof buf) == 4 && memcmp(buf, "udp1", 4) == 0;
    check(out, "datagram through the connected UDP socket does not arrive (%s)", strerror(errno));
    errno = 0;
    bool back = sendto(udp_peer, "udp2", 4, MSG_DONTWAIT, (struct sockaddr *)&udp_local, sizeof udp_local) == 4 &&
                recv_udp(udp_fd, buf, sizeof buf) == 4 && memcmp(buf, "udp2", 4) == 0;
    check(back, "datagram back to the connected UDP socket does not arrive (%s)", strerror(errno));
}

static void check_shutdown(void)
{
    char buf[64] = "";
    ssize_t n = recv(shut_b, buf, sizeof buf, MSG_DONTWAIT);
    check(n == sizeof last_words && memcmp(buf, last_words, sizeof last_words) == 0,
          "shut-down pair: queued words differ (%zd bytes)", n);
    errno = 0;
    n = recv(shut_b, buf, sizeof buf, MSG_DONTWAIT);
    check(n == 0, "shut-down pair: no EOF after the queued data (recv %zd, %s)", n, n < 0 ? strerror(errno) : "data");
    errno = 0;
    n = send(shut_a, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    check(n < 0 && errno == EPIPE, "shut-down end can still write (send %zd, %s)", n, n < 0 ? strerror(errno) : "sent");
    errno = 0;
    bool back = send(shut_b, "back", 4, MSG_NOSIGNAL | MSG_DONTWAIT) == 4 && recv(shut_a, buf, sizeof buf, MSG_DONTWAIT) == 4 &&
                memcmp(buf, "back", 4) == 0;
    check(back, "shut-down pair: the other direction is broken (%s)", strerror(errno));
}

int main(void)
{
    corrupt_init(modes);
    usr1_setup();
    setup_unix();
    setup_udp();
    ready();
    wait_usr1();

    corrupt();
    check_pairs();
    check_listener();
    check_abstract();
    check_udp();
    check_shutdown();
    finish();
}
