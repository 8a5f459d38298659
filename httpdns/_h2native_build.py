"""Build ``httpdns._h2native``: the HTTP/2 engine's C half, on libnghttp2 (cffi API mode).

Run by ``scripts/install`` (``python httpdns/_h2native_build.py``); needs a C compiler and
libnghttp2's headers (Debian ``libnghttp2-dev``). Without the extension ``httpdns.http2``
runs the pure-Python ``h2`` engine instead.

Why C: the ``h2``/``hpack`` packages cost about 200 µs of CPU a request in Python (header
validation, Huffman, the state machine), twenty times the HTTP/1.1 path's whole answer.
Here nghttp2 frames, decodes and validates in C, and the callbacks below (also C) keep
what a query needs of each stream — ``:method``, ``:path``, ``content-type``, ``accept``,
``x-forwarded-for`` and a bounded body — so that Python is called once per read (the
completed requests, packed in one buffer), once per answer (the HTTP/1.1-shaped response,
copied into C) and once per write (every frame nghttp2 has to send).

Limits kept in C: the header list (``max_head`` bytes, counted as RFC 9113 §6.5.2 does,
name + value + 32 a field) and the body (``max_body``) are checked as they arrive; a
request over either is queued at once, flagged, for Python to answer 431 or 413 (its
remaining bytes are dropped). RST_STREAM frames from the peer are counted per second; over
``max_resets`` the session ends with GOAWAY ENHANCE_YOUR_CALM (CVE-2023-44487). A stream
the peer resets before Python has seen it is dropped from the queue: it costs no answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cffi import FFI

CDEF = """
typedef struct h2n_conn {
    unsigned char *ready;     /* completed requests, packed (see h2n_recv) */
    unsigned char *out;       /* bytes to send (see h2n_send) */
    double active;            /* CLOCK_MONOTONIC of the last request opened */
    int answered;             /* a request was completed (the preface deadline is met) */
    int calm;                 /* the reset rate was exceeded: GOAWAY ENHANCE_YOUR_CALM */
    int open;                 /* streams open (receiving, queued or answering) */
    ...;
} h2n_conn;

h2n_conn *h2n_new(uint32_t max_streams, uint32_t max_head, uint32_t max_frame,
                  uint32_t max_body, uint32_t max_resets);
void h2n_free(h2n_conn *conn);
long h2n_recv(h2n_conn *conn, const unsigned char *data, size_t len);
long h2n_send(h2n_conn *conn);
int h2n_respond(h2n_conn *conn, int32_t sid, const unsigned char *raw, size_t len);
int h2n_reset(h2n_conn *conn, int32_t sid, uint32_t code);
int h2n_goaway(h2n_conn *conn, uint32_t code);
int h2n_done(h2n_conn *conn);
double h2n_oldest(h2n_conn *conn);
const char *h2n_strerror(long code);
"""

SOURCE = r"""
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ST_RECEIVING = 0, ST_QUEUED = 1, ST_ANSWERED = 2 };
enum { K_REQUEST = 0, K_BODY_BIG = 1, K_HEAD_BIG = 2 };

typedef struct { unsigned char *p; size_t len, cap; } dbuf;

#define KEEP_CAP 65536  /* a connection's buffers over this are freed once used */

