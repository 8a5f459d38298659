/* registry._rowhash: a store's load loop in C, for the three kinds a lazy load keeps raw
 * (see RecordsDecoder.add_hashed in registry/snapshot.py, its Python definition, which
 * tests/registry/test_rowhash.py holds this to).
 *
 *   take_fields(flat, endpoints, services, releases, other) -> (count, total)
 *       flat: a Redis HSCAN reply's list, [b"kind\x1fkey", record JSON, ...]
 *   take_rows(rows, endpoints, services, releases, other) -> (count, total)
 *       rows: an iterable of (kind, key, record JSON), as SQLite returns them
 *
 * Each record of kind service, release or endpoint whose name is ASCII is hashed
 * (registry/digest.py: the first six bytes of SHA-1 over "kind\x1fkey\n" + JSON, summed
 * modulo 2**48 into total, counted in count) and filed raw: services[key] = JSON,
 * releases[key] = JSON, endpoints[service].append(JSON) with service the key up to its
 * first "/", every dict key an interned str. Any other record is handed, in its turn, to
 * other(field, JSON) or other(kind, key, JSON), the Python definition for one record,
 * which alone decides what a name that is not ASCII or a kind decoded on load means.
 *
 * Why C: at 100,000 services a start reads 600,000 records; the Python loop spends about
 * 3 us on each, most of a Redis start's budget. SHA-1 is OpenSSL's, as hashlib's is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define MASK48 ((UINT64_C(1) << 48) - 1)
#define SEP '\x1f'

enum kind { OTHER, SERVICE, RELEASE, ENDPOINT };

typedef struct {
    EVP_MD_CTX *ctx;
    PyObject *endpoints, *services, *releases, *other;
    Py_ssize_t count;
    uint64_t total;
} loader;

static EVP_MD *sha1_md;

static enum kind kind_of(const char *s, Py_ssize_t n) {
    if (n == 7 && memcmp(s, "service", 7) == 0)
        return SERVICE;
    if (n == 7 && memcmp(s, "release", 7) == 0)
        return RELEASE;
    if (n == 8 && memcmp(s, "endpoint", 8) == 0)
        return ENDPOINT;
    return OTHER;
}

static int ascii(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

typedef struct {
    const void *p;
    Py_ssize_t n;
} part;

/* SHA-1 over the parts in order; its first six bytes, big-endian, added to the total. */
static int hash_record(loader *ld, const part *parts, int n) {
    unsigned char md[EVP_MAX_MD_SIZE];
    int ok = EVP_DigestInit_ex2(ld->ctx, NULL, NULL);
    for (int i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ld->ctx, parts[i].p, parts[i].n);
    if (!ok || !EVP_DigestFinal_ex(ld->ctx, md, NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-1 failed");
        return -1;
    }
    uint64_t h = 0;
    for (int i = 0; i < 6; i++)
        h = (h << 8) | md[i];
    ld->total = (ld->total + h) & MASK48;
    ld->count++;
    return 0;
}

/* File one hashed record's JSON by kind and key (ASCII). The service an endpoint belongs
 * to is interned only when first seen: later ones find the interned key in endpoints (a
 * lookup in the interpreter's table of every interned str is the costliest step here). */
static int file(loader *ld, enum kind kind, const char *key, Py_ssize_t n, PyObject *value) {
    if (kind == ENDPOINT) {
        const char *slash = memchr(key, '/', n);
        if (slash != NULL)
            n = slash - key;
    }
    PyObject *name = PyUnicode_DecodeASCII(key, n, NULL), *raws = NULL;
    if (name == NULL)
        return -1;
    int rc = -1;
    if (kind == ENDPOINT) {
        raws = PyDict_GetItemWithError(ld->endpoints, name); /* borrowed */
        if (raws != NULL) {
            rc = PyList_Append(raws, value);
            goto done;
        }
        if (PyErr_Occurred() || (raws = PyList_New(1)) == NULL)
            goto done;
        Py_INCREF(value);
        PyList_SET_ITEM(raws, 0, value);
        value = raws;
    }
    PyUnicode_InternInPlace(&name);
    rc = PyDict_SetItem(kind == ENDPOINT  ? ld->endpoints
                        : kind == SERVICE ? ld->services
                                          : ld->releases,
                        name, value);
    if (kind == ENDPOINT)
        Py_DECREF(raws);
done:
    Py_DECREF(name);
    return rc;
}

/* One batch item: 1 when taken, 0 when it is other's, -1 on error. */
static int take_field(loader *ld, PyObject *field, PyObject *value) {
    if (!PyBytes_Check(field) || !PyBytes_Check(value))
        return 0;
    const char *f = PyBytes_AS_STRING(field);
    Py_ssize_t n = PyBytes_GET_SIZE(field);
    const char *sep = memchr(f, SEP, n);
    if (sep == NULL || !ascii(f, n))
        return 0;
    enum kind kind = kind_of(f, sep - f);
    if (kind == OTHER)
        return 0;
    part parts[] = {{f, n}, {"\n", 1}, {PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)}};
    if (hash_record(ld, parts, 3) < 0)
        return -1;
    return file(ld, kind, sep + 1, f + n - sep - 1, value) < 0 ? -1 : 1;
}

