/* The echo load generator's measured loop, in C (bench/loadgen.py, --engine c).
 *
 * Why: the Python loop cost ~30 us of CPU per echo, as much as the servers it
 * drives, so on a 2-core machine the generator held most of a core and a
 * server using both cores (wsup with 2 workers) shared one with it.  This loop
 * does the same work — one prepared, masked frame sent per echo, every reply
 * parsed, inflated (a reset stream per message under server_no_context_takeover,
 * one stream per connection otherwise) and compared byte for byte with what
 * was sent — for a few microseconds per echo, nearly all of it system calls.
 *
 * loadgen.py opens the connections and does the handshakes (as for every mode),
 * then hands the sockets over: el_new, el_start, el_run (warm-up, the measured
 * window, the drain), the results, el_free.  Built on first use with
 * `cc -O2 -shared -fPIC echoloop.c -lz` (loadgen.py's echoloop()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

enum { PLAIN = 0, FRESH = 1, KEEP = 2 };           /* a connection's inflate mode */
enum { OK = 0, MISMATCH = 1, FAILED = 2 };         /* a connection's state */

typedef struct {
    int fd, mode, set, state, inflight;
    const unsigned char *msg;   /* the payload expected back */
    size_t msg_len;
    double t_sent;
    unsigned char *rbuf; size_t rlen, rcap;     /* bytes received, not yet a whole frame */
    unsigned char *mbuf; size_t mlen, mcap;     /* a fragmented message's pieces */
    int in_frag, frag_op, frag_rsv1;
    const unsigned char *wpend; size_t wlen;   /* the part of a frame the socket did not take */
    z_stream zs; int zinit;
    long n; double sum;                        /* echoes in the measured window, their latencies */
    char why[160];
} conn_t;

typedef struct {
    int n, ep, per_set;
    conn_t *c;
    const unsigned char **frames; const size_t *flen;      /* [set * per_set + i] */
    const unsigned char **payloads; const size_t *plen;
    unsigned char *obuf; size_t ocap;
    double *lat; long lat_n, lat_cap;
    long counter, verified, mismatches;
    int recording, sending;
} st_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);      /* Python's time.perf_counter() on Linux */
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The connection is done with (FAILED, or MISMATCH: loadgen.py closes it afterwards). */
static void stop(st_t *s, conn_t *c, int state, const char *why) {
    if (c->state == OK) {
        c->state = state;
        snprintf(c->why, sizeof c->why, "%s", why);
    }
    c->inflight = 0;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

static void fail(st_t *s, conn_t *c, const char *why) { stop(s, c, FAILED, why); }

static int grow(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) cap2 *= 2;
    unsigned char *b = realloc(*buf, cap2);
    if (!b) return -1;
    *buf = b; *cap = cap2;
    return 0;
}

static void want_write(st_t *s, conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - s->c)};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void send_next(st_t *s, conn_t *c) {
    long i = s->counter++ % s->per_set;
    long k = (long)c->set * s->per_set + i;
    c->msg = s->payloads[k];
    c->msg_len = s->plen[k];
    c->inflight = 1;
    c->t_sent = now();
    ssize_t w = send(c->fd, s->frames[k], s->flen[k], MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) { fail(s, c, strerror(errno)); return; }
        w = 0;
    }
    if ((size_t)w < s->flen[k]) {
        c->wpend = s->frames[k] + w;
        c->wlen = s->flen[k] - w;
        want_write(s, c, 1);
    }
}

