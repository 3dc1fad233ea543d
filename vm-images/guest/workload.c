/*
 * handoff-workload PORT FILE: a small stateful service for the kexec handoff tests and demo.
 * Parent: 16 MiB of patterned memory, a POSIX timer ticking every 10 ms (SIGALRM), FILE
 * open for writing (one line appended per request), a pipe pair to a child process, and a
 * TCP server on PORT. For each line "N" from a client it bumps its counter, asks the child
 * (which keeps its own counter) through the pipes, appends "N parent child" to FILE and
 * answers "N parent child ticks". "verify" checks the memory pattern and FILE's contents
 * (re-read through the same descriptor) and answers "verify ok ..." or "verify bad REASON".
 * "bye" closes the connection; the server then waits for the next one.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MEM_BYTES (16u << 20)
static volatile sig_atomic_t ticks;
static void on_tick(int sig) { (void)sig; ticks++; }

static uint64_t pattern(size_t i) { return (uint64_t)i * 0x9E3779B97F4A7C15ull ^ 0x5eed; }

static int read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = write(fd, (const char *)buf + put, n - put);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    put += (size_t)r;
  }
  return 0;
}

static void child_loop(int in, int out) {
  uint32_t counter = 0, msg[2];
  for (;;) {
    if (read_full(in, msg, 4) < 0) _exit(0);
    msg[1] = ++counter;
    if (write_full(out, msg, 8) < 0) _exit(1);
  }
}

/* FILE must hold exactly lines "1 1 1" .. "n n n". */
static const char *check_file(int fd, uint32_t n) {
  static char buf[1 << 20];
  ssize_t len = pread(fd, buf, sizeof buf - 1, 0);
  if (len < 0) return "pread failed";
  buf[len] = 0;
  char *p = buf;
  for (uint32_t i = 1; i <= n; i++) {
    unsigned a, b, c;
    int used;
    if (sscanf(p, "%u %u %u\n%n", &a, &b, &c, &used) != 3 || a != i || b != i || c != i) return "file lines differ";
    p += used;
  }
  return *p ? "file has extra bytes" : NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT FILE\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  /* The console stays ours only for the ready line: a handed-off process should hold
     nothing that belongs to this boot's terminal. */
  for (int fd = 3; fd < 1024; fd++) close(fd); /* nothing inherited from whoever started us */
  int console = dup(1);
  int devnull = open("/dev/null", O_RDWR);
  if (console < 0 || devnull < 0) return 1;
  dup2(devnull, 0);
  dup2(devnull, 1);
  dup2(devnull, 2);
  close(devnull);
  int file = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (file < 0) return 1;
  uint64_t *mem = mmap(NULL, MEM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  for (size_t i = 0; i < MEM_BYTES / 8; i++) mem[i] = pattern(i);

  int to_child[2], from_child[2];
  if (pipe(to_child) || pipe(from_child)) return 1;
  pid_t child = fork();
  if (child == 0) {
    close(console);
    close(to_child[1]);
    close(from_child[0]);
    child_loop(to_child[0], from_child[1]);
  }
  close(to_child[0]);
  close(from_child[1]);

  struct sigaction sa = { .sa_handler = on_tick, .sa_flags = SA_RESTART };
  sigaction(SIGALRM, &sa, NULL);
  timer_t timer;
  struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGALRM };
  struct itimerspec its = { .it_interval = { 0, 10000000 }, .it_value = { 0, 10000000 } };
  if (timer_create(CLOCK_MONOTONIC, &sev, &timer) || timer_settime(timer, 0, &its, NULL)) return 1;

  int srv = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY) };
  if (bind(srv, (struct sockaddr *)&addr, sizeof addr) || listen(srv, 4)) return 1;
  dprintf(console, "@@handoff workload-ready pid=%d child=%d port=%d\n", getpid(), child, port);
  close(console);

  uint32_t counter = 0;
  for (;;) {
    int c = accept(srv, NULL, NULL);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char line[256];
    size_t have = 0;
    for (;;) {
      ssize_t r = read(c, line + have, sizeof line - 1 - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      have += (size_t)r;
      line[have] = 0;
      char *nl;
      int closing = 0;
      while ((nl = strchr(line, '\n'))) {
        *nl = 0;
        char reply[256];
        if (!strcmp(line, "verify")) {
          const char *bad = NULL;
          for (size_t i = 0; i < MEM_BYTES / 8 && !bad; i++) if (mem[i] != pattern(i)) bad = "memory pattern differs";
          if (!bad) bad = check_file(file, counter);
          snprintf(reply, sizeof reply, bad ? "verify bad %s\n" : "verify ok%s requests=%u ticks=%d\n", bad ? bad : "", counter, (int)ticks);
        } else if (!strcmp(line, "bye")) {
          closing = 1;
          snprintf(reply, sizeof reply, "bye\n");
        } else {
          uint32_t msg[2] = { (uint32_t)strtoul(line, NULL, 10), 0 };
          counter++;
          if (write_full(to_child[1], msg, 4) || read_full(from_child[0], msg, 8)) return 1;
          char rec[64];
          int n = snprintf(rec, sizeof rec, "%u %u %u\n", msg[0], counter, msg[1]);
          if (write_full(file, rec, (size_t)n)) return 1;
          snprintf(reply, sizeof reply, "%u %u %u %d\n", msg[0], counter, msg[1], (int)ticks);
        }
        write_full(c, reply, strlen(reply));
        size_t used = (size_t)(nl - line) + 1;
        memmove(line, nl + 1, have - used + 1);
        have -= used;
      }
      if (closing) break;
    }
    close(c);
  }
}