static void dbuf_trim(dbuf *b) {
    b->len = 0;
    if (b->cap > KEEP_CAP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static int dbuf_add(dbuf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

typedef struct h2n_stream {
    int32_t sid;
    int state, kind;
    double opened;
    size_t head_bytes;
    unsigned char method[16];
    size_t method_len;
    dbuf path, extra, body;
    unsigned char *resp;      /* the response, C's own copy; its body is sent from here */
    size_t resp_len, body_at;
    struct h2n_stream *prev, *next;
} h2n_stream;

typedef struct h2n_conn {
    unsigned char *ready;
    unsigned char *out;
    double active;
    int answered;
    int calm;
    int open;
    nghttp2_session *session;
    dbuf readybuf, outbuf;
    int32_t *queue;
    size_t nqueue, capqueue;
    h2n_stream *streams;      /* every stream this side allocated, for h2n_free */
    uint32_t max_head, max_body, max_resets;
    double reset_window;
    uint32_t resets;
} h2n_conn;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void stream_free(h2n_conn *c, h2n_stream *s) {
    if (s->prev) s->prev->next = s->next; else c->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s->path.p);
    free(s->extra.p);
    free(s->body.p);
    free(s->resp);
    free(s);
    c->open--;
}

static void enqueue(h2n_conn *c, h2n_stream *s, int kind) {
    if (s->state != ST_RECEIVING) return;
    if (c->nqueue == c->capqueue) {
        size_t cap = c->capqueue ? c->capqueue * 2 : 64;
        int32_t *q = realloc(c->queue, cap * sizeof(int32_t));
        if (!q) {  /* no memory: refuse the stream rather than lose track of it */
            nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->sid,
                                      NGHTTP2_INTERNAL_ERROR);
            return;
        }
        c->queue = q;
        c->capqueue = cap;
    }
    c->queue[c->nqueue++] = s->sid;
    s->state = ST_QUEUED;
    s->kind = kind;
    c->answered = 1;
    if (kind != K_REQUEST) {  /* what was kept of it is not needed any more */
        free(s->body.p);
        s->body.p = NULL;
        s->body.len = s->body.cap = 0;
    }
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
    h2n_conn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2n_stream *s = calloc(1, sizeof(*s));
    if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->sid = frame->hd.stream_id;
    s->opened = c->active = now();
    s->next = c->streams;
    if (c->streams) c->streams->prev = s;
    c->streams = s;
    c->open++;
    nghttp2_session_set_stream_user_data(session, s->sid, s);
    return 0;
}

#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *ud) {
    h2n_conn *c = ud;
    (void)flags;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;  /* trailers: nothing a query uses */
    h2n_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s || s->kind == K_HEAD_BIG) return 0;
    s->head_bytes += namelen + valuelen + 32;
    if (s->head_bytes > c->max_head) {  /* answered 431 once the block ends */
        s->kind = K_HEAD_BIG;
        return 0;
    }
    int rv = 0;
    if (IS(":method")) {
        if (valuelen > sizeof(s->method)) valuelen = 0;  /* no route has such a method */
        memcpy(s->method, value, valuelen);
        s->method_len = valuelen;
    } else if (IS(":path")) {
        s->path.len = 0;
        rv = dbuf_add(&s->path, value, valuelen);
    } else if (IS("content-type") || IS("accept") || IS("x-forwarded-for")) {
        /* as an HTTP/1.1 header block: "\r\nname: value" (what FastServer.respond reads) */
        rv = dbuf_add(&s->extra, "\r\n", 2) || dbuf_add(&s->extra, name, namelen) ||
             dbuf_add(&s->extra, ": ", 2) || dbuf_add(&s->extra, value, valuelen);
    }
    return rv ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t sid,
                              const uint8_t *data, size_t len, void *ud) {
    h2n_conn *c = ud;
    (void)flags;
    h2n_stream *s = nghttp2_session_get_stream_user_data(session, sid);
    if (!s || s->state != ST_RECEIVING || s->kind != K_REQUEST) return 0;
    if (s->body.len + len > c->max_body) {
        enqueue(c, s, K_BODY_BIG);  /* answered 413 at once; the rest is dropped */
        return 0;
    }
    return dbuf_add(&s->body, data, len) ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud) {
    h2n_conn *c = ud;
    h2n_stream *s;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (!s) break;
        if (frame->hd.type == NGHTTP2_HEADERS && s->kind == K_HEAD_BIG)
            enqueue(c, s, K_HEAD_BIG);
        else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            enqueue(c, s, s->kind);
        break;
    case NGHTTP2_RST_STREAM: {
        double t = now();
        if (t - c->reset_window >= 1.0) {
            c->reset_window = t;
            c->resets = 0;
        }
        if (++c->resets > c->max_resets && !c->calm) {
            c->calm = 1;
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
        }
        break;
    }
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t sid, uint32_t code, void *ud) {
    h2n_conn *c = ud;
    (void)code;
    h2n_stream *s = nghttp2_session_get_stream_user_data(session, sid);
    if (s) {
        nghttp2_session_set_stream_user_data(session, sid, NULL);
        stream_free(c, s);  /* a queued one is skipped by h2n_recv: its user data is gone */
    }
    return 0;
}

