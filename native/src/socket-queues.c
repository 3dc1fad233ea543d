/* Queued messages of unix and UDP sockets: read one at a time without consuming them
 * (SO_PEEK_OFF + MSG_PEEK, with the SCM_RIGHTS descriptors and source addresses that travel
 * with them), sent again with descriptors, and UDP datagrams put back into a receive queue
 * with their original source address (a raw packet over loopback). */
#include "handoff.h"
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>

#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif

enum { PK_COPIED, PK_LENGTH, PK_NFDS, PK_FLAGS, PK_NAMELEN, PK_DSTLEN, PK_COUNT };
#define PK_CTRUNC 1u

/* The socket's own peek offset, so that the caller's setting survives our peeking. */
static int peek_off_get(int fd, int *saved) {
  socklen_t l = sizeof *saved;
  return getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, saved, &l) < 0 ? -errno : 0;
}

/* One message of fd's receive queue, `off` bytes in, peeked (left in the queue).
 * out: [bytes copied into buf, real length (datagrams; stream = copied), descriptors,
 * flags (PK_CTRUNC), source address length, destination address length]. SCM_RIGHTS
 * descriptors land in `fds` (close-on-exec; those beyond maxfds are closed and flagged).
 * Datagram sockets: the source address goes to `name` and, with `want_dst`, the destination
 * (IP_PKTINFO / IPV6_PKTINFO, turned on only for this call) to `dst` as a sockaddr.
 * Returns 0, or -EAGAIN when nothing is queued at that offset. */
HND_EXPORT int hnd_peek_message(int fd, int off, void *buf, long cap, int32_t *fds, int maxfds, void *name, int namecap,
                                void *dst, int want_dst, uint32_t *out) {
  int type = 0, domain = 0, saved = -1, e = 0;
  socklen_t l = sizeof type;
  memset(out, 0, PK_COUNT * sizeof *out);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0) return -errno;
  l = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) < 0) return -errno;
  if ((e = peek_off_get(fd, &saved)) < 0) return e;
  if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) < 0) return -errno;
  int pk_level = domain == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
  int pk_name = domain == AF_INET6 ? IPV6_RECVPKTINFO : IP_PKTINFO;
  int pk_was = 0, one = 1;
  bool pk = want_dst && (domain == AF_INET || domain == AF_INET6);
  if (pk) {
    l = sizeof pk_was;
    if (getsockopt(fd, pk_level, pk_name, &pk_was, &l) < 0 || (!pk_was && setsockopt(fd, pk_level, pk_name, &one, sizeof one) < 0)) {
      e = -errno;
      setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &saved, sizeof saved);
      return e;
    }
  }
  union {
    char buf[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(struct in6_pktinfo)) + 64];
    struct cmsghdr align;
  } cb;
  struct iovec iov = { .iov_base = buf, .iov_len = (size_t)cap };
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof cb.buf };
  if (type != SOCK_STREAM) {
    mh.msg_name = name;
    mh.msg_namelen = (socklen_t)namecap;
  }
  ssize_t n;
  do n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (type == SOCK_STREAM ? 0 : MSG_TRUNC));
  while (n < 0 && errno == EINTR);
  e = n < 0 ? -errno : 0;
  if (pk && !pk_was) setsockopt(fd, pk_level, pk_name, &pk_was, sizeof pk_was);
  setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &saved, sizeof saved);
  if (e) return e;
  out[PK_LENGTH] = (uint32_t)n;
  out[PK_COPIED] = (uint32_t)((size_t)n > (size_t)cap ? (size_t)cap : (size_t)n);
  if (type != SOCK_STREAM) out[PK_NAMELEN] = mh.msg_namelen;
  if (mh.msg_flags & MSG_CTRUNC) out[PK_FLAGS] |= PK_CTRUNC;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      int got[253];
      memcpy(got, CMSG_DATA(c), (size_t)k * sizeof(int));
      for (int i = 0; i < k; i++) {
        if ((int)out[PK_NFDS] < maxfds) fds[out[PK_NFDS]++] = got[i];
        else {
          close(got[i]);
          out[PK_FLAGS] |= PK_CTRUNC;
        }
      }
    } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && domain == AF_INET) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = pi.ipi_addr };
      memcpy(dst, &sa, sizeof sa);
      out[PK_DSTLEN] = sizeof sa;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && domain == AF_INET6) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = pi.ipi6_addr };
      memcpy(dst, &sa, sizeof sa);
      out[PK_DSTLEN] = sizeof sa;
    }
  }
  return 0;
}

/* sendmsg of buf with `nfds` descriptors as SCM_RIGHTS (on the first piece); a stream send
 * cut short goes on without them. Returns bytes sent or -errno. */
