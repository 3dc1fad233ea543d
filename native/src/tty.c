/* Terminal ioctls for pseudo-terminals: termios2, window size, pty index/lock/packet mode,
 * sessions and process groups, and the two loops that move queued bytes (drain by reading,
 * re-insert with TIOCSTI) so that Node does not pay one ffi call per byte. */
#include "handoff.h"
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <asm/termbits.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static int ret(long r) { return r < 0 ? -errno : (int)r; }

/* ioctls that fill an int: TIOCGPTN, TIOCGPTLCK, TIOCGPKT, TIOCGEXCL, FIONREAD, TIOCGPGRP,
 * TIOCGSID. Returns the int (never negative for these) or -errno. */
HND_EXPORT int hnd_tty_get_int(int fd, int request) {
  int v = 0;
  if (ioctl(fd, (unsigned int)request, &v) < 0) return -errno;
  return v;
}

/* ioctls that read an int: TIOCSPTLCK, TIOCPKT, TIOCSPGRP. */
HND_EXPORT int hnd_tty_set_int(int fd, int request, int value) {
  return ret(ioctl(fd, (unsigned int)request, &value));
}

/* ioctls with a plain integer argument: TIOCSCTTY, TIOCNOTTY, TIOCEXCL, TIOCNXCL, TIOCGPTPEER. */
HND_EXPORT int hnd_tty_ioctl_arg(int fd, int request, int arg) {
  return ret(ioctl(fd, (unsigned int)request, (unsigned long)arg));
}

/* struct termios2 (44 bytes on x86_64) in and out as raw bytes. */
HND_EXPORT int hnd_tty_getattr(int fd, uint8_t *out) {
  struct termios2 t;
  if (ioctl(fd, TCGETS2, &t) < 0) return -errno;
  memcpy(out, &t, sizeof t);
  return (int)sizeof t;
}

HND_EXPORT int hnd_tty_setattr(int fd, const uint8_t *in) {
  struct termios2 t;
  memcpy(&t, in, sizeof t);
  return ret(ioctl(fd, TCSETS2, &t));
}

HND_EXPORT int hnd_tty_termios_size(void) { return (int)sizeof(struct termios2); }

/* struct winsize: rows, cols, xpixel, ypixel as four u16. */
HND_EXPORT int hnd_tty_getwinsz(int fd, uint8_t *out) {
  struct winsize w;
  if (ioctl(fd, TIOCGWINSZ, &w) < 0) return -errno;
  memcpy(out, &w, sizeof w);
  return 0;
}

HND_EXPORT int hnd_tty_setwinsz(int fd, const uint8_t *in) {
  struct winsize w;
  memcpy(&w, in, sizeof w);
  return ret(ioctl(fd, TIOCSWINSZ, &w));
}

/* Reads everything a pty master has queued, without blocking and without touching the file's
 * flags (the description is shared with a frozen process): poll says whether a byte is there
 * (for a master, whose line discipline is raw with VMIN 1, it also pulls in what still sits in
 * the flip buffers), then read takes what is there. In packet mode every read starts with a
 * status byte, dropped here. Returns the number of bytes stored, or -ENOSPC when more than
 * `cap` are queued (what was read is in out[0..cap) and must be put back by the caller). */
HND_EXPORT int64_t hnd_tty_drain_master(int fd, uint8_t *out, int64_t cap, int packet, uint8_t *scratch, int64_t scratch_len) {
  int64_t have = 0;
  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, 0);
    if (r < 0) { if (errno == EINTR) continue; return -errno; }
    if (r == 0 || !(p.revents & POLLIN)) return have;
    ssize_t n = read(fd, scratch, (size_t)scratch_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      /* What was read is returned so that the caller can put it back. */
      return (errno == EAGAIN || have) ? have : -errno;
    }
    if (n == 0) return have;
    const uint8_t *data = scratch;
    if (packet) { data++; n--; }
    if (have + n > cap) {
      memcpy(out + have, data, (size_t)(cap - have));
      return -ENOSPC;
    }
    memcpy(out + have, data, (size_t)n);
    have += n;
  }
}

/* Pushes bytes into the input of the terminal behind fd, one TIOCSTI each: the line discipline
 * receives them at once, with the termios in force now (CAP_SYS_ADMIN). Returns how many went
 * in, or -errno if the first failed. */
HND_EXPORT int64_t hnd_tty_sti(int fd, const uint8_t *data, int64_t len) {
  int64_t i = 0;
  for (; i < len; i++) {
    char c = (char)data[i];
    if (ioctl(fd, TIOCSTI, &c) < 0) return i ? i : -errno;
  }
  return i;
}
