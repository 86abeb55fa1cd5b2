/* The hot loops of credcheck in C: Bloom bit positions, batched set/test, binary fuse filter construction and
 * lookups, leaked-set line parsing, the rendering of range lines, and an audit's account lines (parsed, answered).
 *
 * _kernels_py.py implements exactly the same functions in numpy; the tests check that both give
 * bit-identical filters and identical answers. Keep the two in step (docs/FORMAT.md is the contract).
 *
 * Bit positions of a key (its first 16 bytes, read as two little-endian uint64 h1 and h2):
 *     g_i = h1 + i * (h2 | 1)   (mod 2^64),  i = 0 .. k-1
 *     pos_i = floor(g_i * m / 2^64)          (the high word of a 64x64 -> 128-bit product)
 * Bit p lives in byte p / 8, under mask 1 << (p % 8).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 0)
#define PREFETCH_W(p) __builtin_prefetch((p), 1, 0)
#else
#define PREFETCH(p) ((void)0)
#define PREFETCH_W(p) ((void)0)
#endif

#define BATCH 64
#define ADD_BATCH 16

static inline uint64_t load_le64(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8); /* one unaligned load */
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

static inline uint64_t mulhi64(uint64_t a, uint64_t b) {
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
}

static int check_args(Py_buffer *bits, unsigned long long m, int k, Py_ssize_t keylen, Py_ssize_t stride) {
    if (k < 1 || k > 64) {
        PyErr_SetString(PyExc_ValueError, "k must be between 1 and 64");
        return -1;
    }
    if (m == 0 || (unsigned long long)bits->len * 8ULL < m) {
        PyErr_SetString(PyExc_ValueError, "bit array is smaller than m bits");
        return -1;
    }
    if (stride < 16) {
        PyErr_SetString(PyExc_ValueError, "keys must be at least 16 bytes");
        return -1;
    }
    if (keylen % stride != 0) {
        PyErr_SetString(PyExc_ValueError, "key buffer length is not a multiple of the key size");
        return -1;
    }
    return 0;
}

/* add(bits, m, k, keys, stride) -> number of keys that set at least one new bit */
static PyObject *k_add(PyObject *self, PyObject *args) {
    Py_buffer bits, keys;
    unsigned long long m;
    int k;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "w*Kiy*n", &bits, &m, &k, &keys, &stride)) return NULL;
    if (check_args(&bits, m, k, keys.len, stride) < 0) {
        PyBuffer_Release(&bits);
        PyBuffer_Release(&keys);
        return NULL;
    }
    unsigned char *b = (unsigned char *)bits.buf;
    const unsigned char *kp = (const unsigned char *)keys.buf;
    Py_ssize_t n = keys.len / stride;
    unsigned long long fresh = 0;
    uint64_t pos[ADD_BATCH][64];
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t base = 0; base < n; base += ADD_BATCH) {
        Py_ssize_t cnt = n - base < ADD_BATCH ? n - base : ADD_BATCH;
        for (Py_ssize_t j = 0; j < cnt; j++) {
            const unsigned char *key = kp + (base + j) * stride;
            uint64_t g = load_le64(key), h2 = load_le64(key + 8) | 1;
            for (int i = 0; i < k; i++, g += h2) {
                uint64_t p = mulhi64(g, m);
                pos[j][i] = p;
                PREFETCH_W(b + (p >> 3));
            }
        }
        for (Py_ssize_t j = 0; j < cnt; j++) {
            unsigned char changed = 0;
            for (int i = 0; i < k; i++) {
                uint64_t p = pos[j][i];
                unsigned char mask = (unsigned char)(1u << (p & 7));
                changed |= (unsigned char)(~b[p >> 3] & mask);
                b[p >> 3] |= mask;
            }
            fresh += changed != 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&bits);
    PyBuffer_Release(&keys);
    return PyLong_FromUnsignedLongLong(fresh);
}

/* contains_many(bits, m, k, keys, stride, out) -> number of keys found; out[j] = 1 or 0.
 * Works in rounds over a batch: round i tests bit i of every key still alive, with all of that
 * round's loads prefetched together, so misses overlap and non-members stop at their first 0 bit. */
static PyObject *k_contains_many(PyObject *self, PyObject *args) {
    Py_buffer bits, keys, out;
    unsigned long long m;
    int k;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*Kiy*nw*", &bits, &m, &k, &keys, &stride, &out)) return NULL;
    PyObject *result = NULL;
    if (check_args(&bits, m, k, keys.len, stride) < 0) goto done;
    Py_ssize_t n = keys.len / stride;
    if (out.len < n) {
        PyErr_SetString(PyExc_ValueError, "output buffer is too small");
        goto done;
    }
    const unsigned char *b = (const unsigned char *)bits.buf;
    const unsigned char *kp = (const unsigned char *)keys.buf;
    unsigned char *o = (unsigned char *)out.buf;
    unsigned long long found = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t g[BATCH], h2[BATCH], pos[BATCH];
    int alive[BATCH];
    for (Py_ssize_t base = 0; base < n; base += BATCH) {
        int cnt = (int)(n - base < BATCH ? n - base : BATCH);
        for (int j = 0; j < cnt; j++) {
            const unsigned char *key = kp + (base + j) * stride;
            g[j] = load_le64(key);
            h2[j] = load_le64(key + 8) | 1;
            alive[j] = j;
            o[base + j] = 1;
        }
        int na = cnt;
        for (int i = 0; i < k && na > 0; i++) {
            for (int a = 0; a < na; a++) {
                int j = alive[a];
                uint64_t p = mulhi64(g[j], m);
                pos[a] = p;
                g[j] += h2[j];
                PREFETCH(b + (p >> 3));
            }
            int nn = 0;
            for (int a = 0; a < na; a++) {
                int j = alive[a];
                uint64_t p = pos[a];
                if ((b[p >> 3] >> (p & 7)) & 1)
                    alive[nn++] = j;
                else
                    o[base + j] = 0;
            }
            na = nn;
        }
        found += (unsigned long long)na;
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromUnsignedLongLong(found);
done:
    PyBuffer_Release(&bits);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&out);
    return result;
}