static nghttp2_session_callbacks *callbacks;

h2n_conn *h2n_new(uint32_t max_streams, uint32_t max_head, uint32_t max_frame,
                  uint32_t max_body, uint32_t max_resets) {
    if (!callbacks) {
        if (nghttp2_session_callbacks_new(&callbacks)) return NULL;
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    }
    h2n_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->max_head = max_head;
    c->max_body = max_body;
    c->max_resets = max_resets;
    c->active = now();
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt)) {
        free(c);
        return NULL;
    }
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* nghttp2's own reset limit (GOAWAY INTERNAL_ERROR) stays behind ours */
    nghttp2_option_set_stream_reset_rate_limit(opt, 4 * (uint64_t)max_resets, max_resets);
    int rv = nghttp2_session_server_new2(&c->session, callbacks, c, opt);
    nghttp2_option_del(opt);
    if (rv) {
        free(c);
        return NULL;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, max_head},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, max_frame},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 4)) {
        nghttp2_session_del(c->session);
        free(c);
        return NULL;
    }
    return c;
}

void h2n_free(h2n_conn *c) {
    nghttp2_session_del(c->session);  /* calls no callback: the streams are freed here */
    while (c->streams) stream_free(c, c->streams);
    free(c->readybuf.p);
    free(c->outbuf.p);
    free(c->queue);
    free(c);
}

/* Feed received bytes. Returns a negative nghttp2 error (fatal: close the connection) or
   the length of c->ready: the requests completed, each packed as six little-endian
   uint32 (stream id, kind, method, path, headers and body lengths) and those bytes. */
long h2n_recv(h2n_conn *c, const unsigned char *data, size_t len) {
    c->nqueue = 0;
    ssize_t rv = nghttp2_session_mem_recv(c->session, data, len);
    if (rv < 0) return (long)rv;
    dbuf *r = &c->readybuf;
    dbuf_trim(r);
    for (size_t i = 0; i < c->nqueue; i++) {
        h2n_stream *s = nghttp2_session_get_stream_user_data(c->session, c->queue[i]);
        if (!s || s->state != ST_QUEUED) continue;  /* reset by the peer meanwhile */
        uint32_t h[6] = {(uint32_t)s->sid, (uint32_t)s->kind, (uint32_t)s->method_len,
                         (uint32_t)s->path.len, (uint32_t)s->extra.len,
                         (uint32_t)s->body.len};
        if (dbuf_add(r, h, sizeof(h)) || dbuf_add(r, s->method, s->method_len) ||
            dbuf_add(r, s->path.p, s->path.len) || dbuf_add(r, s->extra.p, s->extra.len) ||
            dbuf_add(r, s->body.p, s->body.len))
            return NGHTTP2_ERR_NOMEM;
    }
    c->nqueue = 0;
    c->ready = r->p;
    return (long)r->len;
}

/* Everything nghttp2 has to send, gathered in c->out; its length, or a negative error. */
long h2n_send(h2n_conn *c) {
    dbuf *o = &c->outbuf;
    dbuf_trim(o);
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->session, &p);
        if (n < 0) return (long)n;
        if (n == 0) break;
        if (dbuf_add(o, p, (size_t)n)) return NGHTTP2_ERR_NOMEM;
    }
    c->out = o->p;
    return (long)o->len;
}

