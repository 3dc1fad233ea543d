/* Sockets: raw socket calls, TCP repair (dump and restore of a connection's state and
 * queues), unix queue peeking and sock_diag lookups. Calls that would take dozens of
 * ffi round trips per socket (a whole TCP repair dump) are done here in one call. */
#include "handoff.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/sockios.h>

static int ret(long r) { return r < 0 ? -errno : (int)r; }

HND_EXPORT int hnd_socket(int domain, int type, int protocol) { return ret(socket(domain, type | SOCK_CLOEXEC, protocol)); }

/* fds[0], fds[1] are written into `out` (two int32). */
HND_EXPORT int hnd_socketpair(int domain, int type, int32_t *out) {
  int fds[2];
  if (socketpair(domain, type | SOCK_CLOEXEC, 0, fds) < 0) return -errno;
  out[0] = fds[0];
  out[1] = fds[1];
  return 0;
}

/* Returns the option length written into buf. */
HND_EXPORT int hnd_getsockopt(int fd, int level, int name, void *buf, int len) {
  socklen_t l = (socklen_t)len;
  if (getsockopt(fd, level, name, buf, &l) < 0) return -errno;
  return (int)l;
}

HND_EXPORT int hnd_setsockopt(int fd, int level, int name, const void *buf, int len) { return ret(setsockopt(fd, level, name, buf, (socklen_t)len)); }

HND_EXPORT int hnd_setsockopt_int(int fd, int level, int name, int value) { return ret(setsockopt(fd, level, name, &value, sizeof value)); }

HND_EXPORT int hnd_getsockname(int fd, void *buf, int len) {
  socklen_t l = (socklen_t)len;
  if (getsockname(fd, buf, &l) < 0) return -errno;
  return (int)l;
}

HND_EXPORT int hnd_getpeername(int fd, void *buf, int len) {
  socklen_t l = (socklen_t)len;
  if (getpeername(fd, buf, &l) < 0) return -errno;
  return (int)l;
}

HND_EXPORT int hnd_bind(int fd, const void *addr, int len) { return ret(bind(fd, addr, (socklen_t)len)); }
HND_EXPORT int hnd_connect(int fd, const void *addr, int len) { return ret(connect(fd, addr, (socklen_t)len)); }
HND_EXPORT int hnd_listen(int fd, int backlog) { return ret(listen(fd, backlog)); }
HND_EXPORT int hnd_shutdown(int fd, int how) { return ret(shutdown(fd, how)); }

/* Integer-valued ioctls: SIOCINQ, SIOCOUTQ, SIOCOUTQNSD. */
HND_EXPORT int hnd_ioctl_int(int fd, int request) {
  int v = 0;
  if (ioctl(fd, (unsigned long)request, &v) < 0) return -errno;
  return v;
}

/* An fd for the network namespace the socket lives in (SIOCGSKNS, 4.9+). */
HND_EXPORT int hnd_socket_netns(int fd) { return ret(ioctl(fd, SIOCGSKNS)); }

/* Moves the calling thread into the network namespace `nsfd`. Sockets created later by this
 * thread live there; those created before keep their namespace. */
HND_EXPORT int hnd_setns_net(int nsfd) { return ret(setns(nsfd, CLONE_NEWNET)); }

/* Sends all of buf (blocking semantics unless flags has MSG_DONTWAIT); returns bytes sent. */
HND_EXPORT long hnd_send_all(int fd, const void *buf, long len, int flags) {
  long done = 0;
  while (done < len) {
    ssize_t n = send(fd, (const char *)buf + done, (size_t)(len - done), flags | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return done ? done : -errno;
    }
    done += n;
  }
  return done;
}