/* contains(bits, m, k, key) -> bool, for one key (the `in` operator). */
static PyObject *k_contains(PyObject *self, PyObject *args) {
    Py_buffer bits, key;
    unsigned long long m;
    int k;
    if (!PyArg_ParseTuple(args, "y*Kiy*", &bits, &m, &k, &key)) return NULL;
    if (check_args(&bits, m, k, key.len, key.len) < 0) {
        PyBuffer_Release(&bits);
        PyBuffer_Release(&key);
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)bits.buf;
    const unsigned char *kp = (const unsigned char *)key.buf;
    uint64_t g = load_le64(kp), h2 = load_le64(kp + 8) | 1;
    int hit = 1;
    for (int i = 0; i < k; i++, g += h2) {
        uint64_t p = mulhi64(g, m);
        if (!((b[p >> 3] >> (p & 7)) & 1)) {
            hit = 0;
            break;
        }
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&key);
    return PyBool_FromLong(hit);
}

static const signed char HEXVAL[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9,
    ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
}; /* value + 1; 0 means "not a hex digit" */

#define MAX_COUNT 4294967295ULL
#define MAX_COUNT_DIGITS 10

/* parse_lines(buf, with_counts, hexlen, digests_out, counts_out, bad_out[, shape])
 *   -> (lines, good, bad, overflow_line)
 * Lines end at '\n' (one trailing '\r' is dropped); a final line without '\n' counts. A good line is
 * exactly hexlen hex digits, then (with_counts) a separator and 1..10 decimal digits. Good digests go
 * to digests_out (hexlen/2 bytes each), their counts (uint64; 1 without counts) to counts_out, and the
 * 0-based indices of bad lines to bad_out (int64). A well-formed count above 2^32-1 stops parsing:
 * overflow_line is its index (else -1).
 * shape (default 0: HEX and HEX:COUNT) describes the other shapes dumps come in, for the whole buffer:
 *   bits 0-7   SHAPE_SEP           the separator before the count (0 means ':')
 *   0x100      SHAPE_QUOTED_HEX    the digest is in double quotes ("HEX")
 *   0x200      SHAPE_QUOTED_COUNT  the count is in double quotes ("COUNT"; with_counts only)
 *   0x400      SHAPE_PLUS          a '+' may stand before the count's digits (with_counts only)
 *   0x800      SHAPE_NUL           one NUL just before the line end (after the '\r' is dropped) is dropped
 * A long run of digits in a count that is otherwise well-formed is a too-large count (overflow), not a
 * malformed line. */
#define SHAPE_SEP 0xFF
#define SHAPE_QUOTED_HEX 0x100
#define SHAPE_QUOTED_COUNT 0x200
#define SHAPE_PLUS 0x400
#define SHAPE_NUL 0x800
#define SHAPE_ALL 0xFFF

static PyObject *k_parse_lines(PyObject *self, PyObject *args) {
    Py_buffer buf, dig, cnt, bad;
    int with_counts, hexlen, shape = 0;
    if (!PyArg_ParseTuple(args, "y*iiw*w*w*|i", &buf, &with_counts, &hexlen, &dig, &cnt, &bad, &shape)) return NULL;
    PyObject *result = NULL;
    if (hexlen <= 0 || hexlen % 2 || hexlen > 128) {
        PyErr_SetString(PyExc_ValueError, "hexlen must be even and between 2 and 128");
        goto done;
    }
    if (shape < 0 || shape > SHAPE_ALL) {
        PyErr_SetString(PyExc_ValueError, "shape must be between 0 and 0xFFF");
        goto done;
    }
    const unsigned char *s = (const unsigned char *)buf.buf;
    Py_ssize_t len = buf.len, dsize = hexlen / 2;
    const unsigned char sep = (shape & SHAPE_SEP) ? (unsigned char)(shape & SHAPE_SEP) : ':';
    const Py_ssize_t quote = (shape & SHAPE_QUOTED_HEX) ? 1 : 0;
    const Py_ssize_t past_digest = hexlen + 2 * quote; /* where the digest (and its quotes) end */
    /* room for this many lines (the caller sizes the buffers for count('\n') + 1; checked as we go) */
    Py_ssize_t room = dig.len / dsize;
    if (cnt.len / 8 < room) room = cnt.len / 8;
    if (bad.len / 8 < room) room = bad.len / 8;
    int too_small = 0;
    unsigned char *d = (unsigned char *)dig.buf;
    uint64_t *c = (uint64_t *)cnt.buf;
    int64_t *bl = (int64_t *)bad.buf;
    Py_ssize_t lines = 0, good = 0, nbad = 0, overflow = -1;
    Py_ssize_t start = 0;
    Py_BEGIN_ALLOW_THREADS
    while (start < len) {
        if (lines >= room) {
            too_small = 1;
            break;
        }
        const unsigned char *nl = memchr(s + start, '\n', (size_t)(len - start));
        Py_ssize_t end = nl ? (Py_ssize_t)(nl - s) : len;
        Py_ssize_t next = nl ? end + 1 : len;
        if (end > start && s[end - 1] == '\r') end--;
        if ((shape & SHAPE_NUL) && end > start && s[end - 1] == 0) end--;
        const unsigned char *line = s + start;
        Py_ssize_t ll = end - start;
        int ok = ll >= past_digest;
        if (ok && quote && (line[0] != '"' || line[hexlen + 1] != '"')) ok = 0;
        if (ok) {
            const unsigned char *hex = line + quote;
            unsigned char *out = d + good * dsize;
            for (Py_ssize_t i = 0; i < dsize; i++) {
                int hi = HEXVAL[hex[2 * i]], lo = HEXVAL[hex[2 * i + 1]];
                if (!hi || !lo) {
                    ok = 0;
                    break;
                }
                out[i] = (unsigned char)(((hi - 1) << 4) | (lo - 1));
            }
        }
        uint64_t value = 1;
        if (ok && with_counts) {
            /* the count's digits are line[first .. last) */
            Py_ssize_t first = past_digest + 1, last = ll;
            int shaped = ll > past_digest && line[past_digest] == sep;
            if (shaped && (shape & SHAPE_QUOTED_COUNT)) {
                shaped = ll - first >= 2 && line[first] == '"' && line[ll - 1] == '"';
                first++;
                last--;
            }
            if (shaped && (shape & SHAPE_PLUS) && first < last && line[first] == '+') first++;
            Py_ssize_t nd = last - first;
            if (!shaped || nd < 1 || nd > MAX_COUNT_DIGITS) {
                ok = 0;
                /* a long run of digits is still a (too large) count, not a malformed line */
                if (shaped && nd > MAX_COUNT_DIGITS) {
                    int digits = 1;
                    for (Py_ssize_t i = first; i < last; i++)
                        if (line[i] < '0' || line[i] > '9') { digits = 0; break; }
                    if (digits) { overflow = lines; break; }
                }
            } else {
                value = 0;
                for (Py_ssize_t i = first; i < last; i++) {
                    unsigned char ch = line[i];
                    if (ch < '0' || ch > '9') {
                        ok = 0;
                        break;
                    }
                    value = value * 10 + (uint64_t)(ch - '0');
                }
                if (ok && value > MAX_COUNT) {
                    overflow = lines;
                    break;
                }
            }
        } else if (ok && ll != past_digest) {
            ok = 0;
        }
        if (ok) {
            c[good++] = value;
        } else {
            bl[nbad++] = lines;
        }
        lines++;
        start = next;
    }
    Py_END_ALLOW_THREADS
    if (too_small) {
        PyErr_SetString(PyExc_ValueError, "output buffers are too small");
        goto done;
    }
    result = Py_BuildValue("nnnn", lines, good, nbad, overflow);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&dig);
    PyBuffer_Release(&cnt);
    PyBuffer_Release(&bad);
    return result;
}

