/* pacer: not a target but a helper for real-program tests. `pacer FILE CHUNK DELAY_US` copies
 * FILE to stdout CHUNK bytes at a time with a pause between chunks, so a pipeline downstream
 * of it (gzip, sha256sum) is still mid-stream when a test dumps it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: pacer FILE CHUNK DELAY_US\n");
        return 2;
    }
    int in = open(argv[1], O_RDONLY);
    size_t chunk = strtoul(argv[2], NULL, 10);
    long delay_us = strtol(argv[3], NULL, 10);
    char *buf = malloc(chunk ? chunk : 1);
    if (in < 0 || !buf || !chunk) {
        perror("pacer");
        return 2;
    }
    for (;;) {
        ssize_t n = read(in, buf, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("pacer: read");
            return 1;
        }
        if (n == 0)
            return 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                perror("pacer: write");
                return 1;
            }
            off += w;
        }
        struct timespec ts = {delay_us / 1000000, delay_us % 1000000 * 1000};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
}
