/* net-halfclose: a TCP client whose connection is handed off half-closed.
 *
 *   net-halfclose close-wait|fin-wait2 ADDR PORT BYTES
 *
 * close-wait: connects to the peer, which sends BYTES bytes of the numbered stream
 * (net-stream.h) and its FIN; nothing is read, and once the connection is in CLOSE_WAIT it
 * prints READY. After SIGUSR1 it must read exactly BYTES bytes then end of stream, then sends
 * BYTES bytes itself and closes (the peer checks them).
 * fin-wait2: connects, sends BYTES bytes and shuts its sending side down; once the peer has
 * acknowledged the FIN (FIN_WAIT2) it prints READY. After SIGUSR1 it must read exactly the
 * BYTES bytes the peer sends then (told to once "CHECKED" is printed), then end of stream.
 * A reset or any other error, a wrong byte or a wrong count is a failure. */
#include "common.h"
#include "net-addr.h"
#include "net-stream.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static uint8_t buf[65536];

static int state_of(int fd)
{
    struct tcp_info ti;
    socklen_t l = sizeof ti;
    memset(&ti, 0, sizeof ti);
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l);
    return ti.tcpi_state;
}

static void send_stream(int fd, uint64_t total)
{
    uint64_t tx = 0;
    while (tx < total) {
        size_t n = total - tx < sizeof buf ? (size_t)(total - tx) : sizeof buf;
        stream_fill(buf, tx, n);
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            check(false, "write after %llu bytes: %s", (unsigned long long)tx, strerror(errno));
            return;
        }
        tx += (uint64_t)w;
    }
}

/* Reads the numbered stream until end of stream; returns the byte count (or stops at an error). */
static uint64_t read_stream(int fd)
{
    uint64_t rx = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            check(false, "read after %llu bytes: %s", (unsigned long long)rx, strerror(errno));
            return rx;
        }
        if (n == 0)
            return rx;
        size_t bad = stream_check(buf, rx, (size_t)n);
        if (!check(bad == (size_t)n, "received byte %llu is wrong", (unsigned long long)(rx + bad)))
            return rx;
        rx += (uint64_t)n;
    }
}

int main(int argc, char **argv)
{
    bool close_wait = argc == 5 && strcmp(argv[1], "close-wait") == 0;
    if (argc != 5 || (!close_wait && strcmp(argv[1], "fin-wait2"))) {
        say("FAIL setup: usage: net-halfclose close-wait|fin-wait2 ADDR PORT BYTES");
        return 1;
    }
    usr1_setup();
    signal(SIGPIPE, SIG_IGN);
    uint64_t bytes = strtoull(argv[4], NULL, 10);
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_addr(argv[2], atoi(argv[3]), &ss, &len) < 0) {
        say("FAIL setup: bad address %s", argv[2]);
        return 1;
    }
    int c = socket(ss.ss_family, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&ss, len))
        die("connect");
    say("CONNECTED");
    if (!close_wait) {
        send_stream(c, bytes);
        shutdown(c, SHUT_WR);
    }
    int want = close_wait ? TCP_CLOSE_WAIT : TCP_FIN_WAIT2;
    for (int i = 0; state_of(c) != want; i++) {
        if (i > 3000) {
            say("FAIL setup: state %d, not %d", state_of(c), want);
            return 1;
        }
        usleep(10 * 1000);
    }
    say("STATE %s", argv[1]);
    ready();
    wait_usr1();

    check(state_of(c) == want, "state %d after the restore, expected %d", state_of(c), want);
    say("CHECKED"); /* fin-wait2: the peer's data and FIN (TIME_WAIT, then CLOSE) come after this */
    uint64_t rx = read_stream(c);
    check(rx == bytes, "read %llu bytes before end of stream, expected %llu", (unsigned long long)rx, (unsigned long long)bytes);
    if (close_wait) {
        send_stream(c, bytes);
        check(close(c) == 0, "close: %s", strerror(errno));
    }
    finish();
}