HND_EXPORT long hnd_recv(int fd, void *buf, long len, int flags) {
  ssize_t n;
  do n = recv(fd, buf, (size_t)len, flags);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

/* ---- TCP ---- */

/* Fields of struct tcp_info the dumper needs, flattened (bitfields decoded here). */
enum { TI_STATE, TI_OPTIONS, TI_SND_WSCALE, TI_RCV_WSCALE, TI_SND_MSS, TI_RCV_MSS, TI_UNACKED, TI_SACKED, TI_COUNT };

HND_EXPORT int hnd_tcp_info(int fd, uint32_t *out) {
  struct tcp_info ti;
  socklen_t l = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0) return -errno;
  out[TI_STATE] = ti.tcpi_state;
  out[TI_OPTIONS] = ti.tcpi_options;
  out[TI_SND_WSCALE] = ti.tcpi_snd_wscale;
  out[TI_RCV_WSCALE] = ti.tcpi_rcv_wscale;
  out[TI_SND_MSS] = ti.tcpi_snd_mss;
  out[TI_RCV_MSS] = ti.tcpi_rcv_mss;
  /* For a listener the kernel reports the accept queue length / its limit here. */
  out[TI_UNACKED] = ti.tcpi_unacked;
  out[TI_SACKED] = ti.tcpi_sacked;
  return 0;
}

/* TCP_REPAIR_ON (1), TCP_REPAIR_OFF (0) or TCP_REPAIR_OFF_NO_WP (-1). */
HND_EXPORT int hnd_tcp_repair(int fd, int mode) { return ret(setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &mode, sizeof mode)); }

/* The repair state of one connection, as 32-bit words (layout shared with src/native/socket.ts).
 * Sequence numbers are those of the FIRST byte of each queue, so a restore sets them, then
 * refills the queue, which moves the kernel's write_seq / rcv_nxt back to the dumped values. */
enum {
  RS_STATE, RS_SEND_SEQ, RS_RECV_SEQ, RS_SEND_LEN, RS_UNSENT_LEN, RS_RECV_LEN,
  RS_MSS, RS_SND_WSCALE, RS_RCV_WSCALE, RS_OPTIONS, RS_TIMESTAMP, RS_HAS_WINDOW,
  RS_SND_WL1, RS_SND_WND, RS_MAX_WINDOW, RS_RCV_WND, RS_RCV_WUP, RS_COUNT
};
#define OPT_TIMESTAMPS 1 /* TCPI_OPT_TIMESTAMPS */
#define OPT_SACK 2       /* TCPI_OPT_SACK */
#define OPT_WSCALE 4     /* TCPI_OPT_WSCALE */

static int queue_seq(int fd, int queue, uint32_t *seq) {
  socklen_t l = sizeof *seq;
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return -errno;
  if (getsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &l) < 0) return -errno;
  return 0;
}

/* Reads everything except the queue bytes; the socket must already be in repair mode. */
HND_EXPORT int hnd_tcp_repair_dump(int fd, uint32_t *rs) {
  uint32_t ti[TI_COUNT];
  int r, v;
  socklen_t l;
  memset(rs, 0, RS_COUNT * sizeof *rs);
  if ((r = hnd_tcp_info(fd, ti)) < 0) return r;
  rs[RS_STATE] = ti[TI_STATE];
  rs[RS_OPTIONS] = ti[TI_OPTIONS];
  rs[RS_SND_WSCALE] = ti[TI_SND_WSCALE];
  rs[RS_RCV_WSCALE] = ti[TI_RCV_WSCALE];
  /* Queue lengths: SIOCOUTQ = write_seq - snd_una, SIOCOUTQNSD = write_seq - snd_nxt,
   * SIOCINQ = rcv_nxt - copied_seq (a received FIN is not counted). */
  if (ioctl(fd, SIOCOUTQ, &v) < 0) return -errno;
  rs[RS_SEND_LEN] = (uint32_t)v;
  if (ioctl(fd, SIOCOUTQNSD, &v) < 0) return -errno;
  rs[RS_UNSENT_LEN] = (uint32_t)v;
  if (ioctl(fd, SIOCINQ, &v) < 0) return -errno;
  rs[RS_RECV_LEN] = (uint32_t)v;
  if ((r = queue_seq(fd, TCP_SEND_QUEUE, &rs[RS_SEND_SEQ])) < 0) return r;
  if ((r = queue_seq(fd, TCP_RECV_QUEUE, &rs[RS_RECV_SEQ])) < 0) return r;
  rs[RS_SEND_SEQ] -= rs[RS_SEND_LEN];
  rs[RS_RECV_SEQ] -= rs[RS_RECV_LEN];
  /* In repair mode TCP_MAXSEG reports the clamp negotiated with the peer. */
  l = sizeof v;
  if (getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &v, &l) < 0) return -errno;
  rs[RS_MSS] = (uint32_t)v;
  if (rs[RS_OPTIONS] & OPT_TIMESTAMPS) {
    uint32_t ts;
    l = sizeof ts;
    if (getsockopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts, &l) < 0) return -errno;
    rs[RS_TIMESTAMP] = ts;
  }
  struct tcp_repair_window w;
  l = sizeof w;
  if (getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, &l) == 0) {
    rs[RS_HAS_WINDOW] = 1;
    rs[RS_SND_WL1] = w.snd_wl1;
    rs[RS_SND_WND] = w.snd_wnd;
    rs[RS_MAX_WINDOW] = w.max_window;
    rs[RS_RCV_WND] = w.rcv_wnd;
    rs[RS_RCV_WUP] = w.rcv_wup;
  } else if (errno != ENOPROTOOPT) {
    return -errno;
  }
  return 0;
}

