/* httpdns._plainget: the plainest GET and /d query, scanned in C (see httpdns/plainget.py).
 *
 * Two functions, each the exact equivalent of httpdns.plainget's Python reference (its
 * regular expressions, parse_ip, and hashing.bucket of Client.key), which the tests compare them to
 * on generated and mutated input (tests/httpdns/test_plainget.py):
 *
 *   scan(data)        -> None | (target, path, dn, ip, family, ttl, bucket)
 *   scan_query(query) -> None | (dn, ip, family, ttl, bucket)
 *
 * Why C: a /d request from a client network no cache holds costs the node a framing
 * match, two query expressions, an address parse and a BLAKE2b of the client's /24 before
 * its one table lookup; in Python that is about 2.5 us of the miss path's 9, here 0.2.
 * Every byte is checked against the grammar before it is used; nothing is allocated until
 * the whole request is known to be of the plainest shape.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

/* ---- BLAKE2b (RFC 7693), unkeyed, 8-byte digest, one block: the bucket's hash ---- */

static const uint64_t IV[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL,
    0xA54FF53A5F1D36F1ULL, 0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL,
    0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};

static const uint8_t SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define G(a, b, c, d, x, y)                                                                \
    do {                                                                                   \
        v[a] = v[a] + v[b] + (x);                                                          \
        v[d] = ROTR(v[d] ^ v[a], 32);                                                      \
        v[c] = v[c] + v[d];                                                                \
        v[b] = ROTR(v[b] ^ v[c], 24);                                                      \
        v[a] = v[a] + v[b] + (y);                                                          \
        v[d] = ROTR(v[d] ^ v[a], 16);                                                      \
        v[c] = v[c] + v[d];                                                                \
        v[b] = ROTR(v[b] ^ v[c], 63);                                                      \
    } while (0)

/* The first two bytes of BLAKE2b-64(key) as a big-endian number (hashing.bucket);
 * len <= 128 (one block: the keys are "4:" or "6:" and at most 17 digits). */
static unsigned bucket_of(const unsigned char *key, size_t len) {
    uint64_t m[16] = {0}, v[16], h0 = IV[0] ^ 0x01010008ULL; /* depth 1, fanout 1, 8 bytes */
    unsigned char block[128] = {0};
    memcpy(block, key, len);
    for (int i = 0; i < 16; i++)
        for (int j = 7; j >= 0; j--) m[i] = (m[i] << 8) | block[8 * i + j];
    v[0] = h0;
    for (int i = 1; i < 8; i++) v[i] = IV[i];
    for (int i = 0; i < 8; i++) v[8 + i] = IV[i];
    v[12] ^= (uint64_t)len; /* bytes hashed so far (the high word stays 0) */
    v[14] = ~v[14];         /* the last block */
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = SIGMA[r];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    h0 ^= v[0] ^ v[8]; /* digest bytes 0..7 are h0, little-endian */
    return (unsigned)((h0 & 0xFF) << 8 | ((h0 >> 8) & 0xFF));
}

/* ---- character classes (plainget.py's expressions) ---- */

enum {
    C_VIS = 1,   /* [!-~]: a request-target byte */
    C_VAL = 2,   /* [\t -~]: a header value byte */
    C_TOK = 4,   /* RFC 9110 tchar: a header name byte */
    C_NAME = 8,  /* [-.0-9A-Z_a-z]: a DNS name byte as sent */
    C_ADDR = 16, /* [.0-9:A-Fa-f]: an address literal byte */
};
static unsigned char CLS[256];

static void classes(void) {
    for (int c = 0x21; c <= 0x7E; c++) CLS[c] |= C_VIS | C_VAL;
    CLS[' '] |= C_VAL;
    CLS['\t'] |= C_VAL;
    for (const char *p = "!#$%&'*+-.^_`|~"; *p; p++) CLS[(unsigned char)*p] |= C_TOK;
    for (int c = '0'; c <= '9'; c++) CLS[c] |= C_TOK | C_NAME | C_ADDR;
    for (int c = 'A'; c <= 'Z'; c++) CLS[c] |= C_TOK | C_NAME;
    for (int c = 'a'; c <= 'z'; c++) CLS[c] |= C_TOK | C_NAME;
    for (const char *p = "ABCDEFabcdef.:"; *p; p++) CLS[(unsigned char)*p] |= C_ADDR;
    CLS['-'] |= C_NAME;
    CLS['.'] |= C_NAME;
    CLS['_'] |= C_NAME;
}

/* Whether [p, p + n) is `word` in any ASCII case (word in lower case). */
static int is_word(const unsigned char *p, size_t n, const char *word) {
    size_t k = strlen(word);
    if (n != k) return 0;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != (unsigned char)word[i]) return 0;
    }
    return 1;
}