/* render_lines(rows, width, counts, out) -> bytes written
 * The HIBP range lines of n rows: each row is `width` digest bytes (from the digest's third byte on), shown
 * as upper-case hex without its first digit (the prefix's fifth), then ':', the row's count (uint32, plain
 * decimal) and "\r\n" -- after every line, the last one included (a range body drops the final two bytes).
 * n is len(counts) / 4; rows must hold n * width bytes and out at least n * (2 * width + 12). */
static const char HEXUP[16] = "0123456789ABCDEF";

static PyObject *k_render_lines(PyObject *self, PyObject *args) {
    Py_buffer rows, cnt, out;
    int width;
    if (!PyArg_ParseTuple(args, "y*iy*w*", &rows, &width, &cnt, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cnt.len / 4;
    if (width < 1 || width > 64 || cnt.len % 4) {
        PyErr_SetString(PyExc_ValueError, "width must be between 1 and 64 and counts whole uint32s");
        goto done;
    }
    if (rows.len != n * width) {
        PyErr_SetString(PyExc_ValueError, "rows must hold len(counts) rows of width bytes");
        goto done;
    }
    if (out.len < n * (2 * (Py_ssize_t)width + 12)) {
        PyErr_SetString(PyExc_ValueError, "output buffer is too small");
        goto done;
    }
    const unsigned char *r = (const unsigned char *)rows.buf, *cb = (const unsigned char *)cnt.buf;
    unsigned char *o = (unsigned char *)out.buf;
    Py_ssize_t at = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *row = r + i * width;
        o[at++] = (unsigned char)HEXUP[row[0] & 15];
        for (int j = 1; j < width; j++) {
            o[at++] = (unsigned char)HEXUP[row[j] >> 4];
            o[at++] = (unsigned char)HEXUP[row[j] & 15];
        }
        o[at++] = ':';
        const unsigned char *cp = cb + 4 * i;
        uint32_t value = (uint32_t)cp[0] | ((uint32_t)cp[1] << 8) | ((uint32_t)cp[2] << 16) | ((uint32_t)cp[3] << 24);
        char digits[10];
        int nd = 0;
        do {
            digits[nd++] = (char)('0' + value % 10);
            value /= 10;
        } while (value);
        while (nd) o[at++] = (unsigned char)digits[--nd];
        o[at++] = '\r';
        o[at++] = '\n';
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(at);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cnt);
    PyBuffer_Release(&out);
    return result;
}

/* parse_accounts(buf, fmt, hexlen, max_line, rows_out, spans_out, codes_out, flags_out) -> (lines, good)
 * The lines of an audit: bare hex digests (fmt ACCOUNT_BARE), ACCOUNT:HEX lines (ACCOUNT_USER; the
 * account ends at the first ':' or tab) or pwdump lines ACCOUNT:RID:LMHASH:NTHASH:... (ACCOUNT_PWDUMP,
 * hexlen 32; whatever follows the NT hash's ':' is pwdump's free fields). hexlen is 40 or 32.
 * Lines end at '\n', "\r\n" or a lone '\r'; a final line without an end counts. A line longer than max_line
 * bytes (its end not counted) is ACCOUNT_TOO_LONG; otherwise one NUL just before its end is dropped, then
 * the spaces and tabs at both of its ends (and, in a user line, those after the separator).
 * For each line i: codes_out[i] (uint8) is 0 for a good line, else the first fault found, in this order:
 *   1 EMPTY       nothing left                  2 TOO_LONG     longer than max_line
 *   3 NOT_SHAPE   not a line of the format (RID: 1..10 digits; LM: 32 hex digits or NO_PASSWORD)
 *   4 AMBIGUOUS   with ACCOUNT_AUTO: a user line whose account is itself 32 or 40 hex digits
 *   5 EMPTY_NAME  nothing before the separator  6 OTHER_WIDTH  a digest of the other width (40 <-> 32)
 *   7 NO_NT       pwdump's NT column is NO_PASSWORD
 *   8 NAME_NOT_UTF8, 9 NAME_CONTROL  the account is not UTF-8, or holds a byte below 0x20 or 0x7f;
 * codes from 5 on mean the line has the format's shape (a fault in one of its fields).
 * spans_out[4i .. 4i+3] (int64) are the account's [start, end) and the digest's [start, end) in buf (all 0
 * for a bad line; the account's span is empty for a bare digest); flags_out[i] (uint8) is ACCOUNT_LM when a
 * good pwdump line's LM column holds a hash other than the empty password's; every good line's digest
 * (hexlen / 2 bytes) goes to rows_out in line order. Buffers are sized for every line (count of line
 * ends + 1). */
#define ACCOUNT_BARE 1
#define ACCOUNT_USER 2
#define ACCOUNT_PWDUMP 3
#define ACCOUNT_AUTO 0x10
#define ACCOUNT_LM 1
enum {
    A_OK, A_EMPTY, A_TOO_LONG, A_NOT_SHAPE, A_AMBIGUOUS, A_EMPTY_NAME, A_OTHER_WIDTH, A_NO_NT, A_NOT_UTF8, A_CONTROL
};
static const char NO_PASSWORD[33] = "NO PASSWORD*********************";
static const char EMPTY_LM[33] = "aad3b435b51404eeaad3b435b51404ee";
static const char EMPTY_LM_UPPER[33] = "AAD3B435B51404EEAAD3B435B51404EE";

static inline int all_hex(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (!HEXVAL[p[i]]) return 0;
    return 1;
}

/* 1 when p[0 .. n) is UTF-8 as Python's strict decoder takes it (no surrogates, overlongs or > U+10FFFF) */
static int valid_utf8(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int more;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c == 0xE0) { more = 2; lo = 0xA0; }
        else if (c == 0xED) { more = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) more = 2;
        else if (c == 0xF0) { more = 3; lo = 0x90; }
        else if (c == 0xF4) { more = 3; hi = 0x8F; }
        else if (c >= 0xF1 && c <= 0xF3) more = 3;
        else return 0;
        if (i + more >= n) return 0;
        if (p[i + 1] < lo || p[i + 1] > hi) return 0;
        for (int j = 2; j <= more; j++)
            if (p[i + j] < 0x80 || p[i + j] > 0xBF) return 0;
        i += more + 1;
    }
    return 1;
}