/* Copies one queue (TCP_SEND_QUEUE or TCP_RECV_QUEUE) without consuming it; repair mode only.
 * One MSG_PEEK call walks every skb of the queue when the buffer is large enough. */
HND_EXPORT long hnd_tcp_peek_queue(int fd, int queue, void *buf, long len) {
  if (len == 0) return 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return -errno;
  ssize_t n;
  do n = recv(fd, buf, (size_t)len, MSG_PEEK | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  int e = errno;
  int none = TCP_NO_QUEUE;
  setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &none, sizeof none);
  return n < 0 ? -e : n;
}

/* Before connect(): sets the sequence numbers of the first byte of each queue. */
HND_EXPORT int hnd_tcp_repair_set_seqs(int fd, const uint32_t *rs) {
  int queue = TCP_SEND_QUEUE;
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return -errno;
  if (setsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &rs[RS_SEND_SEQ], sizeof(uint32_t)) < 0) return -errno;
  queue = TCP_RECV_QUEUE;
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return -errno;
  if (setsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &rs[RS_RECV_SEQ], sizeof(uint32_t)) < 0) return -errno;
  queue = TCP_NO_QUEUE;
  return ret(setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue));
}

/* Writes `len` bytes into a queue in repair mode. The receive queue takes one skb per send
 * and fails with ENOMEM when the chunk exceeds what rcvbuf admits: halve and retry. */
static int fill_queue(int fd, int queue, const char *buf, long len, long chunk) {
  if (len == 0) return 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof queue) < 0) return -errno;
  long done = 0;
  while (done < len) {
    long want = len - done < chunk ? len - done : chunk;
    ssize_t n = send(fd, buf + done, (size_t)want, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if ((errno == ENOMEM || errno == EAGAIN) && chunk > 256) {
        chunk /= 2;
        continue;
      }
      return -errno;
    }
    done += n;
  }
  return 0;
}

/* After the repair connect(): options, timestamp offset, both queues, then the window
 * (the kernel checks the window against rcv_nxt, which the receive queue refill moves). */