/* A whole message arrived: verify it, time it, send the next. */
static void on_message(st_t *s, conn_t *c, int opcode, int rsv1, const unsigned char *p, size_t n, double t) {
    if (!c->inflight) { s->mismatches++; stop(s, c, MISMATCH, "an unexpected message from the server"); return; }
    if (rsv1) {
        if (c->mode == PLAIN) { fail(s, c, "protocol: RSV1 without permessage-deflate"); return; }
        if (!c->zinit) {
            memset(&c->zs, 0, sizeof c->zs);
            if (inflateInit2(&c->zs, -15) != Z_OK) { fail(s, c, "inflateInit2"); return; }
            c->zinit = 1;
        } else if (c->mode == FRESH) {
            inflateReset(&c->zs);                  /* a new stream: no window from the last message */
        }
        static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
        size_t need = c->msg_len + 64;
        if (grow(&s->obuf, &s->ocap, need)) { fail(s, c, "out of memory"); return; }
        c->zs.next_out = s->obuf; c->zs.avail_out = (uInt)s->ocap;
        c->zs.next_in = (unsigned char *)p; c->zs.avail_in = (uInt)n;
        int r = inflate(&c->zs, Z_SYNC_FLUSH);
        if ((r == Z_OK || r == Z_BUF_ERROR) && !c->zs.avail_in) {
            c->zs.next_in = (unsigned char *)tail; c->zs.avail_in = 4;
            r = inflate(&c->zs, Z_SYNC_FLUSH);
        }
        if (r == Z_STREAM_END) {       /* a final block: the message is whole; a new stream next */
            inflateReset(&c->zs);
        } else if ((r != Z_OK && r != Z_BUF_ERROR) || c->zs.avail_in) {
            fail(s, c, "inflate: bad data or a reply longer than the message");
            return;
        }
        p = s->obuf;
        n = s->ocap - c->zs.avail_out;
    }
    c->inflight = 0;
    if (opcode != 1 || n != c->msg_len || memcmp(p, c->msg, n) != 0) {
        char why[160];
        snprintf(why, sizeof why, "echo mismatch: opcode %d, %zu bytes, expected %zu", opcode, n, c->msg_len);
        s->mismatches++;
        stop(s, c, MISMATCH, why);
        return;
    }
    s->verified++;
    if (s->recording) {
        double d = t - c->t_sent;
        if (s->lat_n == s->lat_cap) {
            long cap = s->lat_cap ? s->lat_cap * 2 : 65536;
            double *l = realloc(s->lat, cap * sizeof *l);
            if (!l) { fail(s, c, "out of memory"); return; }
            s->lat = l; s->lat_cap = cap;
        }
        s->lat[s->lat_n++] = d;
        c->n++;
        c->sum += d;
    }
    if (s->sending) send_next(s, c);
}

static void on_frames(st_t *s, conn_t *c, double t) {
    unsigned char *b = c->rbuf;
    size_t pos = 0, end = c->rlen;
    while (c->state == OK && end - pos >= 2) {
        int b0 = b[pos], b1 = b[pos + 1];
        size_t len = b1 & 0x7f, off = pos + 2;
        if (b1 & 0x80) { fail(s, c, "protocol: masked frame from the server"); return; }
        if (len == 126) {
            if (end - pos < 4) break;
            len = ((size_t)b[pos + 2] << 8) | b[pos + 3];
            off = pos + 4;
        } else if (len == 127) {
            if (end - pos < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | b[pos + 2 + i];
            off = pos + 10;
        }
        if (end - off < len) break;
        pos = off + len;
        int opcode = b0 & 0x0f, fin = b0 & 0x80, rsv1 = (b0 & 0x40) != 0;
        const unsigned char *p = b + off;
        if (opcode >= 8) {
            if (opcode == 8) { fail(s, c, "the server closed the connection"); return; }
            if (opcode == 9) {   /* a ping: answer with a pong (masked, key 0: the payload as is) */
                unsigned char f[2 + 4 + 125];
                f[0] = 0x8a; f[1] = 0x80 | (unsigned char)len; memset(f + 2, 0, 4); memcpy(f + 6, p, len);
                if (send(c->fd, f, 6 + len, MSG_NOSIGNAL) != (ssize_t)(6 + len)) { fail(s, c, "pong"); return; }
            }
            continue;
        }
        if (opcode == 0 || !fin) {
            if (opcode == 0 && !c->in_frag) { fail(s, c, "protocol: continuation without a start"); return; }
            if (opcode != 0) { c->in_frag = 1; c->frag_op = opcode; c->frag_rsv1 = rsv1; c->mlen = 0; }
            if (grow(&c->mbuf, &c->mcap, c->mlen + len)) { fail(s, c, "out of memory"); return; }
            memcpy(c->mbuf + c->mlen, p, len);
            c->mlen += len;
            if (!fin) continue;
            c->in_frag = 0;
            on_message(s, c, c->frag_op, c->frag_rsv1, c->mbuf, c->mlen, t);
        } else {
            on_message(s, c, opcode, rsv1, p, len, t);
        }
    }
    if (pos) {
        memmove(b, b + pos, end - pos);
        c->rlen = end - pos;
    }
}

static void on_event(st_t *s, conn_t *c, uint32_t ev) {
    if (c->state != OK) return;
    if ((ev & EPOLLOUT) && c->wlen) {
        ssize_t w = send(c->fd, c->wpend, c->wlen, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) { fail(s, c, strerror(errno)); return; }
        if (w > 0) { c->wpend += w; c->wlen -= (size_t)w; }
        if (!c->wlen) want_write(s, c, 0);
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (grow(&c->rbuf, &c->rcap, c->rlen + 65536)) { fail(s, c, "out of memory"); return; }
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            fail(s, c, strerror(errno));
            return;
        }
        if (r == 0) { fail(s, c, "EOF from the server"); return; }
        double t = now();
        c->rlen += (size_t)r;
        on_frames(s, c, t);
    }
}

