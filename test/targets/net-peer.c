/* net-peer: the far end of net-stream's connection, run in another network namespace. Not a
 * handed-off target itself: it checks what the handed-off server does to the connection.
 *
 *   net-peer connect|listen ADDR PORT TOTAL
 *
 * Connects to ADDR:PORT, or listens there ("LISTENING") and accepts one connection; prints
 * "CONNECTED", then writes the numbered stream (net-stream.h) without
 * reading, so both queues of the server fill up; "FULL <sent>" once a write gets EAGAIN. It
 * keeps writing whenever there is room, also while the server is frozen, dumped and restored
 * (retransmissions and window probes go on). On the line "GO" on stdin it starts reading:
 * every byte must continue the server's stream. After TOTAL bytes sent it shuts down its
 * sending side; the server must have sent exactly TOTAL bytes before its FIN. Prints
 * "PEER PASS ..." or "PEER FAIL <reason>" (a reset is a failure) and exits 0 or 1. */
#include "common.h"
#include "net-addr.h"
#include "net-stream.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define CHUNK (64 * 1024)

static uint8_t buf[CHUNK];

__attribute__((noreturn, format(printf, 1, 2))) static void peer_fail(const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    say("PEER FAIL %s", reason);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "listen") && strcmp(argv[1], "connect")))
        peer_fail("usage: net-peer connect|listen ADDR PORT TOTAL");
    signal(SIGPIPE, SIG_IGN);
    uint64_t total = strtoull(argv[4], NULL, 10);
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_addr(argv[2], atoi(argv[3]), &ss, &len) < 0) {
        peer_fail("bad address %s", argv[2]);
    }
    int s;
    if (strcmp(argv[1], "connect") == 0) {
        s = socket(ss.ss_family, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&ss, len))
            peer_fail("connect: %s", strerror(errno));
    } else {
        int l = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
        if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(l, (struct sockaddr *)&ss, len) || listen(l, 1))
            peer_fail("listen: %s", strerror(errno));
        say("LISTENING");
        s = accept(l, NULL, NULL);
        if (s < 0)
            peer_fail("accept: %s", strerror(errno));
        close(l);
    }
    say("CONNECTED");
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);

    uint64_t tx = 0, rx = 0;
    bool reading = false, full = false, shut = false, eof = false, stdin_open = true;
    char line[64];
    size_t line_len = 0;
    while (!(eof && shut)) {
        struct pollfd p[2] = {
            {s, (short)((reading && !eof ? POLLIN : 0) | (tx < total ? POLLOUT : 0)), 0},
            {0, (short)(stdin_open ? POLLIN : 0), 0},
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            peer_fail("poll: %s", strerror(errno));
        }
        if ((p[0].revents & (POLLERR | POLLHUP | POLLNVAL)) && !(p[0].revents & POLLIN)) {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
            peer_fail("socket error after %llu bytes sent, %llu received: revents 0x%x, %s", (unsigned long long)tx, (unsigned long long)rx, p[0].revents, strerror(err));
        }
        if (p[1].revents) {
            ssize_t n = read(0, line + line_len, sizeof line - 1 - line_len);
            if (n <= 0) {
                stdin_open = false;
            } else {
                line_len += (size_t)n;
                line[line_len] = 0;
                if (strstr(line, "GO\n"))
                    reading = true;
                if (line_len >= sizeof line - 1)
                    line_len = 0;
            }
        }
        /* Write until the kernel takes no more (EAGAIN): poll reports POLLOUT only once a
         * third of the buffer is free, so a full queue is never seen by waiting alone. */
        while ((p[0].revents & POLLOUT) && tx < total) {
            size_t n = total - tx < CHUNK ? (size_t)(total - tx) : CHUNK;
            stream_fill(buf, tx, n);
            ssize_t w = write(s, buf, n);
            if (w > 0) {
                tx += (uint64_t)w;
            } else if (w < 0 && errno == EAGAIN) {
                if (!full)
                    say("FULL %llu", (unsigned long long)tx);
                full = true;
                break;
            } else if (w < 0 && errno != EINTR) {
                peer_fail("write after %llu bytes: %s", (unsigned long long)tx, strerror(errno));
            }
            if (tx == total && !shut) {
                shutdown(s, SHUT_WR);
                shut = true;
            }
            if (reading)
                break; /* let reads in between */
        }
        if (p[0].revents & POLLIN) {
            ssize_t n = read(s, buf, sizeof buf);
            if (n == 0) {
                eof = true;
            } else if (n > 0) {
                size_t bad = stream_check(buf, rx, (size_t)n);
                if (bad != (size_t)n)
                    peer_fail("received byte %llu is 0x%02x, expected 0x%02x", (unsigned long long)(rx + bad), buf[bad], stream_byte(rx + bad));
                rx += (uint64_t)n;
            } else if (errno != EAGAIN && errno != EINTR) {
                peer_fail("read after %llu bytes: %s", (unsigned long long)rx, strerror(errno));
            }
        }
    }
    if (rx != total)
        peer_fail("server sent %llu bytes before its FIN, expected %llu", (unsigned long long)rx, (unsigned long long)total);
    say("PEER PASS sent=%llu received=%llu", (unsigned long long)tx, (unsigned long long)rx);
    return 0;
}