/* An account name's fault: not UTF-8, else a control character (below 0x20, or 0x7f); one pass for ASCII. */
static int name_fault(const unsigned char *p, Py_ssize_t n) {
    int wide = 0, control = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        wide |= p[i] >= 0x80;
        control |= p[i] < 0x20 || p[i] == 0x7F;
    }
    if (wide && !valid_utf8(p, n)) return A_NOT_UTF8;
    return control ? A_CONTROL : A_OK;
}

static inline int blank(unsigned char c) { return c == ' ' || c == '\t'; }

/* The fault of one line s[a .. b) (its end not included), its spans, and its LM flag; a good line's digest
 * is decoded into out (hexlen / 2 bytes). */
static int account_line(const unsigned char *s, Py_ssize_t a, Py_ssize_t b, int fmt, int hexlen,
                        Py_ssize_t max_line, int64_t *span, unsigned char *flag, unsigned char *out) {
    if (b - a > max_line) return A_TOO_LONG;
    if (b > a && s[b - 1] == 0) b--;
    while (a < b && blank(s[a])) a++;
    while (b > a && blank(s[b - 1])) b--;
    if (a == b) return A_EMPTY;
    const int other = hexlen == 40 ? 32 : 40;
    int kind = fmt & 0x0F;
    Py_ssize_t c = a, h = a, he = b;
    if (kind == ACCOUNT_BARE) {
        if (!all_hex(s + a, b - a) || (b - a != hexlen && b - a != other)) return A_NOT_SHAPE;
        if (b - a != hexlen) return A_OTHER_WIDTH;
    } else if (kind == ACCOUNT_USER) {
        while (c < b && s[c] != ':' && s[c] != '\t') c++;
        if (c == b) return A_NOT_SHAPE;
        h = c + 1;
        while (h < b && blank(s[h])) h++;
        Py_ssize_t n = he - h;
        if (!all_hex(s + h, n) || (n != hexlen && n != other)) return A_NOT_SHAPE;
        if ((fmt & ACCOUNT_AUTO) && (c - a == 32 || c - a == 40) && all_hex(s + a, c - a)) return A_AMBIGUOUS;
        if (c == a) return A_EMPTY_NAME;
        if (n != hexlen) return A_OTHER_WIDTH;
    } else {
        const unsigned char *colon = memchr(s + a, ':', (size_t)(b - a));
        c = colon ? (Py_ssize_t)(colon - s) : b;
        Py_ssize_t r = c + 1, re = r;
        while (re < b && s[re] >= '0' && s[re] <= '9') re++;
        if (c == b || re == r || re - r > 10 || re >= b || s[re] != ':') return A_NOT_SHAPE;
        const unsigned char *lm = s + re + 1, *nt = lm + 33;
        if (b - (re + 1) < 66 || lm[32] != ':' || nt[32] != ':') return A_NOT_SHAPE;
        /* the empty password's LM hash, in one case or the other, is most lines' */
        int lm_empty = memcmp(lm, EMPTY_LM, 32) == 0 || memcmp(lm, EMPTY_LM_UPPER, 32) == 0;
        int lm_none = !lm_empty && lm[0] == 'N' && memcmp(lm, NO_PASSWORD, 32) == 0;
        int nt_none = nt[0] == 'N' && memcmp(nt, NO_PASSWORD, 32) == 0;
        if (!lm_empty && !lm_none && !all_hex(lm, 32)) return A_NOT_SHAPE;
        if (!nt_none && !all_hex(nt, 32)) return A_NOT_SHAPE;
        if (c == a) return A_EMPTY_NAME;
        if (nt_none) return A_NO_NT;
        h = (Py_ssize_t)(nt - s);
        he = h + 32;
        if (!lm_empty && !lm_none) {
            for (int i = 0; i < 32; i++) {
                unsigned char ch = lm[i];
                if ((ch >= 'A' && ch <= 'F' ? ch + 32 : ch) != (unsigned char)EMPTY_LM[i]) {
                    *flag = ACCOUNT_LM;
                    break;
                }
            }
        }
    }
    if (kind != ACCOUNT_BARE) {
        int fault = name_fault(s + a, c - a);
        if (fault) {
            *flag = 0;
            return fault;
        }
        span[0] = a;
        span[1] = c;
    }
    span[2] = h;
    span[3] = he;
    const unsigned char *hex = s + h;
    for (int i = 0; i < hexlen / 2; i++)
        out[i] = (unsigned char)(((HEXVAL[hex[2 * i]] - 1) << 4) | (HEXVAL[hex[2 * i + 1]] - 1));
    return A_OK;
}