static ssize_t read_body(nghttp2_session *session, int32_t sid, uint8_t *buf,
                               size_t length, uint32_t *flags, nghttp2_data_source *src,
                               void *ud) {
    (void)session; (void)sid; (void)ud;
    h2n_stream *s = src->ptr;
    size_t left = s->resp_len - s->body_at;
    size_t n = left < length ? left : length;
    memcpy(buf, s->resp + s->body_at, n);
    s->body_at += n;
    if (s->body_at == s->resp_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void lower(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z') p[i] += 32;
}

#define NV_MAX 64

/* Answer stream sid with an HTTP/1.1-shaped response ("HTTP/1.1 200 OK\r\nName: value
   ...\r\n\r\nbody", as FastServer.respond writes them): its status line and headers
   become HEADERS (names lower-cased, connection-specific ones dropped, RFC 9113 §8.2.2),
   its body DATA, sent as the peer's windows allow. 0, or -1 when the stream is gone. */
int h2n_respond(h2n_conn *c, int32_t sid, const unsigned char *raw, size_t len) {
    h2n_stream *s = nghttp2_session_get_stream_user_data(c->session, sid);
    if (!s || s->state != ST_QUEUED || len < 12) return -1;
    unsigned char *r = malloc(len);
    if (!r) return -1;
    memcpy(r, raw, len);
    nghttp2_nv nv[NV_MAX];
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", r + 9, 7, 3, NGHTTP2_NV_FLAG_NONE};
    unsigned char *end = r + len;
    unsigned char *line = memchr(r, '\n', len);
    size_t body_at = len;
    while (line && ++line < end) {
        unsigned char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        unsigned char *stop = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
        if (stop == line) {  /* the empty line: the body follows */
            body_at = (size_t)(eol + 1 - r);
            break;
        }
        unsigned char *colon = memchr(line, ':', (size_t)(stop - line));
        if (colon && n < NV_MAX) {
            size_t namelen = (size_t)(colon - line);
            unsigned char *v = colon + 1;
            while (v < stop && (*v == ' ' || *v == '\t')) v++;
            unsigned char *ve = stop;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            lower(line, namelen);
            const char *name = (const char *)line;
#define SKIP(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
            if (!(SKIP("connection") || SKIP("keep-alive") || SKIP("transfer-encoding") ||
                  SKIP("upgrade") || SKIP("proxy-connection")))
                nv[n++] = (nghttp2_nv){line, v, namelen, (size_t)(ve - v),
                                       NGHTTP2_NV_FLAG_NONE};
        }
        line = eol;
    }
    free(s->resp);
    s->resp = r;
    s->resp_len = len;
    s->body_at = body_at;
    nghttp2_data_provider prd;
    prd.source.ptr = s;
    prd.read_callback = read_body;
    int rv = nghttp2_submit_response(c->session, sid, nv, n, body_at < len ? &prd : NULL);
    if (rv) return -1;
    s->state = ST_ANSWERED;
    return 0;
}

int h2n_reset(h2n_conn *c, int32_t sid, uint32_t code) {
    h2n_stream *s = nghttp2_session_get_stream_user_data(c->session, sid);
    if (s) s->state = ST_ANSWERED;
    return nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, sid, code);
}

int h2n_goaway(h2n_conn *c, uint32_t code) {
    return nghttp2_session_terminate_session(c->session, code);
}

/* Whether the session is over: it wants neither to read nor to write. */
int h2n_done(h2n_conn *c) {
    return !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session);
}

/* CLOCK_MONOTONIC at which the oldest incomplete request opened, or -1: none. */
double h2n_oldest(h2n_conn *c) {
    double oldest = -1;
    for (h2n_stream *s = c->streams; s; s = s->next)
        if (s->state == ST_RECEIVING && (oldest < 0 || s->opened < oldest)) oldest = s->opened;
    return oldest;
}

const char *h2n_strerror(long code) { return nghttp2_strerror((int)code); }
"""


def builder() -> FFI:
    """The cffi builder of ``httpdns._h2native``."""
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source("httpdns._h2native", SOURCE, libraries=["nghttp2"], extra_compile_args=["-O2"])
    return ffi


def main() -> None:
    """Compile the extension next to this file (into the ``httpdns`` package)."""
    root = Path(__file__).resolve().parent.parent
    build = root / "build" / "h2native"
    build.mkdir(parents=True, exist_ok=True)
    built = Path(builder().compile(tmpdir=str(build), verbose=False))
    target = root / "httpdns" / built.name
    target.write_bytes(built.read_bytes())
    print(f"built {target.relative_to(root)}", file=sys.stderr)


if __name__ == "__main__":
    main()