HND_EXPORT long hnd_send_with_fds(int fd, const void *buf, long len, const int32_t *fds, int nfds) {
  if (nfds < 0 || nfds > 253) return -EINVAL;
  union {
    char buf[CMSG_SPACE(sizeof(int) * 253)];
    struct cmsghdr align;
  } cb;
  long done = 0;
  bool first = true;
  do {
    struct iovec iov = { .iov_base = (char *)buf + done, .iov_len = (size_t)(len - done) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (first && nfds > 0) {
      memset(&cb, 0, sizeof cb);
      mh.msg_control = cb.buf;
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
      struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
      memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return done ? done : -errno;
    }
    first = false;
    done += n;
  } while (done < len);
  return done;
}

static uint32_t sum16(const void *p, size_t len, uint32_t acc) {
  const uint8_t *b = p;
  for (size_t i = 0; i + 1 < len; i += 2) acc += (uint32_t)(b[i] << 8 | b[i + 1]);
  if (len & 1) acc += (uint32_t)(b[len - 1] << 8);
  return acc;
}

static uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  uint16_t r = (uint16_t)~acc;
  return r ? r : 0xffff; /* a computed 0 is sent as all ones (RFC 768) */
}

/* Puts one UDP datagram into the receive queue of whatever local socket `dst` reaches, as if
 * it came from `src` (sockaddr_in or sockaddr_in6, same family, ports included): a raw packet
 * with our own IP and UDP headers, so any source address is possible. `dst` must be local;
 * the packet goes over loopback. Returns 0 or -errno. */
HND_EXPORT int hnd_udp_inject(const void *src, int srclen, const void *dst, int dstlen, const void *data, long len) {
  static __thread uint8_t pkt[65575];
  sa_family_t family = ((const struct sockaddr *)src)->sa_family;
  if (family != ((const struct sockaddr *)dst)->sa_family || len < 0) return -EINVAL;
  struct udphdr uh = { .len = htons((uint16_t)(sizeof uh + (size_t)len)) };
  size_t ip_len = family == AF_INET ? sizeof(struct iphdr) : sizeof(struct ip6_hdr);
  if ((size_t)len + sizeof uh + ip_len > (family == AF_INET ? 65535u : 65535u + ip_len)) return -EMSGSIZE;
  uint32_t acc = 0;
  if (family == AF_INET) {
    const struct sockaddr_in *s = src, *d = dst;
    if (srclen < (int)sizeof *s || dstlen < (int)sizeof *d) return -EINVAL;
    struct iphdr ih = { .version = 4, .ihl = 5, .ttl = 64, .protocol = IPPROTO_UDP,
                        .tot_len = htons((uint16_t)(ip_len + sizeof uh + (size_t)len)),
                        .saddr = s->sin_addr.s_addr, .daddr = d->sin_addr.s_addr };
    uh.source = s->sin_port;
    uh.dest = d->sin_port;
    acc = sum16(&ih.saddr, 8, 0) + IPPROTO_UDP + (uint32_t)(sizeof uh + (size_t)len);
    memcpy(pkt, &ih, sizeof ih);
  } else if (family == AF_INET6) {
    const struct sockaddr_in6 *s = src, *d = dst;
    if (srclen < (int)sizeof *s || dstlen < (int)sizeof *d) return -EINVAL;
    struct ip6_hdr ih;
    memset(&ih, 0, sizeof ih);
    ih.ip6_flow = htonl(6u << 28);
    ih.ip6_plen = htons((uint16_t)(sizeof uh + (size_t)len));
    ih.ip6_nxt = IPPROTO_UDP;
    ih.ip6_hlim = 64;
    ih.ip6_src = s->sin6_addr;
    ih.ip6_dst = d->sin6_addr;
    uh.source = s->sin6_port;
    uh.dest = d->sin6_port;
    acc = sum16(&ih.ip6_src, 32, 0) + IPPROTO_UDP + (uint32_t)(sizeof uh + (size_t)len);
    memcpy(pkt, &ih, sizeof ih);
  } else {
    return -EAFNOSUPPORT;
  }
  acc = sum16(&uh, sizeof uh, acc);
  acc = sum16(data, (size_t)len, acc);
  uh.check = htons(fold(acc));
  memcpy(pkt + ip_len, &uh, sizeof uh);
  memcpy(pkt + ip_len + sizeof uh, data, (size_t)len);
  /* IPPROTO_RAW sockets carry their own IP header (IP_HDRINCL is implied, IPv6 too). */
  int raw = socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  if (raw < 0) return -errno;
  struct sockaddr_storage to;
  memset(&to, 0, sizeof to);
  memcpy(&to, dst, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
  if (family == AF_INET) ((struct sockaddr_in *)&to)->sin_port = 0;
  else ((struct sockaddr_in6 *)&to)->sin6_port = 0;
  ssize_t n = sendto(raw, pkt, ip_len + sizeof uh + (size_t)len, 0, (struct sockaddr *)&to,
                     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
  int e = n < 0 ? -errno : 0;
  close(raw);
  return e;
}