static PyObject *k_parse_accounts(PyObject *self, PyObject *args) {
    Py_buffer buf, rows, spans, codes, flags;
    int fmt, hexlen;
    Py_ssize_t max_line;
    if (!PyArg_ParseTuple(args, "y*iinw*w*w*w*", &buf, &fmt, &hexlen, &max_line, &rows, &spans, &codes, &flags))
        return NULL;
    PyObject *result = NULL;
    int kind = fmt & 0x0F;
    if (kind < ACCOUNT_BARE || kind > ACCOUNT_PWDUMP || (fmt & ~(0x0F | ACCOUNT_AUTO))) {
        PyErr_SetString(PyExc_ValueError, "fmt must be ACCOUNT_BARE, ACCOUNT_USER or ACCOUNT_PWDUMP (| ACCOUNT_AUTO)");
        goto done;
    }
    if ((hexlen != 32 && hexlen != 40) || (kind == ACCOUNT_PWDUMP && hexlen != 32)) {
        PyErr_SetString(PyExc_ValueError, "hexlen must be 40 or 32 (32 for pwdump lines)");
        goto done;
    }
    if (max_line < 0) {
        PyErr_SetString(PyExc_ValueError, "max_line must not be negative");
        goto done;
    }
    const unsigned char *s = (const unsigned char *)buf.buf;
    const Py_ssize_t len = buf.len, dsize = hexlen / 2;
    Py_ssize_t room = spans.len / 32;
    if (codes.len < room) room = codes.len;
    if (flags.len < room) room = flags.len;
    const Py_ssize_t row_room = rows.len / dsize;
    unsigned char *r = (unsigned char *)rows.buf, *co = (unsigned char *)codes.buf, *fo = (unsigned char *)flags.buf;
    int64_t *sp = (int64_t *)spans.buf;
    Py_ssize_t lines = 0, good = 0, start = 0;
    int too_small = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t lf = -1; /* the next LF at or after start (len: none), kept across lines that end at a CR */
    while (start < len) {
        /* the line ends at the first LF or CR: vectorised scans rather than one byte at a time */
        if (lf < start) {
            const unsigned char *nl = memchr(s + start, '\n', (size_t)(len - start));
            lf = nl ? (Py_ssize_t)(nl - s) : len;
        }
        Py_ssize_t end = lf;
        const unsigned char *cr = memchr(s + start, '\r', (size_t)(end - start));
        if (cr) end = (Py_ssize_t)(cr - s);
        Py_ssize_t next = end < len ? end + 1 : len;
        if (cr && next < len && s[next] == '\n') next++;
        if (lines >= room) {
            too_small = 1;
            break;
        }
        int64_t *span = sp + 4 * lines;
        span[0] = span[1] = span[2] = span[3] = 0;
        fo[lines] = 0;
        unsigned char digest[20];
        int code = account_line(s, start, end, fmt, hexlen, max_line, span, fo + lines, digest);
        co[lines] = (unsigned char)code;
        if (code == A_OK) {
            if (good >= row_room) {
                too_small = 1;
                break;
            }
            memcpy(r + good * dsize, digest, (size_t)dsize);
            good++;
        } else {
            span[0] = span[1] = span[2] = span[3] = 0;
        }
        lines++;
        start = next;
    }
    Py_END_ALLOW_THREADS
    if (too_small) {
        PyErr_SetString(PyExc_ValueError, "output buffers are too small");
        goto done;
    }
    result = Py_BuildValue("nn", lines, good);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&spans);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&flags);
    return result;
}

/* render_accounts(buf, spans, which, texts, offsets, flags, out) -> bytes written
 * One output line per entry of which (int64): line i is entry k = which[i]'s head, then the account
 * buf[spans[4i] .. spans[4i+1]) (with RENDER_JSON its '"' and '\\' escaped by a backslash), then with
 * RENDER_HASH the entry's separator and the digest buf[spans[4i+2] .. spans[4i+3]) in upper case, then the
 * entry's tail and '\n'. Entry k's head, separator and tail are texts[offsets[3k] .. offsets[3k+1]),
 * [offsets[3k+1] .. offsets[3k+2]) and [offsets[3k+2] .. offsets[3k+3]). Spans, entries and offsets out of
 * range, and an out buffer smaller than the lines could be (every account's byte escaped), are a ValueError. */
#define RENDER_JSON 1
#define RENDER_HASH 2