st_t *el_new(int n, const int *fds, const int *modes, const int *sets, int per_set,
             const unsigned char **frames, const size_t *flen,
             const unsigned char **payloads, const size_t *plen,
             const unsigned char **history, const size_t *hlen) {
    st_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->c = calloc(n, sizeof *s->c);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!s->c || s->ep < 0) { free(s->c); free(s); return NULL; }
    s->n = n; s->per_set = per_set;
    s->frames = frames; s->flen = flen; s->payloads = payloads; s->plen = plen;
    s->sending = 1;
    for (int i = 0; i < n; i++) {
        conn_t *c = &s->c[i];
        c->fd = fds[i]; c->mode = modes[i]; c->set = sets[i];
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) { c->state = FAILED; snprintf(c->why, sizeof c->why, "epoll_ctl: %s", strerror(errno)); }
        if (c->mode == KEEP) {
            /* the server's compressor remembers what it sent before the hand-over: start from the
             * same window (raw inflate takes a dictionary at any time) */
            if (inflateInit2(&c->zs, -15) != Z_OK) { c->state = FAILED; snprintf(c->why, sizeof c->why, "inflateInit2"); continue; }
            c->zinit = 1;
            if (hlen[i] && inflateSetDictionary(&c->zs, history[i], (uInt)hlen[i]) != Z_OK) {
                c->state = FAILED; snprintf(c->why, sizeof c->why, "inflateSetDictionary");
            }
        }
    }
    return s;
}

/* Send every connection its first message (connection i: message i, as loadgen.py). */
void el_start(st_t *s) {
    for (int i = 0; i < s->n; i++)
        if (s->c[i].state == OK) send_next(s, &s->c[i]);
}

/* Run until `until` (perf_counter seconds); `record`: time the echoes; without `sending`, stop
 * once no message is in flight.  Returns the number of messages still in flight. */
int el_run(st_t *s, double until, int record, int sending) {
    struct epoll_event evs[256];
    s->recording = record;
    s->sending = sending;
    for (;;) {
        int inflight = 0;
        if (!sending) {
            for (int i = 0; i < s->n; i++) inflight += s->c[i].state == OK && s->c[i].inflight;
            if (!inflight) return 0;
        }
        double left = until - now();
        if (left <= 0) {
            if (sending) return 0;
            return inflight;
        }
        int ms = left > 0.05 ? 50 : (int)(left * 1000) + 1;
        int k = epoll_wait(s->ep, evs, 256, ms);
        if (k < 0 && errno != EINTR) return -1;
        for (int j = 0; j < k; j++) on_event(s, &s->c[evs[j].data.u32], evs[j].events);
    }
}

long el_lat_n(st_t *s) { return s->lat_n; }
double *el_lat(st_t *s) { return s->lat; }
long el_verified(st_t *s) { return s->verified; }
long el_mismatches(st_t *s) { return s->mismatches; }
/* One connection: its state (OK, MISMATCH, FAILED), whether a message is in flight, echoes and
 * latency sum in the window, and why it stopped. */
int el_conn(st_t *s, int i, int *inflight, long *n, double *sum, const char **why) {
    conn_t *c = &s->c[i];
    *inflight = c->inflight; *n = c->n; *sum = c->sum; *why = c->why;
    return c->state;
}

void el_free(st_t *s) {
    for (int i = 0; i < s->n; i++) {
        conn_t *c = &s->c[i];
        if (c->zinit) inflateEnd(&c->zs);
        free(c->rbuf); free(c->mbuf);
    }
    close(s->ep);
    free(s->c); free(s->lat); free(s->obuf); free(s);
}