/* The length of the run of bytes of class `cls` from p (at most n). */
static size_t run(const unsigned char *p, size_t n, unsigned cls) {
    size_t i = 0;
    while (i < n && (CLS[p[i]] & cls)) i++;
    return i;
}

/* ---- the /d query: dn=NAME&ip=ADDRESS or ip=ADDRESS&dn=NAME, then perhaps &ttl=1 ---- */

typedef struct {
    const unsigned char *dn;
    size_t dn_len;
    unsigned char ip[16]; /* big-endian; IPv4 in the last 4 bytes */
    int family;
    int ttl;
    unsigned bucket;
} lane_query;

/* A name of 1..254 bytes at p (possessive: a longer run is no match); its length or 0. */
static size_t name_at(const unsigned char *p, size_t n) {
    size_t k = run(p, n, C_NAME);
    return k >= 1 && k <= 254 ? k : 0;
}

/* An address literal of 2..45 bytes at p; its length or 0. */
static size_t address_at(const unsigned char *p, size_t n) {
    size_t k = run(p, n, C_ADDR);
    return k >= 2 && k <= 45 ? k : 0;
}

/* The address as parse_ip reads it (IPv4, else IPv6 with IPv4-mapped as IPv4), and the
 * bucket of its client key; 0 when it is not an address. */
static int parse_address(const unsigned char *p, size_t n, lane_query *q) {
    char text[46], key[24];
    memcpy(text, p, n);
    text[n] = 0;
    memset(q->ip, 0, 16);
    int len;
    if (!memchr(p, ':', n)) {
        if (inet_pton(AF_INET, text, q->ip + 12) != 1) return 0;
        q->family = 4;
    } else {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (inet_pton(AF_INET6, text, q->ip) != 1) return 0;
        if (memcmp(q->ip, mapped, 12) == 0) {
            memset(q->ip, 0, 12);
            q->family = 4;
        } else {
            q->family = 6;
        }
    }
    if (q->family == 4) { /* "4:%d" % (ip >> 8) */
        unsigned v = (unsigned)q->ip[12] << 16 | (unsigned)q->ip[13] << 8 | q->ip[14];
        len = snprintf(key, sizeof key, "4:%u", v);
    } else { /* "6:%d" % (ip >> 72): the first 7 bytes */
        unsigned long long v = 0;
        for (int i = 0; i < 7; i++) v = v << 8 | q->ip[i];
        len = snprintf(key, sizeof key, "6:%llu", v);
    }
    q->bucket = bucket_of((const unsigned char *)key, (size_t)len);
    return 1;
}

/* Whether `query` (n bytes) is of the lane's shape with a valid address; fills q. */
static int scan_lane(const unsigned char *s, size_t n, lane_query *q) {
    const unsigned char *addr;
    size_t i, k, addr_len;
    if (n >= 3 && memcmp(s, "dn=", 3) == 0) {
        if (!(k = name_at(s + 3, n - 3))) return 0;
        q->dn = s + 3, q->dn_len = k;
        i = 3 + k;
        if (n - i < 4 || memcmp(s + i, "&ip=", 4) != 0) return 0;
        i += 4;
        if (!(k = address_at(s + i, n - i))) return 0;
        addr = s + i, addr_len = k;
        i += k;
    } else if (n >= 3 && memcmp(s, "ip=", 3) == 0) {
        if (!(k = address_at(s + 3, n - 3))) return 0;
        addr = s + 3, addr_len = k;
        i = 3 + k;
        if (n - i < 4 || memcmp(s + i, "&dn=", 4) != 0) return 0;
        i += 4;
        if (!(k = name_at(s + i, n - i))) return 0;
        q->dn = s + i, q->dn_len = k;
        i += k;
    } else {
        return 0;
    }
    if (i == n) {
        q->ttl = 0;
    } else if (n - i == 6 && memcmp(s + i, "&ttl=1", 6) == 0) {
        q->ttl = 1;
    } else {
        return 0;
    }
    return parse_address(addr, addr_len, q);
}

/* (dn, ip, family, ttl, bucket) of a scanned query, after (first, second) when given. */
static PyObject *lane_tuple(const lane_query *q, PyObject *first, PyObject *second) {
    PyObject *out = NULL, *ip;
    if (q->family == 4)
        ip = PyLong_FromUnsignedLong((unsigned long)q->ip[12] << 24 | (unsigned long)q->ip[13] << 16 |
                                     (unsigned long)q->ip[14] << 8 | q->ip[15]);
    else
        ip = _PyLong_FromByteArray(q->ip, 16, 0, 0);
    PyObject *dn = PyBytes_FromStringAndSize((const char *)q->dn, (Py_ssize_t)q->dn_len);
    PyObject *family = PyLong_FromLong(q->family), *ttl = PyBool_FromLong(q->ttl);
    PyObject *bucket = PyLong_FromUnsignedLong(q->bucket);
    if (ip && dn && family && bucket) {
        if (first == NULL)
            out = PyTuple_Pack(5, dn, ip, family, ttl, bucket);
        else
            out = PyTuple_Pack(7, first, second, dn, ip, family, ttl, bucket);
    }
    Py_XDECREF(ip), Py_XDECREF(dn), Py_XDECREF(family), Py_XDECREF(ttl), Py_XDECREF(bucket);
    return out;
}