static PyObject *k_render_accounts(PyObject *self, PyObject *args) {
    Py_buffer buf, spans, which, texts, offsets, out;
    int flags;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*iw*", &buf, &spans, &which, &texts, &offsets, &flags, &out)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = which.len / 8, n_off = offsets.len / 8;
    if (which.len % 8 || spans.len != 32 * n || offsets.len % 8 || n_off % 3 != 1) {
        PyErr_SetString(PyExc_ValueError, "which must be int64s, spans four int64s each, offsets 3 * entries + 1");
        goto done;
    }
    if (flags & ~(RENDER_JSON | RENDER_HASH)) {
        PyErr_SetString(PyExc_ValueError, "flags must be RENDER_JSON and/or RENDER_HASH");
        goto done;
    }
    const unsigned char *s = (const unsigned char *)buf.buf, *t = (const unsigned char *)texts.buf;
    const int64_t *sp = (const int64_t *)spans.buf, *w = (const int64_t *)which.buf, *off = (const int64_t *)offsets.buf;
    const int64_t entries = (int64_t)(n_off / 3);
    for (Py_ssize_t j = 0; j < n_off; j++) {
        if (off[j] < 0 || off[j] > texts.len || (j && off[j] < off[j - 1])) {
            PyErr_SetString(PyExc_ValueError, "offsets must rise within texts");
            goto done;
        }
    }
    const int json = flags & RENDER_JSON, hash = flags & RENDER_HASH;
    Py_ssize_t need = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t k = w[i], *p = sp + 4 * i;
        if (k < 0 || k >= entries || p[0] < 0 || p[0] > p[1] || p[1] > buf.len || p[2] < 0 || p[2] > p[3] ||
            p[3] > buf.len) {
            PyErr_SetString(PyExc_ValueError, "an entry or a span is out of range");
            goto done;
        }
        need += (Py_ssize_t)(off[3 * k + 1] - off[3 * k] + off[3 * k + 3] - off[3 * k + 2]) + 1;
        need += (Py_ssize_t)(p[1] - p[0]) * (json ? 2 : 1); /* every byte escaped, at most */
        if (hash) need += (Py_ssize_t)(off[3 * k + 2] - off[3 * k + 1] + p[3] - p[2]);
    }
    if (out.len < need) {
        PyErr_SetString(PyExc_ValueError, "output buffer is too small");
        goto done;
    }
    unsigned char *o = (unsigned char *)out.buf;
    Py_ssize_t at = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t k = w[i], *p = sp + 4 * i;
        memcpy(o + at, t + off[3 * k], (size_t)(off[3 * k + 1] - off[3 * k]));
        at += (Py_ssize_t)(off[3 * k + 1] - off[3 * k]);
        for (int64_t j = p[0]; j < p[1]; j++) {
            if (json && (s[j] == '"' || s[j] == '\\')) o[at++] = '\\';
            o[at++] = s[j];
        }
        if (hash) {
            memcpy(o + at, t + off[3 * k + 1], (size_t)(off[3 * k + 2] - off[3 * k + 1]));
            at += (Py_ssize_t)(off[3 * k + 2] - off[3 * k + 1]);
            for (int64_t j = p[2]; j < p[3]; j++) o[at++] = (s[j] >= 'a' && s[j] <= 'f') ? (unsigned char)(s[j] - 32) : s[j];
        }
        memcpy(o + at, t + off[3 * k + 2], (size_t)(off[3 * k + 3] - off[3 * k + 2]));
        at += (Py_ssize_t)(off[3 * k + 3] - off[3 * k + 2]);
        o[at++] = '\n';
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(at);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&spans);
    PyBuffer_Release(&which);
    PyBuffer_Release(&texts);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&out);
    return result;
}

/* ---- Binary fuse filters (3-wise; Graf & Lemire 2022), sharded by digest prefix ------------------------
 *
 * docs/FORMAT.md ("Fuse filter") is the contract; _kernels_py.py does exactly the same in numpy.
 * A key (a digest, at least 16 bytes) belongs to shard  be32(key[0:4]) >> (32 - shard_bits)  (0 when
 * shard_bits is 0), so a sorted stream of digests meets the shards one after the other. In its shard:
 *     word = le64(key[8:16]);  h = murmur64(word + seed)                  (the shard's seed, mod 2^64)
 *     p0 = mulhi(h, SCL);  p1 = (p0 + SL) ^ ((h >> 18) & (SL - 1));  p2 = (p0 + 2 SL) ^ (h & (SL - 1))
 *     fingerprint = (h ^ (h >> 32)) & (2^width - 1)
 * and the key is a member when slot[p0] ^ slot[p1] ^ slot[p2] == fingerprint. Slot i of a shard is the
 * width-bit field at bit i * width of the shard's region (little-endian: bit b is bit b % 8 of byte b / 8);
 * a region is 8 * ceil(AL * width / 64) + 8 bytes (the last 8 zero), so any field is one 8-byte load.
 *
 * A directory entry (48 bytes, little-endian) per shard: offset u64 (of its region in the body), seed u64,
 * items u64, checksum u64, AL u32 (slots), SL u32 (segment length, a power of two), SCL u32 (segment
 * count x SL), reserved u32. AL = SCL + 2 SL.
 *
 * Construction peels in rounds, so that the filter does not depend on the order of the keys or of the
 * loops (the numpy twin cannot follow a stack): round r takes every key that is alone in at least one of
 * its slots at the round's start and assigns it its lowest such slot; the keys are then removed together.
 * Slots are filled in reverse round order: slot = fingerprint ^ the key's two other slots. */
#define FUSE_ENTRY 48
#define FUSE_MAX_SHARD_BITS 24
#define FUSE_MAX_WIDTH 32
#define FUSE_BATCH 32

static inline uint64_t murmur64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint32_t load_le32(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#else
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
#endif
}

static inline uint32_t load_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void store_le64(unsigned char *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++, v >>= 8) p[i] = (unsigned char)v;
#endif
}

static inline uint64_t fuse_region_bytes(uint64_t al, int width) { return 8 * ((al * (uint64_t)width + 63) / 64) + 8; }

static inline void fuse_positions(uint64_t h, uint32_t sl, uint32_t scl, uint32_t p[3]) {
    uint32_t p0 = (uint32_t)mulhi64(h, scl);
    p[0] = p0;
    p[1] = (p0 + sl) ^ ((uint32_t)(h >> 18) & (sl - 1));
    p[2] = (p0 + 2 * sl) ^ ((uint32_t)h & (sl - 1));
}

static inline uint64_t fuse_field(const unsigned char *region, uint32_t slot, int width, uint64_t mask) {
    uint64_t bit = (uint64_t)slot * (uint64_t)width;
    return (load_le64(region + (bit >> 3)) >> (bit & 7)) & mask;
}

typedef struct {
    uint64_t offset, seed;
    uint32_t al, sl, scl;
} fuse_entry;

static inline fuse_entry fuse_read_entry(const unsigned char *dir, uint64_t shard) {
    const unsigned char *e = dir + shard * FUSE_ENTRY;
    fuse_entry out = {load_le64(e), load_le64(e + 8), load_le32(e + 32), load_le32(e + 36), load_le32(e + 40)};
    return out;
}

