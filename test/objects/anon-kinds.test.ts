import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { VERDICT, dumpTarget, restoreImage, startTarget } from '../lib/target.js';

// A process holding one of each anon-inode kind (plus a memfd and an epoll over an eventfd and
// a pipe) is dumped, killed and restored by the real engine, then checks its fds itself.
const PROGRAM = String.raw`#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL: " __VA_ARGS__); printf(" (errno %d)\n", errno); fflush(stdout); exit(1); } } while (0)

int main(int argc, char **argv) {
  const char *dir = argv[1];
  signal(SIGUSR1, on_usr1);
  int e = eventfd(7, 0); dup2(e, 30); close(e);
  int s = eventfd(2, EFD_SEMAPHORE); dup2(s, 31); close(s);
  int t = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = { { 0, 50000000 }, { 0, 50000000 } };
  timerfd_settime(t, 0, &its, NULL); dup2(t, 32); close(t);
  t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec hour = { { 0, 0 }, { 3600, 0 } };
  timerfd_settime(t, 0, &hour, NULL); dup2(t, 33); close(t);
  sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR2);
  sigprocmask(SIG_BLOCK, &m, NULL);
  int sf = signalfd(-1, &m, 0); dup2(sf, 34); close(sf);
  int in = inotify_init1(IN_NONBLOCK);
  int w1 = inotify_add_watch(in, "/tmp", IN_CREATE);
  inotify_rm_watch(in, w1);
  char ev[4096]; while (read(in, ev, sizeof ev) > 0) {}
  int w2 = inotify_add_watch(in, dir, IN_CREATE);
  CHECK(w2 == 2, "wd %d", w2);
  dup2(in, 35); close(in);
  int p[2]; pipe(p); dup2(p[0], 37); dup2(p[1], 38); close(p[0]); close(p[1]);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ee = { .events = EPOLLIN, .data = { .u64 = 0x1122334455667788ULL } };
  epoll_ctl(ep, EPOLL_CTL_ADD, 30, &ee);
  struct epoll_event pe = { .events = EPOLLIN, .data = { .u64 = 37 } };
  epoll_ctl(ep, EPOLL_CTL_ADD, 37, &pe);
  dup3(ep, 36, O_CLOEXEC); close(ep);
  int mf = memfd_create("anon-test", MFD_ALLOW_SEALING);
  write(mf, "hello memfd", 11);
  fcntl(mf, F_ADD_SEALS, F_SEAL_SHRINK);
  dup2(mf, 39); close(mf);
  printf("READY %d\n", getpid()); fflush(stdout);
  while (!go) pause();

  uint64_t v;
  CHECK(read(30, &v, 8) == 8 && v == 7, "eventfd count %llu", (unsigned long long)v);
  CHECK(read(31, &v, 8) == 8 && v == 1, "semaphore read %llu", (unsigned long long)v);
  CHECK(read(31, &v, 8) == 8 && v == 1, "semaphore second read");
  CHECK(read(32, &v, 8) == 8 && v >= 1, "periodic timer read");
  struct itimerspec cur; timerfd_gettime(32, &cur);
  CHECK(cur.it_interval.tv_nsec == 50000000 && cur.it_interval.tv_sec == 0, "periodic interval");
  timerfd_gettime(33, &cur);
  CHECK(cur.it_value.tv_sec > 0 && cur.it_value.tv_sec < 3600, "hour timer remaining %ld", (long)cur.it_value.tv_sec);
  raise(SIGUSR2);
  struct signalfd_siginfo si;
  CHECK(read(34, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR2, "signalfd");
  char path[4096]; snprintf(path, sizeof path, "%s/created", dir);
  close(open(path, O_CREAT | O_WRONLY, 0600));
  ssize_t n = read(35, ev, sizeof ev);
  struct inotify_event *ie = (struct inotify_event *)ev;
  CHECK(n > 0 && ie->wd == 2 && (ie->mask & IN_CREATE) && strcmp(ie->name, "created") == 0, "inotify event");
  eventfd_write(30, 1);
  struct epoll_event out[4];
  int k = epoll_wait(36, out, 4, 0);
  CHECK(k == 1 && out[0].data.u64 == 0x1122334455667788ULL, "epoll ready %d", k);
  write(38, "x", 1);
  k = epoll_wait(36, out, 4, 0);
  CHECK(k == 2, "epoll two ready %d", k);
  CHECK((fcntl(36, F_GETFD) & FD_CLOEXEC) && !(fcntl(30, F_GETFD) & FD_CLOEXEC), "cloexec per fd");
  char buf[64] = {0}; char link[256] = {0};
  CHECK(pread(39, buf, sizeof buf, 0) == 11 && memcmp(buf, "hello memfd", 11) == 0, "memfd contents");
  CHECK(fcntl(39, F_GET_SEALS) == F_SEAL_SHRINK, "memfd seals %d", fcntl(39, F_GET_SEALS));
  readlink("/proc/self/fd/39", link, sizeof link - 1);
  CHECK(strcmp(link, "/memfd:anon-test (deleted)") == 0, "memfd name %s", link);
  printf("PASS\n"); fflush(stdout);
  return 0;
}
`;

t.test('every anon-inode kind survives a real dump, kill and restore of its process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'handoff-anon-kinds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'anon.c'), PROGRAM);
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', join(dir, 'anon'), join(dir, 'anon.c')]);
  mkdirSync(join(dir, 'watched'));
  let running = await startTarget('anon-kinds', { command: [join(dir, 'anon'), join(dir, 'watched')], workDir: dir });
  try {
    await dumpTarget(running.pid, join(dir, 'image.himg'));
    await running.kill();
    running = (await restoreImage('anon-kinds', running.pid, join(dir, 'image.himg'), dir)).running;
    running.signal('SIGUSR1');
    const m = await running.waitFor(VERDICT, 60_000);
    t.equal(m[1], 'PASS', running.log());
    t.equal(await running.exitCode(), 0);
    await running.reap();
  } catch (err) {
    await running.kill().catch(() => {});
    throw err;
  }
});
