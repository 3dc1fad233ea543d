/* net-accept: a server that accepts slowly, handed off with clients waiting in its accept queue.
 *
 *   net-accept ADDR PORT CLIENTS [PACE_MS]
 *
 * Listens on ADDR:PORT (prints "LISTENING <port>" and READY), then accepts one connection per
 * PACE_MS (default 100), printing "ACCEPTED <n>" each time, and holds them without reading. After SIGUSR1
 * (sent after the restore) it keeps accepting, one per 100 ms, until CLIENTS connections have
 * come, reads each one's "hello <i>\n" and answers "served <i>\n". Every client must have been
 * served once; a reset, an error or a wrong request is a failure. Gives up after 60 s. */
#include "common.h"
#include "net-addr.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#define MAX_CLIENTS 64

/* Reads one line (up to '\n') from a blocking socket; returns its length or -errno / 0 at EOF. */
static int read_line(int fd, char *buf, int cap)
{
    int n = 0;
    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = 0;
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        say("FAIL setup: usage: net-accept ADDR PORT CLIENTS [PACE_MS]");
        return 1;
    }
    usr1_setup_unblocked();
    signal(SIGPIPE, SIG_IGN);
    int clients = atoi(argv[3]);
    int pace_ms = argc == 5 ? atoi(argv[4]) : 100;
    if (clients < 1 || clients > MAX_CLIENTS) {
        say("FAIL setup: CLIENTS must be 1..%d", MAX_CLIENTS);
        return 1;
    }
    struct sockaddr_storage want;
    socklen_t want_len;
    int family = parse_addr(argv[1], atoi(argv[2]), &want, &want_len);
    if (family < 0) {
        say("FAIL setup: bad address %s", argv[1]);
        return 1;
    }
    int l = socket(family, SOCK_STREAM, 0), one = 1;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) || bind(l, (struct sockaddr *)&want, want_len) || listen(l, MAX_CLIENTS))
        die("listen");
    say("LISTENING %s", argv[2]);
    ready();

    int conns[MAX_CLIENTS];
    int accepted = 0;
    int64_t deadline = 0;
    while (accepted < clients || !usr1_seen) {
        if (usr1_seen && !deadline)
            deadline = now_ns(CLOCK_MONOTONIC) + 60 * 1000000000LL;
        if (deadline && now_ns(CLOCK_MONOTONIC) > deadline)
            break;
        /* The slow part: one accept per pace at most (SIGUSR1 cuts a long pause short). */
        usleep((usr1_seen ? 100 : pace_ms) * 1000);
        if (accepted == clients)
            continue;
        struct pollfd p = {l, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0)
            continue;
        int c = accept(l, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            check(false, "accept after %d connections: %s", accepted, strerror(errno));
            break;
        }
        conns[accepted++] = c;
        say("ACCEPTED %d", accepted);
    }
    check(accepted == clients, "accepted %d of %d clients", accepted, clients);

    bool seen[MAX_CLIENTS] = {false};
    for (int k = 0; k < accepted; k++) {
        char line[64];
        int n = read_line(conns[k], line, sizeof line);
        int i = -1;
        if (!check(n > 0, "connection %d: %s", k + 1, n == 0 ? "end of stream before the request" : strerror(-n)))
            continue;
        if (!check(sscanf(line, "hello %d", &i) == 1 && i >= 0 && i < clients && !seen[i], "connection %d: bad request '%.20s'", k + 1, line))
            continue;
        seen[i] = true;
        char reply[64];
        int len = snprintf(reply, sizeof reply, "served %d\n", i);
        check(write(conns[k], reply, len) == len, "connection %d: reply: %s", k + 1, strerror(errno));
        close(conns[k]);
    }
    say("SERVED %d", accepted);
    finish();
}