/* The entry's parameters are possible and its region lies inside the body: lookups then stay in bounds. */
static int fuse_entry_ok(const fuse_entry *e, int width, Py_ssize_t body_len) {
    if (e->sl == 0 || (e->sl & (e->sl - 1)) || e->scl == 0 || e->scl % e->sl) return 0;
    if ((uint64_t)e->al != (uint64_t)e->scl + 2 * (uint64_t)e->sl) return 0;
    uint64_t need = fuse_region_bytes(e->al, width);
    return e->offset <= (uint64_t)body_len && need <= (uint64_t)body_len - e->offset;
}

static int fuse_check_args(Py_buffer *body, Py_buffer *dir, int shard_bits, int width, int check_entries) {
    if (shard_bits < 0 || shard_bits > FUSE_MAX_SHARD_BITS) {
        PyErr_SetString(PyExc_ValueError, "shard_bits must be between 0 and 24");
        return -1;
    }
    if (width < 1 || width > FUSE_MAX_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "width must be between 1 and 32");
        return -1;
    }
    if (dir->len != ((Py_ssize_t)FUSE_ENTRY << shard_bits)) {
        PyErr_SetString(PyExc_ValueError, "the directory must hold 48 bytes per shard");
        return -1;
    }
    if (check_entries) {
        const unsigned char *d = (const unsigned char *)dir->buf;
        for (uint64_t s = 0; s < ((uint64_t)1 << shard_bits); s++) {
            fuse_entry e = fuse_read_entry(d, s);
            if (!fuse_entry_ok(&e, width, body->len)) {
                PyErr_SetString(PyExc_ValueError, "a directory entry is impossible or points outside the body");
                return -1;
            }
        }
    }
    return 0;
}

static inline uint64_t fuse_shard_of(const unsigned char *key, int shard_bits) {
    return shard_bits ? (uint64_t)(load_be32(key) >> (32 - shard_bits)) : 0;
}

/* fuse_build(words, seed, sl, scl, width, out) -> True when every key was placed, False when peeling stopped
 * (the caller tries the next seed). words: uint64 (little-endian) keys of one shard, distinct; out: the
 * shard's region, fuse_region_bytes(scl + 2 sl, width) bytes, overwritten. */
static PyObject *k_fuse_build(PyObject *self, PyObject *args) {
    Py_buffer words, out;
    unsigned long long seed;
    unsigned int sl, scl;
    int width;
    if (!PyArg_ParseTuple(args, "y*KIIiw*", &words, &seed, &sl, &scl, &width, &out)) return NULL;
    PyObject *result = NULL;
    uint32_t *count = NULL, *front = NULL, *next = NULL, *slot_of = NULL;
    uint64_t *xorh = NULL, *order = NULL;
    if (width < 1 || width > FUSE_MAX_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "width must be between 1 and 32");
        goto done;
    }
    if (sl == 0 || (sl & (sl - 1)) || scl == 0 || scl % sl || (uint64_t)scl + 2 * (uint64_t)sl > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_ValueError, "impossible segment parameters");
        goto done;
    }
    if (words.len % 8 || words.len / 8 > 0x55555555) {
        /* a slot's count (uint32) must not wrap: at most 3 n */
        PyErr_SetString(PyExc_ValueError, "words must be whole uint64s, at most 2^32 / 3 of them");
        goto done;
    }
    uint32_t al = scl + 2 * sl;
    if ((uint64_t)out.len != fuse_region_bytes(al, width)) {
        PyErr_SetString(PyExc_ValueError, "the output region has the wrong size");
        goto done;
    }
    Py_ssize_t n = words.len / 8;
    count = calloc(al, sizeof *count);
    xorh = calloc(al, sizeof *xorh);
    front = malloc(((size_t)al + 1) * sizeof *front);
    next = malloc(((size_t)al + 1) * sizeof *next);
    order = malloc(((size_t)n + 1) * sizeof *order);
    slot_of = malloc(((size_t)n + 1) * sizeof *slot_of);
    if (!count || !xorh || !front || !next || !order || !slot_of) {
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *w = (const unsigned char *)words.buf;
    unsigned char *o = (unsigned char *)out.buf;
    const uint64_t mask = width == 64 ? ~0ULL : ((1ULL << width) - 1);
    int placed;
    Py_BEGIN_ALLOW_THREADS
    uint32_t p[3], q[3];
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t h = murmur64(load_le64(w + 8 * i) + seed);
        fuse_positions(h, sl, scl, p);
        for (int j = 0; j < 3; j++) {
            count[p[j]]++;
            xorh[p[j]] ^= h;
        }
    }
    size_t nf = 0, peeled = 0;
    for (uint32_t s = 0; s < al; s++)
        if (count[s] == 1) front[nf++] = s;
    while (nf) {
        /* phase 1: the keys alone somewhere, each by its lowest alone slot (counts as at the round's start) */
        size_t start = peeled;
        for (size_t f = 0; f < nf; f++) {
            uint32_t s = front[f];
            if (count[s] != 1) continue;
            uint64_t h = xorh[s];
            fuse_positions(h, sl, scl, q);
            uint32_t lowest = UINT32_MAX;
            for (int j = 0; j < 3; j++)
                if (count[q[j]] == 1 && q[j] < lowest) lowest = q[j];
            if (lowest == s) {
                order[peeled] = h;
                slot_of[peeled++] = s;
            }
        }
        /* phase 2: remove them together; a slot whose count falls to 1 joins the next round */
        size_t nn = 0;
        for (size_t i = start; i < peeled; i++) {
            uint64_t h = order[i];
            fuse_positions(h, sl, scl, q);
            for (int j = 0; j < 3; j++) {
                count[q[j]]--;
                xorh[q[j]] ^= h;
                if (count[q[j]] == 1) next[nn++] = q[j];
            }
        }
        uint32_t *t = front;
        front = next;
        next = t;
        nf = nn;
    }
    placed = peeled == (size_t)n;
    memset(o, 0, (size_t)out.len);
    if (placed) {
        /* every count is 0 again: reuse the array for the slots' values */
        uint32_t *slots = count;
        for (size_t i = peeled; i-- > 0;) {
            uint64_t h = order[i];
            fuse_positions(h, sl, scl, q);
            uint32_t s = slot_of[i];
            slots[s] = (uint32_t)(((h ^ (h >> 32)) & mask) ^ slots[q[0]] ^ slots[q[1]] ^ slots[q[2]]);
        }
        for (uint32_t s = 0; s < al; s++) {
            uint64_t bit = (uint64_t)s * (uint64_t)width;
            unsigned char *at = o + (bit >> 3);
            store_le64(at, load_le64(at) | ((uint64_t)slots[s] << (bit & 7)));
        }
    }
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(placed);
done:
    free(count);
    free(xorh);
    free(front);
    free(next);
    free(order);
    free(slot_of);
    PyBuffer_Release(&words);
    PyBuffer_Release(&out);
    return result;
}

