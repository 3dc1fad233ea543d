/* net-stream: a TCP endpoint whose one connection is handed off with data in both queues.
 *
 *   net-stream listen|connect ADDR PORT TOTAL
 *
 * listen: listens on ADDR:PORT (prints "LISTENING <port>") and accepts one connection (from
 * net-peer); the listener stays open all along. connect: connects to net-peer at ADDR:PORT.
 * Then it writes the numbered stream (net-stream.h) without reading anything: the peer does
 * not read either at first, so our send queue fills (write gets EAGAIN) while the peer's
 * bytes pile up in our receive queue. Once both queues hold at least MIN_QUEUED bytes it
 * prints "QUEUES in=<n> out=<n>" and READY, and keeps writing whenever there is room.
 *
 * After SIGUSR1 (sent after the restore) it reads too: every byte received must continue the
 * peer's numbered stream; after TOTAL bytes sent it shuts down its sending side, and the peer
 * must have sent exactly TOTAL bytes before its FIN. A reset or any other socket error is a
 * failure, as are a changed peer or local address. */
#include "common.h"
#include "net-addr.h"
#include "net-stream.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define MIN_QUEUED (32 * 1024)
#define CHUNK (64 * 1024)

static uint8_t buf[CHUNK];

static int queued(int fd, unsigned long request)
{
    int n = -1;
    ioctl(fd, request, &n);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "listen") && strcmp(argv[1], "connect"))) {
        say("FAIL setup: usage: net-stream listen|connect ADDR PORT TOTAL");
        return 1;
    }
    usr1_setup_unblocked();
    signal(SIGPIPE, SIG_IGN);
    bool listening = strcmp(argv[1], "listen") == 0;
    uint64_t total = strtoull(argv[4], NULL, 10);
    struct sockaddr_storage want;
    socklen_t want_len;
    int family = parse_addr(argv[2], atoi(argv[3]), &want, &want_len);
    if (family < 0) {
        say("FAIL setup: bad address %s", argv[2]);
        return 1;
    }
    int l = -1, c;
    if (listening) {
        l = socket(family, SOCK_STREAM, 0);
        int one = 1;
        if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(l, (struct sockaddr *)&want, want_len) || listen(l, 4))
            die("listen");
        say("LISTENING %s", argv[3]);
        do
            c = accept(l, NULL, NULL);
        while (c < 0 && errno == EINTR);
        if (c < 0)
            die("accept");
    } else {
        c = socket(family, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&want, want_len))
            die("connect");
        say("CONNECTED");
    }
    struct sockaddr_storage peer_before, local_before;
    socklen_t peer_len = sizeof peer_before, local_len = sizeof local_before;
    getpeername(c, (struct sockaddr *)&peer_before, &peer_len);
    getsockname(c, (struct sockaddr *)&local_before, &local_len);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);

    uint64_t tx = 0, rx = 0;
    bool blocked = false, announced = false, shut = false, eof = false;
    while (!(eof && shut)) {
        bool reading = usr1_seen && !eof;
        struct pollfd p = {c, (short)((reading ? POLLIN : 0) | (tx < total ? POLLOUT : 0)), 0};
        /* Before SIGUSR1 the short timeout re-checks the queues; afterwards poll is woken by data. */
        int r = poll(&p, 1, usr1_seen ? -1 : 20);
        if (r < 0 && errno != EINTR)
            die("poll");
        if (r > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL)) && !(p.revents & POLLIN)) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el);
            check(false, "socket error after %llu bytes sent, %llu received: revents 0x%x, %s", (unsigned long long)tx, (unsigned long long)rx, p.revents, strerror(err));
            break;
        }
        if (r > 0 && (p.revents & POLLOUT) && tx < total) {
            size_t n = total - tx < CHUNK ? (size_t)(total - tx) : CHUNK;
            stream_fill(buf, tx, n);
            ssize_t w = write(c, buf, n);
            if (w > 0)
                tx += (uint64_t)w;
            else if (w < 0 && errno == EAGAIN)
                blocked = true;
            else if (w < 0 && errno != EINTR) {
                check(false, "write after %llu bytes: %s", (unsigned long long)tx, strerror(errno));
                break;
            }
            if (tx == total && !shut) {
                shutdown(c, SHUT_WR);
                shut = true;
            }
        } else if (r == 0 && tx < total) {
            blocked = true; /* no room for 20 ms: the peer is not reading */
        }
        if (r > 0 && (p.revents & POLLIN) && reading) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n == 0) {
                eof = true;
            } else if (n > 0) {
                size_t bad = stream_check(buf, rx, (size_t)n);
                if (!check(bad == (size_t)n, "received byte %llu is 0x%02x, expected 0x%02x", (unsigned long long)(rx + bad), buf[bad], stream_byte(rx + bad)))
                    break;
                rx += (uint64_t)n;
            } else if (errno != EAGAIN && errno != EINTR) {
                check(false, "read after %llu bytes: %s", (unsigned long long)rx, strerror(errno));
                break;
            }
        }
        if (!announced && blocked) {
            int in = queued(c, SIOCINQ), out = queued(c, SIOCOUTQ);
            if (in >= MIN_QUEUED && out >= MIN_QUEUED) {
                say("QUEUES in=%d out=%d sent=%llu", in, out, (unsigned long long)tx);
                ready();
                announced = true;
            }
        }
    }
    if (eof)
        check(rx == total, "peer sent %llu bytes before its FIN, expected %llu", (unsigned long long)rx, (unsigned long long)total);
    check(tx == total, "sent %llu of %llu bytes", (unsigned long long)tx, (unsigned long long)total);
    struct sockaddr_storage peer_after, local_after;
    socklen_t peer_len2 = sizeof peer_after, local_len2 = sizeof local_after;
    if (!getpeername(c, (struct sockaddr *)&peer_after, &peer_len2))
        check(peer_len2 == peer_len && memcmp(&peer_after, &peer_before, peer_len) == 0, "peer address changed");
    getsockname(c, (struct sockaddr *)&local_after, &local_len2);
    check(local_len2 == local_len && memcmp(&local_after, &local_before, local_len) == 0, "local address changed");
    if (listening) {
        struct sockaddr_storage listen_after;
        socklen_t listen_len = sizeof listen_after;
        check(getsockname(l, (struct sockaddr *)&listen_after, &listen_len) == 0 && listen_len == want_len && memcmp(&listen_after, &want, want_len) == 0, "listener address changed");
    }
    say("DONE sent=%llu received=%llu", (unsigned long long)tx, (unsigned long long)rx);
    finish();
}
