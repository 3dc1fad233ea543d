/* The numbered byte stream shared by net-stream (the server under test) and net-peer.
 *
 * Byte i of a stream is byte (i % 8) of the little-endian 64-bit number i / 8: a lost,
 * repeated or reordered run of any length shifts the numbering and shows at the next byte. */
#ifndef HANDOFF_NET_STREAM_H
#define HANDOFF_NET_STREAM_H

#include <stddef.h>
#include <stdint.h>

static inline uint8_t stream_byte(uint64_t i)
{
    return (uint8_t)((i / 8) >> (8 * (i % 8)));
}

static inline void stream_fill(uint8_t *buf, uint64_t offset, size_t n)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = stream_byte(offset + k);
}

/* Index of the first byte of buf that breaks the stream at offset, or n when all match. */
static inline size_t stream_check(const uint8_t *buf, uint64_t offset, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (buf[k] != stream_byte(offset + k))
            return k;
    return n;
}

#endif