/* fuse_contains_many(body, directory, shard_bits, width, keys, stride, out) -> number found; out[j] = 1 or 0.
 * A batch's slots are all computed and prefetched before any is read, so the misses overlap. */
static PyObject *k_fuse_contains_many(PyObject *self, PyObject *args) {
    Py_buffer body, dir, keys, out;
    int shard_bits, width;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*y*iiy*nw*", &body, &dir, &shard_bits, &width, &keys, &stride, &out)) return NULL;
    PyObject *result = NULL;
    if (fuse_check_args(&body, &dir, shard_bits, width, 1) < 0) goto done;
    if (stride < 16 || keys.len % stride) {
        PyErr_SetString(PyExc_ValueError, "keys must be at least 16 bytes and the buffer whole keys");
        goto done;
    }
    Py_ssize_t n = keys.len / stride;
    if (out.len < n) {
        PyErr_SetString(PyExc_ValueError, "output buffer is too small");
        goto done;
    }
    const unsigned char *b = (const unsigned char *)body.buf, *d = (const unsigned char *)dir.buf;
    const unsigned char *kp = (const unsigned char *)keys.buf;
    unsigned char *o = (unsigned char *)out.buf;
    const uint64_t mask = (1ULL << width) - 1;
    unsigned long long found = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *region[FUSE_BATCH];
    uint32_t pos[FUSE_BATCH][3];
    uint64_t fp[FUSE_BATCH];
    for (Py_ssize_t base = 0; base < n; base += FUSE_BATCH) {
        int cnt = (int)(n - base < FUSE_BATCH ? n - base : FUSE_BATCH);
        for (int j = 0; j < cnt; j++) {
            const unsigned char *key = kp + (base + j) * stride;
            fuse_entry e = fuse_read_entry(d, fuse_shard_of(key, shard_bits));
            uint64_t h = murmur64(load_le64(key + 8) + e.seed);
            fuse_positions(h, e.sl, e.scl, pos[j]);
            fp[j] = (h ^ (h >> 32)) & mask;
            region[j] = b + e.offset;
            for (int i = 0; i < 3; i++) PREFETCH(region[j] + (((uint64_t)pos[j][i] * (uint64_t)width) >> 3));
        }
        for (int j = 0; j < cnt; j++) {
            uint64_t v = fuse_field(region[j], pos[j][0], width, mask) ^ fuse_field(region[j], pos[j][1], width, mask) ^
                         fuse_field(region[j], pos[j][2], width, mask);
            unsigned char hit = v == fp[j];
            o[base + j] = hit;
            found += hit;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromUnsignedLongLong(found);
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&dir);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&out);
    return result;
}

/* fuse_contains(body, directory, shard_bits, width, key) -> bool, for one key (the `in` operator). */
static PyObject *k_fuse_contains(PyObject *self, PyObject *args) {
    Py_buffer body, dir, key;
    int shard_bits, width;
    if (!PyArg_ParseTuple(args, "y*y*iiy*", &body, &dir, &shard_bits, &width, &key)) return NULL;
    PyObject *result = NULL;
    if (fuse_check_args(&body, &dir, shard_bits, width, 0) < 0) goto done;
    if (key.len < 16) {
        PyErr_SetString(PyExc_ValueError, "keys must be at least 16 bytes");
        goto done;
    }
    const unsigned char *k = (const unsigned char *)key.buf;
    fuse_entry e = fuse_read_entry((const unsigned char *)dir.buf, fuse_shard_of(k, shard_bits));
    if (!fuse_entry_ok(&e, width, body.len)) {
        PyErr_SetString(PyExc_ValueError, "a directory entry is impossible or points outside the body");
        goto done;
    }
    const uint64_t mask = (1ULL << width) - 1;
    uint64_t h = murmur64(load_le64(k + 8) + e.seed);
    uint32_t p[3];
    fuse_positions(h, e.sl, e.scl, p);
    const unsigned char *r = (const unsigned char *)body.buf + e.offset;
    uint64_t v = fuse_field(r, p[0], width, mask) ^ fuse_field(r, p[1], width, mask) ^ fuse_field(r, p[2], width, mask);
    result = PyBool_FromLong(v == ((h ^ (h >> 32)) & mask));
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&dir);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef methods[] = {
    {"add", k_add, METH_VARARGS, "Set the bits of every key; return how many keys set a new bit."},
    {"contains_many", k_contains_many, METH_VARARGS, "Test every key; write 1/0 per key; return hits."},
    {"contains", k_contains, METH_VARARGS, "Test one key."},
    {"parse_lines", k_parse_lines, METH_VARARGS, "Parse hash or HEX:COUNT lines (and the other shapes shape names)."},
    {"render_lines", k_render_lines, METH_VARARGS, "Render rows as HIBP range lines, each ending in CRLF."},
    {"parse_accounts", k_parse_accounts, METH_VARARGS, "Parse an audit's lines: digests, account:digest or pwdump."},
    {"render_accounts", k_render_accounts, METH_VARARGS, "Render one answer line per account from a table of texts."},
    {"fuse_build", k_fuse_build, METH_VARARGS, "Fill one fuse filter shard's region from its keys; False if peeling stopped."},
    {"fuse_contains_many", k_fuse_contains_many, METH_VARARGS, "Test every key in a sharded fuse filter; return hits."},
    {"fuse_contains", k_fuse_contains, METH_VARARGS, "Test one key in a sharded fuse filter."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", "credcheck's compiled hot loops.", -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