static PyObject *scan_query(PyObject *self, PyObject *arg) {
    lane_query q;
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "scan_query takes bytes");
        return NULL;
    }
    if (!scan_lane((const unsigned char *)PyBytes_AS_STRING(arg), (size_t)PyBytes_GET_SIZE(arg),
                   &q))
        Py_RETURN_NONE;
    return lane_tuple(&q, NULL, NULL);
}

/* ---- the request: plainget.SIMPLE_GET ---- */

/* The end of one header line's value from p ([\t -~]* then CRLF), or NULL. */
static const unsigned char *line_end(const unsigned char *p, const unsigned char *end) {
    p += run(p, (size_t)(end - p), C_VAL);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return NULL;
    return p + 2;
}

/* Whether the value [p, end of line) is `[\t ]*keep-alive[\t ]*` in any case. */
static int keep_alive(const unsigned char *p, const unsigned char *eol) {
    while (p < eol && (*p == ' ' || *p == '\t')) p++;
    if (eol - p < 10 || !is_word(p, 10, "keep-alive")) return 0;
    p += 10;
    while (p < eol && (*p == ' ' || *p == '\t')) p++;
    return p == eol;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "scan takes bytes");
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(arg), *p, *end, *next;
    size_t n = (size_t)PyBytes_GET_SIZE(arg), target_len;
    end = s + n;
    if (n < 5 || memcmp(s, "GET /", 5) != 0) Py_RETURN_NONE;
    target_len = run(s + 4, n - 4, C_VIS);
    p = s + 4 + target_len;
    if ((size_t)(end - p) < 11 || memcmp(p, " HTTP/1.1\r\n", 11) != 0) Py_RETURN_NONE;
    p += 11;
    /* Host first */
    if (end - p < 5 || !is_word(p, 4, "host") || p[4] != ':') Py_RETURN_NONE;
    if ((p = line_end(p + 5, end)) == NULL) Py_RETURN_NONE;
    for (;;) {
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            if (p + 2 != end) Py_RETURN_NONE;
            break;
        }
        size_t k = run(p, (size_t)(end - p), C_TOK);
        if (k == 0 || p + k >= end || p[k] != ':') Py_RETURN_NONE;
        if (is_word(p, k, "content-length") || is_word(p, k, "transfer-encoding") ||
            is_word(p, k, "upgrade") || is_word(p, k, "expect") || is_word(p, k, "host"))
            Py_RETURN_NONE;
        if ((next = line_end(p + k + 1, end)) == NULL) Py_RETURN_NONE;
        if ((is_word(p, k, "connection") || is_word(p, k, "proxy-connection")) &&
            !keep_alive(p + k + 1, next - 2))
            Py_RETURN_NONE;
        p = next;
    }
    /* the request is of the plainest shape: its target, path and (perhaps) lane query */
    const unsigned char *target = s + 4, *mark = memchr(target, '?', target_len);
    size_t path_len = mark ? (size_t)(mark - target) : target_len;
    PyObject *t = PyBytes_FromStringAndSize((const char *)target, (Py_ssize_t)target_len);
    if (t == NULL) return NULL;
    PyObject *path = PyBytes_FromStringAndSize((const char *)target, (Py_ssize_t)path_len);
    if (path == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    lane_query q;
    PyObject *out;
    if (mark && scan_lane(mark + 1, target_len - path_len - 1, &q)) {
        out = lane_tuple(&q, t, path);
    } else {
        out = Py_BuildValue("(OOOiiOi)", t, path, Py_None, 0, 0, Py_False, 0);
    }
    Py_DECREF(t);
    Py_DECREF(path);
    return out;
}

static PyMethodDef METHODS[] = {
    {"scan", scan, METH_O,
     "scan(data) -> None | (target, path, dn, ip, family, ttl, bucket): plainget.scan."},
    {"scan_query", scan_query, METH_O,
     "scan_query(query) -> None | (dn, ip, family, ttl, bucket): plainget.scan_query."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_plainget",
                                    "The plainest GET and /d query, scanned in C.", -1, METHODS};

PyMODINIT_FUNC PyInit__plainget(void) {
    classes();
    return PyModule_Create(&MODULE);
}