HND_EXPORT int hnd_tcp_repair_restore(int fd, const uint32_t *rs, const void *sendq, long sendlen, const void *recvq, long recvlen) {
  struct tcp_repair_opt opts[4];
  int n = 0, r;
  opts[n].opt_code = TCPOPT_MAXSEG;
  opts[n++].opt_val = rs[RS_MSS];
  if (rs[RS_OPTIONS] & OPT_WSCALE) {
    opts[n].opt_code = TCPOPT_WINDOW;
    opts[n++].opt_val = rs[RS_SND_WSCALE] | (rs[RS_RCV_WSCALE] << 16);
  }
  if (rs[RS_OPTIONS] & OPT_SACK) {
    opts[n].opt_code = TCPOPT_SACK_PERMITTED;
    opts[n++].opt_val = 0;
  }
  if (rs[RS_OPTIONS] & OPT_TIMESTAMPS) {
    opts[n].opt_code = TCPOPT_TIMESTAMP;
    opts[n++].opt_val = 0;
  }
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts, (socklen_t)(n * sizeof opts[0])) < 0) return -errno;
  if (rs[RS_OPTIONS] & OPT_TIMESTAMPS) {
    /* The kernel keeps tsoffset = value - its own clock, so our timestamps continue. */
    uint32_t ts = rs[RS_TIMESTAMP];
    if (setsockopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts, sizeof ts) < 0) return -errno;
  }
  long mss = rs[RS_MSS] ? rs[RS_MSS] : 1400;
  if ((r = fill_queue(fd, TCP_SEND_QUEUE, sendq, sendlen, 64 * 1024 > mss ? 64 * 1024 : mss)) < 0) return r;
  if ((r = fill_queue(fd, TCP_RECV_QUEUE, recvq, recvlen, 64 * 1024)) < 0) return r;
  int none = TCP_NO_QUEUE;
  if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &none, sizeof none) < 0) return -errno;
  if (rs[RS_HAS_WINDOW]) {
    struct tcp_repair_window w = {
      .snd_wl1 = rs[RS_SND_WL1], .snd_wnd = rs[RS_SND_WND], .max_window = rs[RS_MAX_WINDOW],
      .rcv_wnd = rs[RS_RCV_WND], .rcv_wup = rs[RS_RCV_WUP],
    };
    if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof w) < 0) return -errno;
  }
  return 0;
}

/* ---- unix ---- */

/* Copies the receive queue of a unix socket without consuming it: SO_PEEK_OFF moves the
 * peek position past each message. Datagram/seqpacket messages keep their boundaries
 * (lens[i] per message); a stream socket reports one run of bytes. out[0] counts the
 * SCM_RIGHTS descriptors attached to queued data (peeking installs copies: closed here),
 * out[1] is 1 if the buffer or the message table was too small. Returns the message count. */
HND_EXPORT int hnd_unix_peek_queue(int fd, void *buf, long cap, uint32_t *lens, int maxmsgs, uint32_t *out) {
  int type = 0, off = 0, count = 0;
  socklen_t l = sizeof type;
  long used = 0;
  out[0] = out[1] = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0) return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0) return -errno;
  for (;;) {
    char cbuf[CMSG_SPACE(sizeof(int) * 253)];
    struct iovec iov = { .iov_base = (char *)buf + used, .iov_len = (size_t)(cap - used) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    if (count >= maxmsgs || (cap - used == 0 && type == SOCK_STREAM)) {
      /* Anything left? Peek one byte to tell a full buffer from an exact fit. */
      char probe;
      ssize_t p = recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
      if (p >= 0 && !(p == 0 && type == SOCK_STREAM)) out[1] = 1;
      break;
    }
    ssize_t n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      int e = errno;
      off = -1;
      setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
      return -e;
    }
    if (n == 0 && type == SOCK_STREAM) break; /* peer closed, queue drained */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *fds = (int *)CMSG_DATA(c);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        out[0] += (uint32_t)nfds;
      }
    }
    if (mh.msg_flags & MSG_TRUNC) out[1] = 1;
    if (type == SOCK_STREAM) {
      used += n;
      lens[0] = (uint32_t)used;
      count = 1;
    } else {
      lens[count++] = (uint32_t)n;
      used += n;
    }
  }
  off = -1;
  setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off);
  return count;
}

/* sock_diag facts about a unix socket, by inode, asked in the socket's own network
 * namespace (unix inode lookups are per namespace). out: [type, state, peer inode,
 * rqueue, wqueue, shutdown, name length, found]. For a listener the kernel reports the
 * pending connections in rqueue and the backlog limit in wqueue. Name bytes go to `name`. */