/* One row (kind, key, JSON): 1 when taken, 0 when it is other's, -1 on error. */
static int take_row(loader *ld, PyObject *row) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 3)
        return 0;
    PyObject *k = PyTuple_GET_ITEM(row, 0), *key = PyTuple_GET_ITEM(row, 1);
    PyObject *value = PyTuple_GET_ITEM(row, 2);
    if (!PyUnicode_Check(k) || !PyUnicode_Check(key) || !PyBytes_Check(value) ||
        !PyUnicode_IS_ASCII(k) || !PyUnicode_IS_ASCII(key))
        return 0;
    const char *ks = (const char *)PyUnicode_DATA(k);
    enum kind kind = kind_of(ks, PyUnicode_GET_LENGTH(k));
    if (kind == OTHER)
        return 0;
    const char *kd = (const char *)PyUnicode_DATA(key);
    Py_ssize_t kn = PyUnicode_GET_LENGTH(key);
    part parts[] = {{ks, PyUnicode_GET_LENGTH(k)}, {"\x1f", 1}, {kd, kn}, {"\n", 1},
                    {PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)}};
    if (hash_record(ld, parts, 5) < 0)
        return -1;
    return file(ld, kind, kd, kn, value) < 0 ? -1 : 1;
}

static int other(loader *ld, PyObject *args) {
    if (args == NULL)
        return -1;
    PyObject *got = PyObject_Call(ld->other, args, NULL);
    Py_DECREF(args);
    if (got == NULL)
        return -1;
    Py_DECREF(got);
    return 0;
}

static PyObject *run(PyObject *args, int fields) {
    PyObject *source;
    loader ld = {0};
    if (!PyArg_ParseTuple(args, "OO!O!O!O:take", &source, &PyDict_Type, &ld.endpoints,
                          &PyDict_Type, &ld.services, &PyDict_Type, &ld.releases, &ld.other))
        return NULL;
    if (fields && !PyList_Check(source)) {
        PyErr_SetString(PyExc_TypeError, "take_fields: flat must be a list");
        return NULL;
    }
    ld.ctx = EVP_MD_CTX_new();
    if (ld.ctx == NULL || !EVP_DigestInit_ex2(ld.ctx, sha1_md, NULL)) {
        EVP_MD_CTX_free(ld.ctx);
        return PyErr_NoMemory();
    }
    int rc = 0;
    if (fields) {
        /* the list may change under other(): its size and items are read at each step */
        for (Py_ssize_t i = 0; rc >= 0 && i + 1 < PyList_GET_SIZE(source); i += 2) {
            PyObject *field = PyList_GET_ITEM(source, i), *value = PyList_GET_ITEM(source, i + 1);
            Py_INCREF(field);
            Py_INCREF(value);
            rc = take_field(&ld, field, value);
            if (rc == 0)
                rc = other(&ld, PyTuple_Pack(2, field, value));
            Py_DECREF(field);
            Py_DECREF(value);
        }
    } else {
        PyObject *it = PyObject_GetIter(source), *row;
        if (it == NULL)
            rc = -1;
        while (rc >= 0 && (row = PyIter_Next(it)) != NULL) {
            rc = take_row(&ld, row);
            if (rc == 0)
                rc = other(&ld, PySequence_Tuple(row));
            Py_DECREF(row);
        }
        if (rc >= 0 && PyErr_Occurred())
            rc = -1;
        Py_XDECREF(it);
    }
    EVP_MD_CTX_free(ld.ctx);
    if (rc < 0)
        return NULL;
    return Py_BuildValue("(nK)", ld.count, (unsigned long long)ld.total);
}

static PyObject *take_fields(PyObject *self, PyObject *args) { return run(args, 1); }

static PyObject *take_rows(PyObject *self, PyObject *args) { return run(args, 0); }

static PyMethodDef methods[] = {
    {"take_fields", take_fields, METH_VARARGS,
     "take_fields(flat, endpoints, services, releases, other) -> (count, total): hash and\n"
     "file a Redis HSCAN reply's service, release and endpoint records; other(field, value)\n"
     "for every other one, in order."},
    {"take_rows", take_rows, METH_VARARGS,
     "take_rows(rows, endpoints, services, releases, other) -> (count, total): the same for\n"
     "(kind, key, value) rows; other(kind, key, value) for every other row, in order."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rowhash",
                                    "A store's load loop in C (registry/snapshot.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__rowhash(void) {
    sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
    if (sha1_md == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-1");
        return NULL;
    }
    return PyModule_Create(&module);
}
