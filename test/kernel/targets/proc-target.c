/* A process with known /proc state for test/kernel/proc.test.ts. argv[1]: a scratch
 * directory. Prints one line "READY k=v ..." then waits until stdin closes. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static pid_t thread_tid, thread_child;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void idle_child(void) {
  for (;;) pause();
}

static void *thread_main(void *arg) {
  (void)arg;
  pid_t c = fork();
  if (c == 0) idle_child();
  pthread_mutex_lock(&lock);
  thread_tid = (pid_t)syscall(SYS_gettid);
  thread_child = c;
  pthread_cond_signal(&cond);
  pthread_mutex_unlock(&lock);
  for (;;) pause();
  return NULL;
}

static void on_hup(int sig) { (void)sig; }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *dir = argv[1];
  char path[4096];
  prctl(PR_SET_NAME, "we) ir (d");
  umask(027);
  personality(0x0040000 /* ADDR_NO_RANDOMIZE */);

  struct rlimit nofile = {1000, 2000};
  setrlimit(RLIMIT_NOFILE, &nofile);
  struct rlimit core = {0, RLIM_INFINITY};
  setrlimit(RLIMIT_CORE, &core);

  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGUSR2);
  sigaddset(&blocked, SIGUSR1);
  sigprocmask(SIG_BLOCK, &blocked, NULL); /* threads created later inherit it */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, on_hup);
  kill(getpid(), SIGUSR2); /* shared pending */
  raise(SIGUSR1);          /* this thread's pending */

  pid_t child1 = fork();
  if (child1 == 0) idle_child();
  pthread_t th;
  pthread_create(&th, NULL, thread_main, NULL);
  pthread_mutex_lock(&lock);
  while (!thread_tid) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);

  /* descriptors */
  int efd = eventfd(7, EFD_CLOEXEC);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 0x1234abcdULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
  int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = {.it_interval = {1, 500000000}, .it_value = {100, 0}};
  timerfd_settime(tfd, 0, &its, NULL);
  sigset_t sfdmask;
  sigemptyset(&sfdmask);
  sigaddset(&sfdmask, SIGUSR1);
  int sfd = signalfd(-1, &sfdmask, 0);
  int ino = inotify_init1(0);
  int wd = inotify_add_watch(ino, dir, IN_CREATE | IN_DELETE);
  snprintf(path, sizeof path, "%s/appended file", dir);
  int afd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0600);
  if (write(afd, "hello", 5) != 5) return 3;

  /* mappings: a private file mapping whose name has spaces, a deleted file */
  snprintf(path, sizeof path, "%s/mapped file (1)", dir);
  int mfd = open(path, O_CREAT | O_RDWR, 0600);
  if (ftruncate(mfd, 8192) < 0) return 4;
  char *mapped = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 4096 * 0);
  snprintf(path, sizeof path, "%s/gone", dir);
  int gfd = open(path, O_CREAT | O_RDWR, 0600);
  if (ftruncate(gfd, 4096) < 0) return 5;
  char *gone = mmap(NULL, 4096, PROT_READ, MAP_SHARED, gfd, 0);
  unlink(path);
  close(gfd);

  /* POSIX timers: one signalling the process, one a thread */
  timer_t t1, t2;
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGALRM;
  sev.sigev_value.sival_ptr = (void *)0x42;
  timer_create(CLOCK_MONOTONIC, &sev, &t1);
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGHUP;
  sev._sigev_un._tid = thread_tid;
  timer_create(CLOCK_REALTIME, &sev, &t2);

  printf("READY pid=%d tid=%d child1=%d child2=%d efd=%d ep=%d tfd=%d sfd=%d ino=%d wd=%d afd=%d mapped=%lu gone=%lu\n",
         getpid(), thread_tid, child1, thread_child, efd, ep, tfd, sfd, ino, wd, afd, (unsigned long)mapped, (unsigned long)gone);
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  kill(child1, SIGKILL);
  kill(thread_child, SIGKILL);
  return 0;
}