enum { UD_TYPE, UD_STATE, UD_PEER, UD_RQUEUE, UD_WQUEUE, UD_SHUTDOWN, UD_NAMELEN, UD_FOUND, UD_COUNT };

static int diag_socket_in_ns_of(int fd) {
  int skns = (int)ioctl(fd, SIOCGSKNS);
  if (skns < 0) return ret(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) { int e = errno; close(skns); return -e; }
  int nl = -1, e = 0;
  if (setns(skns, CLONE_NEWNET) < 0) e = errno;
  else {
    nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0) e = errno;
    if (setns(self, CLONE_NEWNET) < 0 && !e) e = errno;
  }
  close(self);
  close(skns);
  if (e) { if (nl >= 0) close(nl); return -e; }
  return nl;
}

HND_EXPORT int hnd_unix_diag(int fd, int64_t ino64, uint32_t *out, void *name, int namecap) {
  uint32_t ino = (uint32_t)ino64;
  memset(out, 0, UD_COUNT * sizeof *out);
  int nl = diag_socket_in_ns_of(fd);
  if (nl < 0) return nl;
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } q;
  memset(&q, 0, sizeof q);
  q.nlh.nlmsg_len = sizeof q;
  q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  q.nlh.nlmsg_flags = NLM_F_REQUEST;
  q.nlh.nlmsg_seq = 1;
  q.req.sdiag_family = AF_UNIX;
  q.req.udiag_ino = ino;
  q.req.udiag_states = ~0u;
  q.req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;
  q.req.udiag_cookie[0] = q.req.udiag_cookie[1] = ~0u;
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  if (sendto(nl, &q, sizeof q, 0, (struct sockaddr *)&sa, sizeof sa) < 0) { int e = errno; close(nl); return -e; }
  static __thread char buf[16384];
  ssize_t n = recv(nl, buf, sizeof buf, 0);
  int e = errno;
  close(nl);
  if (n < 0) return -e;
  for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      struct nlmsgerr *err = NLMSG_DATA(h);
      return err->error ? err->error : -ENOENT;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    struct unix_diag_msg *m = NLMSG_DATA(h);
    if (m->udiag_ino != ino) continue;
    out[UD_TYPE] = m->udiag_type;
    out[UD_STATE] = m->udiag_state;
    out[UD_FOUND] = 1;
    int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
    for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
      switch (a->rta_type) {
      case UNIX_DIAG_PEER: out[UD_PEER] = *(uint32_t *)RTA_DATA(a); break;
      case UNIX_DIAG_RQLEN: {
        struct unix_diag_rqlen *rq = RTA_DATA(a);
        out[UD_RQUEUE] = rq->udiag_rqueue;
        out[UD_WQUEUE] = rq->udiag_wqueue;
        break;
      }
      case UNIX_DIAG_SHUTDOWN: out[UD_SHUTDOWN] = *(uint8_t *)RTA_DATA(a); break;
      case UNIX_DIAG_NAME: {
        int len = (int)RTA_PAYLOAD(a);
        if (len > namecap) len = namecap;
        memcpy(name, RTA_DATA(a), (size_t)len);
        out[UD_NAMELEN] = (uint32_t)len;
        break;
      }
      }
    }
    return 0;
  }
  return -ENOENT;
}

/* fcntl(F_SETFL): O_NONBLOCK and friends for a restored socket. */
HND_EXPORT int hnd_set_status_flags(int fd, int flags) { return ret(fcntl(fd, F_SETFL, flags)); }

/* Whether a TCP socket no longer receives (sk_shutdown & RCV_SHUTDOWN, set by shutdown(SHUT_RD)
 * or by the peer's FIN): no getsockopt reports it, and sock_diag's INET_DIAG_SHUTDOWN needs the
 * tcp_diag module, which minimal systems lack. tcp_poll reports it as POLLRDHUP, and only it.
 * Returns 1 or 0, or -errno. */
HND_EXPORT int hnd_tcp_rcv_shutdown(int fd) {
  struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
  if (poll(&p, 1, 0) < 0) return -errno;
  return (p.revents & POLLRDHUP) ? 1 : 0;
}
