"""The hot loops of ``_kernels.c``, in numpy: used when the C extension was not built.

Same functions, same arguments, same results bit for bit (the tests compare the two on every run).
See the C file's header comment for the position formula.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import numpy as np
import numpy.typing as npt

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_BLOCK = 1 << 16
MAX_COUNT = 0xFFFFFFFF
MAX_COUNT_DIGITS = 10
# parse_lines' shape flags (their meaning is in _kernels.c)
SHAPE_SEP = 0xFF
SHAPE_QUOTED_HEX = 0x100
SHAPE_QUOTED_COUNT = 0x200
SHAPE_PLUS = 0x400
SHAPE_NUL = 0x800
SHAPE_ALL = 0xFFF

# value of each byte as a hex digit, -1 where it is not one
_HEX = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def _u8(buf: Any) -> npt.NDArray[np.uint8]:
    return np.frombuffer(buf, dtype=np.uint8)


def _halves(keys: npt.NDArray[np.uint8], stride: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    rows = keys.reshape(-1, stride)
    h1 = np.ascontiguousarray(rows[:, :8]).view("<u8").ravel().astype(np.uint64)
    h2 = np.ascontiguousarray(rows[:, 8:16]).view("<u8").ravel().astype(np.uint64) | np.uint64(1)
    return h1, h2


def _mulhi(g: npt.NDArray[np.uint64], m: int) -> npt.NDArray[np.uint64]:
    """High 64 bits of g * m, exact, from 32-bit halves (numpy has no 128-bit product)."""
    mh, ml = np.uint64(m >> 32), np.uint64(m & 0xFFFFFFFF)
    gh, gl = g >> _S32, g & _M32
    ll, hl, lh = gl * ml, gh * ml, gl * mh
    carry = ((ll >> _S32) + (hl & _M32) + (lh & _M32)) >> _S32
    high: npt.NDArray[np.uint64] = gh * mh + (hl >> _S32) + (lh >> _S32) + carry
    return high


def _check(bits: Any, m: int, k: int, keylen: int, stride: int) -> None:
    if not 1 <= k <= 64:
        raise ValueError("k must be between 1 and 64")
    if m <= 0 or len(memoryview(bits).cast("B")) * 8 < m:
        raise ValueError("bit array is smaller than m bits")
    if stride < 16:
        raise ValueError("keys must be at least 16 bytes")
    if keylen % stride:
        raise ValueError("key buffer length is not a multiple of the key size")


def _positions(h1: npt.NDArray[np.uint64], h2: npt.NDArray[np.uint64], m: int, k: int) -> npt.NDArray[np.uint64]:
    """Positions of each key, key-major: row j holds key j's k positions."""
    steps = np.arange(k, dtype=np.uint64)
    g = h1[:, None] + steps[None, :] * h2[:, None]
    return _mulhi(g, m)


def add(bits: Any, m: int, k: int, keys: Any, stride: int) -> int:
    """Set the bits of every key; return how many keys set at least one bit that was clear before."""
    keys = _u8(keys)
    _check(bits, m, k, len(keys), stride)
    b = np.frombuffer(bits, dtype=np.uint8) if not isinstance(bits, np.ndarray) else bits
    fresh = 0
    block = _BLOCK * stride
    for off in range(0, len(keys), block):
        h1, h2 = _halves(keys[off : off + block], stride)
        flat = _positions(h1, h2, m, k).ravel()
        # The C loop works key by key: a key is fresh if it is the first, in order, to touch a clear bit.
        uniq, first = np.unique(flat, return_index=True)
        byte, mask = (
            (uniq >> np.uint64(3)).astype(np.intp),
            (np.uint8(1) << (uniq & np.uint64(7)).astype(np.uint8)),
        )
        clear = (b[byte] & mask) == 0
        fresh += len(np.unique(first[clear] // k))
        np.bitwise_or.at(b, byte, mask)
    return fresh


def contains_many(bits: Any, m: int, k: int, keys: Any, stride: int, out: Any) -> int:
    """Write 1 or 0 for every key into ``out``; return how many keys were found."""
    keys = _u8(keys)
    _check(bits, m, k, len(keys), stride)
    b = np.frombuffer(bits, dtype=np.uint8)
    o = np.frombuffer(out, dtype=np.uint8) if not isinstance(out, np.ndarray) else out.view(np.uint8)
    n = len(keys) // stride
    if len(o) < n:
        raise ValueError("output buffer is too small")
    found = 0
    for off in range(0, n, _BLOCK):
        h1, h2 = _halves(keys[off * stride : (off + _BLOCK) * stride], stride)
        alive = np.arange(len(h1))
        g = h1.copy()
        for _ in range(k):
            if not len(alive):
                break
            p = _mulhi(g[alive], m)
            hit = (b[(p >> np.uint64(3)).astype(np.intp)] >> (p & np.uint64(7)).astype(np.uint8)) & 1
            alive = alive[hit.astype(bool)]
            g[alive] += h2[alive]
        res = np.zeros(len(h1), dtype=np.uint8)
        res[alive] = 1
        o[off : off + len(h1)] = res
        found += len(alive)
    return found


def contains(bits: Any, m: int, k: int, key: Any) -> bool:
    """Test one key."""
    key = bytes(key)
    _check(bits, m, k, len(key), len(key))
    mv = memoryview(bits).cast("B")
    g = int.from_bytes(key[:8], "little")
    h2 = int.from_bytes(key[8:16], "little") | 1
    for _ in range(k):
        p = (g * m) >> 64
        if not (mv[p >> 3] >> (p & 7)) & 1:
            return False
        g = (g + h2) & 0xFFFFFFFFFFFFFFFF
    return True


def _line_bounds(a: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    size = len(a)
    nl = np.flatnonzero(a == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [size])).astype(np.int64)
    if starts[-1] == size:  # the buffer ends with '\n': no empty line after it
        starts, ends = starts[:-1], ends[:-1]
    cr = (ends > starts) & (a[np.maximum(ends - 1, 0)] == 13)
    return starts, ends - cr


def parse_lines(
    buf: Any, with_counts: int, hexlen: int, digests_out: Any, counts_out: Any, bad_out: Any, shape: int = 0
) -> tuple[int, int, int, int]:
    """Parse hash or HEX:COUNT lines (or the other shapes ``shape`` names); see ``_kernels.c`` for the rules."""
    if hexlen <= 0 or hexlen % 2 or hexlen > 128:
        raise ValueError("hexlen must be even and between 2 and 128")
    if not 0 <= shape <= SHAPE_ALL:
        raise ValueError("shape must be between 0 and 0xFFF")
    a = _u8(buf)
    d_out, c_out, b_out = (
        _u8(digests_out),
        np.frombuffer(counts_out, np.uint64),
        np.frombuffer(bad_out, np.int64),
    )
    dsize = hexlen // 2
    if not len(a):
        return 0, 0, 0, -1
    starts, ends = _line_bounds(a)
    # Buffers must have room for every line (callers size them for count('\n') + 1). The C kernel finds
    # out line by line, so with a count overflow before the last line it may not raise where this does.
    if min(len(d_out) // dsize, len(c_out), len(b_out)) < len(starts):
        raise ValueError("output buffers are too small")
    last = len(a) - 1
    sep = shape & SHAPE_SEP or 58
    quote = 1 if shape & SHAPE_QUOTED_HEX else 0
    past_digest = hexlen + 2 * quote  # where the digest (and its quotes) end
    lines, good, nbad, overflow = 0, 0, 0, -1
    for off in range(0, len(starts), _BLOCK):
        s, e = starts[off : off + _BLOCK], ends[off : off + _BLOCK]
        if shape & SHAPE_NUL:
            e = e - ((e > s) & (a[np.maximum(e - 1, 0)] == 0))
        ll = e - s
        idx = np.minimum(s[:, None] + quote + np.arange(hexlen), last)
        vals = _HEX[a[idx]]
        ok = (ll >= past_digest) & (vals >= 0).all(axis=1)
        if quote:
            ok &= (a[np.minimum(s, last)] == 34) & (a[np.minimum(s + hexlen + 1, last)] == 34)
        nib = vals.astype(np.uint8)
        dig = (nib[:, 0::2] << 4) | nib[:, 1::2]
        if with_counts:
            # the count's digits are at [first, stop) of each line
            first = np.full(len(s), past_digest + 1, dtype=np.int64)
            stop = ll.copy()
            shaped = ok & (ll > past_digest) & (a[np.minimum(s + past_digest, last)] == sep)
            if shape & SHAPE_QUOTED_COUNT:
                opening = a[np.minimum(s + first, last)] == 34
                closing = a[np.minimum(np.maximum(e - 1, 0), last)] == 34
                shaped &= (ll - first >= 2) & opening & closing
                first, stop = first + 1, stop - 1
            if shape & SHAPE_PLUS:
                first = first + (shaped & (first < stop) & (a[np.minimum(s + first, last)] == 43))
            nd = stop - first
            cols = np.arange(MAX_COUNT_DIGITS)
            valid = cols[None, :] < nd[:, None]
            digits = a[np.minimum((s + first)[:, None] + cols, last)].astype(np.int64) - 48
            all_digits = ((digits >= 0) & (digits <= 9) | ~valid).all(axis=1)
            power = np.where(valid, 10 ** np.clip(nd[:, None] - 1 - cols, 0, MAX_COUNT_DIGITS), 0)
            value = (np.where(valid, digits, 0) * power).sum(axis=1).astype(np.uint64)
            counted = shaped & (nd >= 1) & (nd <= MAX_COUNT_DIGITS) & all_digits
            too_big = counted & (value > MAX_COUNT)
            # a count longer than MAX_COUNT_DIGITS that is all digits is too large, not malformed
            for j in np.flatnonzero(shaped & (nd > MAX_COUNT_DIGITS)):
                tail = a[s[j] + first[j] : s[j] + stop[j]]
                too_big[j] = bool(((tail >= 48) & (tail <= 57)).all())
            ok = counted & ~too_big
            if too_big.any():
                cut = int(np.flatnonzero(too_big)[0])
                overflow = lines + cut
                ok, dig, value, ll = ok[:cut], dig[:cut], value[:cut], ll[:cut]
        else:
            ok &= ll == past_digest
            value = np.ones(len(ok), dtype=np.uint64)
        n_ok = int(np.count_nonzero(ok))
        d_out[good * dsize : (good + n_ok) * dsize] = dig[ok].ravel()
        c_out[good : good + n_ok] = value[ok]
        bad_idx = np.flatnonzero(~ok) + lines
        b_out[nbad : nbad + len(bad_idx)] = bad_idx
        good, nbad, lines = good + n_ok, nbad + len(bad_idx), lines + len(ok)
        if overflow >= 0:
            break
    return lines, good, nbad, overflow


_HEXUP = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_POWERS = 10 ** np.arange(MAX_COUNT_DIGITS - 1, -1, -1, dtype=np.uint64)  # 10^9 .. 10^0


def render_lines(rows: Any, width: int, counts: Any, out: Any) -> int:
    """Render rows as HIBP range lines, each ending in CRLF; see ``_kernels.c`` for the exact rules."""
    c = np.frombuffer(counts, dtype="<u4")
    if not 1 <= width <= 64 or len(memoryview(counts).cast("B")) % 4:
        raise ValueError("width must be between 1 and 64 and counts whole uint32s")
    r = _u8(rows)
    n = len(c)
    if len(r) != n * width:
        raise ValueError("rows must hold len(counts) rows of width bytes")
    o = _u8(out)
    if len(o) < n * (2 * width + 12):
        raise ValueError("output buffer is too small")
    at = 0
    for off in range(0, n, _BLOCK):
        block = r[off * width : min(n, off + _BLOCK) * width].reshape(-1, width)
        values = c[off : off + _BLOCK].astype(np.uint64)
        m = len(values)
        hexes = np.empty((m, 2 * width), dtype=np.uint8)
        hexes[:, 0::2] = _HEXUP[block >> 4]
        hexes[:, 1::2] = _HEXUP[block & 15]
        digits = (values[:, None] // _POWERS) % np.uint64(10)
        ndigits = np.maximum(MAX_COUNT_DIGITS - np.argmax(digits > 0, axis=1), 1)
        ndigits[values == 0] = 1
        # every line as a fixed-width row (hex without its first digit, ':', ten digits, CRLF) and a mask of
        # the bytes it really has: the leading zeros of the count are left out
        lines = np.empty((m, 2 * width - 1 + 1 + MAX_COUNT_DIGITS + 2), dtype=np.uint8)
        lines[:, : 2 * width - 1] = hexes[:, 1:]
        lines[:, 2 * width - 1] = 58
        lines[:, 2 * width : 2 * width + MAX_COUNT_DIGITS] = digits.astype(np.uint8) + 48
        lines[:, -2:] = (13, 10)
        keep = np.ones(lines.shape, dtype=bool)
        keep[:, 2 * width : 2 * width + MAX_COUNT_DIGITS] = (
            np.arange(MAX_COUNT_DIGITS)[None, :] >= (MAX_COUNT_DIGITS - ndigits)[:, None]
        )
        text = lines[keep]
        o[at : at + len(text)] = text
        at += len(text)
    return at


# -- binary fuse filters (the rules are in _kernels.c's fuse section and docs/FORMAT.md) ------------------

FUSE_ENTRY = 48
FUSE_MAX_SHARD_BITS = 24
FUSE_MAX_WIDTH = 32
_U32 = np.uint64(0xFFFFFFFF)
#: A directory entry: offset, seed, items, checksum, slots (AL), segment length (SL), SL x segment count (SCL).
FUSE_ENTRY_DTYPE = np.dtype(
    [
        ("offset", "<u8"),
        ("seed", "<u8"),
        ("items", "<u8"),
        ("checksum", "<u8"),
        ("al", "<u4"),
        ("sl", "<u4"),
        ("scl", "<u4"),
        ("reserved", "<u4"),
    ]
)


def fuse_region_bytes(al: int, width: int) -> int:
    """Bytes of a shard's region: its AL fields of ``width`` bits in whole 8-byte words, then 8 zero bytes."""
    return 8 * ((al * width + 63) // 64) + 8


def _murmur64(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fuse_positions(h: npt.NDArray[np.uint64], sl: Any, scl: Any) -> npt.NDArray[np.int64]:
    """The three slots of each hash, an n x 3 array; ``sl`` and ``scl`` are numbers or per-hash arrays."""
    sl = np.asarray(sl, dtype=np.uint64)
    scl = np.asarray(scl, dtype=np.uint64)
    low = sl - np.uint64(1)
    # high 64 bits of h * scl, exact for scl < 2^32: (hi(h) * scl + (lo(h) * scl >> 32)) >> 32, no overflow
    p0 = ((h >> _S32) * scl + (((h & _M32) * scl) >> _S32)) >> _S32
    p = np.empty((len(h), 3), dtype=np.int64)
    p[:, 0] = p0.astype(np.int64)
    p[:, 1] = (((p0 + sl) & _U32) ^ ((h >> np.uint64(18)) & low)).astype(np.int64)
    p[:, 2] = (((p0 + sl + sl) & _U32) ^ (h & low)).astype(np.int64)
    return p


def _fingerprints(h: npt.NDArray[np.uint64], width: int) -> npt.NDArray[np.uint64]:
    out: npt.NDArray[np.uint64] = (h ^ (h >> _S32)) & np.uint64((1 << width) - 1)
    return out


def fuse_build(words: Any, seed: int, sl: int, scl: int, width: int, out: Any) -> bool:
    """Fill one shard's region from its (distinct) uint64 keys; False when peeling stopped (try another seed)."""
    if not 1 <= width <= FUSE_MAX_WIDTH:
        raise ValueError("width must be between 1 and 32")
    if sl <= 0 or sl & (sl - 1) or scl <= 0 or scl % sl or scl + 2 * sl > 0xFFFFFFFF:
        raise ValueError("impossible segment parameters")
    raw = _u8(words)
    if len(raw) % 8 or len(raw) // 8 > 0x55555555:
        raise ValueError("words must be whole uint64s, at most 2^32 / 3 of them")
    al = scl + 2 * sl
    o = _u8(out) if not isinstance(out, np.ndarray) else out.view(np.uint8)
    if len(o) != fuse_region_bytes(al, width):
        raise ValueError("the output region has the wrong size")
    h = _murmur64(raw.view("<u8").astype(np.uint64) + np.uint64(seed))
    pos = _fuse_positions(h, sl, scl)
    count = np.bincount(pos.ravel(), minlength=al).astype(np.int64)
    xorh = np.zeros(al, dtype=np.uint64)
    np.bitwise_xor.at(xorh, pos.ravel(), np.repeat(h, 3))
    front = np.flatnonzero(count == 1)
    rounds: list[tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]] = []
    peeled = 0
    while len(front):
        front = front[count[front] == 1]
        hs = xorh[front]
        q = _fuse_positions(hs, sl, scl)
        lowest = np.where(count[q] == 1, q, np.int64(al)).min(axis=1)
        take = lowest == front
        hs, slots = hs[take], front[take]
        rounds.append((hs, slots))
        peeled += len(hs)
        q = q[take].ravel()
        touched, times = np.unique(q, return_counts=True)
        count[touched] -= times
        np.bitwise_xor.at(xorh, q, np.repeat(hs, 3))
        front = touched[count[touched] == 1]
    o[:] = 0
    if peeled != len(h):
        return False
    values = np.zeros(al, dtype=np.uint64)
    for hs, slots in reversed(rounds):
        q = _fuse_positions(hs, sl, scl)
        values[slots] = _fingerprints(hs, width) ^ values[q[:, 0]] ^ values[q[:, 1]] ^ values[q[:, 2]]
    _pack(values, width, o)
    return True


def _pack(values: npt.NDArray[np.uint64], width: int, out: npt.NDArray[np.uint8]) -> None:
    """Write ``width``-bit fields little-endian into ``out`` (zeroed), field i at bit i * width."""
    bits = np.unpackbits(values.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")[:, :width]
    packed = np.packbits(bits.ravel(), bitorder="little")
    out[: len(packed)] = packed


def _fuse_fields(
    body: npt.NDArray[np.uint8], start: npt.NDArray[np.int64], slots: npt.NDArray[np.int64], width: int
) -> npt.NDArray[np.uint64]:
    """The ``width``-bit fields at ``slots`` of the regions starting at byte ``start`` (five bytes hold any)."""
    bit = slots * width
    at = start + (bit >> 3)
    word = np.zeros(len(at), dtype=np.uint64)
    for i in range(5):
        word |= body[at + i].astype(np.uint64) << np.uint64(8 * i)
    fields: npt.NDArray[np.uint64] = (word >> (bit & 7).astype(np.uint64)) & np.uint64((1 << width) - 1)
    return fields


def _fuse_directory(body: Any, directory: Any, shard_bits: int, width: int) -> npt.NDArray[Any]:
    if not 0 <= shard_bits <= FUSE_MAX_SHARD_BITS:
        raise ValueError("shard_bits must be between 0 and 24")
    if not 1 <= width <= FUSE_MAX_WIDTH:
        raise ValueError("width must be between 1 and 32")
    raw = _u8(directory)
    if len(raw) != FUSE_ENTRY << shard_bits:
        raise ValueError("the directory must hold 48 bytes per shard")
    return raw.view(FUSE_ENTRY_DTYPE)


def _fuse_entries_ok(entries: npt.NDArray[Any], width: int, body_len: int) -> bool:
    sl, scl = entries["sl"].astype(np.int64), entries["scl"].astype(np.int64)
    al, offset = entries["al"].astype(np.int64), entries["offset"].astype(np.uint64)
    power = (sl > 0) & ((sl & (sl - 1)) == 0)
    shape = power & (scl > 0) & (scl % np.maximum(sl, 1) == 0) & (al == scl + 2 * sl)
    need = (8 * ((al * width + 63) // 64) + 8).astype(np.uint64)
    inside = (offset <= np.uint64(body_len)) & (need <= np.uint64(body_len) - np.minimum(offset, np.uint64(body_len)))
    return bool((shape & inside).all())


def _shards_of(keys: npt.NDArray[np.uint8], shard_bits: int) -> npt.NDArray[np.int64]:
    if not shard_bits:
        return np.zeros(len(keys), dtype=np.int64)
    lead = np.ascontiguousarray(keys[:, :4]).view(">u4").ravel().astype(np.int64)
    out: npt.NDArray[np.int64] = lead >> (32 - shard_bits)
    return out


def _fuse_lookup(
    body: npt.NDArray[np.uint8], entries: npt.NDArray[Any], keys: npt.NDArray[np.uint8], width: int, shard_bits: int
) -> npt.NDArray[np.bool_]:
    e = entries[_shards_of(keys, shard_bits)]
    word = np.ascontiguousarray(keys[:, 8:16]).view("<u8").ravel().astype(np.uint64)
    h = _murmur64(word + e["seed"].astype(np.uint64))
    pos = _fuse_positions(h, e["sl"].astype(np.uint64), e["scl"].astype(np.uint64))
    start = e["offset"].astype(np.int64)
    v = _fuse_fields(body, start, pos[:, 0], width)
    v ^= _fuse_fields(body, start, pos[:, 1], width)
    v ^= _fuse_fields(body, start, pos[:, 2], width)
    hit: npt.NDArray[np.bool_] = v == _fingerprints(h, width)
    return hit


def fuse_contains_many(body: Any, directory: Any, shard_bits: int, width: int, keys: Any, stride: int, out: Any) -> int:
    """Write 1 or 0 for every key into ``out``; return how many keys were found."""
    entries = _fuse_directory(body, directory, shard_bits, width)
    b = _u8(body)
    if not _fuse_entries_ok(entries, width, len(b)):
        raise ValueError("a directory entry is impossible or points outside the body")
    raw = _u8(keys)
    if stride < 16 or len(raw) % stride:
        raise ValueError("keys must be at least 16 bytes and the buffer whole keys")
    n = len(raw) // stride
    o = np.frombuffer(out, dtype=np.uint8) if not isinstance(out, np.ndarray) else out.view(np.uint8)
    if len(o) < n:
        raise ValueError("output buffer is too small")
    rows = raw.reshape(n, stride)
    found = 0
    for off in range(0, n, _BLOCK):
        hit = _fuse_lookup(b, entries, rows[off : off + _BLOCK], width, shard_bits)
        o[off : off + len(hit)] = hit
        found += int(hit.sum())
    return found


def fuse_contains(body: Any, directory: Any, shard_bits: int, width: int, key: Any) -> bool:
    """Test one key."""
    entries = _fuse_directory(body, directory, shard_bits, width)
    raw = _u8(key)
    if len(raw) < 16:
        raise ValueError("keys must be at least 16 bytes")
    row = raw.reshape(1, -1)
    b = _u8(body)
    if not _fuse_entries_ok(entries[_shards_of(row, shard_bits)], width, len(b)):
        raise ValueError("a directory entry is impossible or points outside the body")
    return bool(_fuse_lookup(b, entries, row, width, shard_bits)[0])


# parse_accounts' formats, flags and codes, and render_accounts' flags (their meaning is in _kernels.c)
ACCOUNT_BARE = 1
ACCOUNT_USER = 2
ACCOUNT_PWDUMP = 3
ACCOUNT_AUTO = 0x10
ACCOUNT_LM = 1


class AccountFault(enum.IntEnum):
    """Why parse_accounts did not take a line (its codes_out); from EMPTY_NAME on, the line has the format's shape."""

    OK = 0
    EMPTY = 1
    TOO_LONG = 2
    NOT_SHAPE = 3
    AMBIGUOUS = 4
    EMPTY_NAME = 5
    OTHER_WIDTH = 6
    NO_NT = 7
    NAME_NOT_UTF8 = 8
    NAME_CONTROL = 9


RENDER_JSON = 1
RENDER_HASH = 2
_LINE_ENDS = re.compile(rb"\r\n?|\n")
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")
_NO_PASSWORD = b"NO PASSWORD" + b"*" * 21
_EMPTY_LM = b"aad3b435b51404eeaad3b435b51404ee"
_BLANKS = b" \t"
_UPPER_HEX = bytes.maketrans(b"abcdef", b"ABCDEF")


def _all_hex(part: bytes) -> bool:
    return all(c in _HEXDIGITS for c in part)


def _account_line(s: bytes, a: int, b: int, fmt: int, hexlen: int, max_line: int) -> tuple[int, tuple[int, ...], int]:
    """The fault of one line s[a:b] (its end not included), its spans and its LM flag (see _kernels.c)."""
    none = (0, 0, 0, 0)
    if b - a > max_line:
        return AccountFault.TOO_LONG, none, 0
    if b > a and s[b - 1] == 0:
        b -= 1
    while a < b and s[a] in _BLANKS:
        a += 1
    while b > a and s[b - 1] in _BLANKS:
        b -= 1
    if a == b:
        return AccountFault.EMPTY, none, 0
    other = 32 if hexlen == 40 else 40
    kind = fmt & 0x0F
    if kind == ACCOUNT_BARE:
        if not _all_hex(s[a:b]) or b - a not in (hexlen, other):
            return AccountFault.NOT_SHAPE, none, 0
        return (AccountFault.OTHER_WIDTH, none, 0) if b - a != hexlen else (AccountFault.OK, (0, 0, a, b), 0)
    flag = 0
    if kind == ACCOUNT_USER:
        c = a
        while c < b and s[c] not in b":\t":
            c += 1
        if c == b:
            return AccountFault.NOT_SHAPE, none, 0
        h = c + 1
        while h < b and s[h] in _BLANKS:
            h += 1
        digest = s[h:b]
        if not _all_hex(digest) or len(digest) not in (hexlen, other):
            return AccountFault.NOT_SHAPE, none, 0
        if fmt & ACCOUNT_AUTO and c - a in (32, 40) and _all_hex(s[a:c]):
            return AccountFault.AMBIGUOUS, none, 0
        if c == a:
            return AccountFault.EMPTY_NAME, none, 0
        if len(digest) != hexlen:
            return AccountFault.OTHER_WIDTH, none, 0
        he = b
    else:
        c = s.find(b":", a, b)
        c = b if c < 0 else c
        r = re_ = c + 1
        while re_ < b and 48 <= s[re_] <= 57:
            re_ += 1
        if c == b or re_ == r or re_ - r > 10 or re_ >= b or s[re_] != 58:
            return AccountFault.NOT_SHAPE, none, 0
        lm, nt = re_ + 1, re_ + 34
        if b - lm < 66 or s[lm + 32] != 58 or s[nt + 32] != 58:
            return AccountFault.NOT_SHAPE, none, 0
        lm_none, nt_none = s[lm : lm + 32] == _NO_PASSWORD, s[nt : nt + 32] == _NO_PASSWORD
        if (not lm_none and not _all_hex(s[lm : lm + 32])) or (not nt_none and not _all_hex(s[nt : nt + 32])):
            return AccountFault.NOT_SHAPE, none, 0
        if c == a:
            return AccountFault.EMPTY_NAME, none, 0
        if nt_none:
            return AccountFault.NO_NT, none, 0
        h, he = nt, nt + 32
        flag = ACCOUNT_LM if not lm_none and s[lm : lm + 32].lower() != _EMPTY_LM else 0
    name = s[a:c]
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return AccountFault.NAME_NOT_UTF8, none, 0
    if any(ch < 0x20 or ch == 0x7F for ch in name):
        return AccountFault.NAME_CONTROL, none, 0
    return AccountFault.OK, (a, c, h, he), flag


def parse_accounts(
    buf: Any, fmt: int, hexlen: int, max_line: int, rows_out: Any, spans_out: Any, codes_out: Any, flags_out: Any
) -> tuple[int, int]:
    """Parse an audit's lines (bare digests, account:digest or pwdump); see ``_kernels.c`` for the exact rules."""
    kind = fmt & 0x0F
    if not ACCOUNT_BARE <= kind <= ACCOUNT_PWDUMP or fmt & ~(0x0F | ACCOUNT_AUTO):
        raise ValueError("fmt must be ACCOUNT_BARE, ACCOUNT_USER or ACCOUNT_PWDUMP (| ACCOUNT_AUTO)")
    if hexlen not in (32, 40) or (kind == ACCOUNT_PWDUMP and hexlen != 32):
        raise ValueError("hexlen must be 40 or 32 (32 for pwdump lines)")
    if max_line < 0:
        raise ValueError("max_line must not be negative")
    s = bytes(buf)
    rows, codes, flags = _u8(rows_out), _u8(codes_out), _u8(flags_out)
    spans = np.frombuffer(spans_out, dtype=np.int64)
    dsize = hexlen // 2
    room = min(len(spans) // 4, len(codes), len(flags))
    lines = good = start = 0
    for match in [*_LINE_ENDS.finditer(s), None]:
        end = len(s) if match is None else match.start()
        if match is None and start == len(s):
            break
        if lines >= room:
            raise ValueError("output buffers are too small")
        code, span, flag = _account_line(s, start, end, fmt, hexlen, max_line)
        codes[lines], flags[lines] = code, flag
        spans[4 * lines : 4 * lines + 4] = span
        if code == AccountFault.OK:
            if (good + 1) * dsize > len(rows):
                raise ValueError("output buffers are too small")
            rows[good * dsize : (good + 1) * dsize] = np.frombuffer(
                bytes.fromhex(s[span[2] : span[3]].decode()), np.uint8
            )
            good += 1
        lines += 1
        start = len(s) if match is None else match.end()
    return lines, good


def render_accounts(buf: Any, spans: Any, which: Any, texts: Any, offsets: Any, flags: int, out: Any) -> int:
    """Render one answer line per account from a table of texts; see ``_kernels.c`` for the exact rules."""
    s, t = bytes(buf), bytes(texts)
    w = np.frombuffer(which, dtype=np.int64)
    sp = np.frombuffer(spans, dtype=np.int64)
    off = np.frombuffer(offsets, dtype=np.int64)
    if len(sp) != 4 * len(w) or len(off) % 3 != 1:
        raise ValueError("which must be int64s, spans four int64s each, offsets 3 * entries + 1")
    if flags & ~(RENDER_JSON | RENDER_HASH):
        raise ValueError("flags must be RENDER_JSON and/or RENDER_HASH")
    if len(off) and (off[0] < 0 or off[-1] > len(t) or (np.diff(off) < 0).any()):
        raise ValueError("offsets must rise within texts")
    entries = len(off) // 3
    parts: list[bytes] = []
    bound = 0  # what the lines could take with every byte of every account escaped: the room out must have
    for k, (a, b, h, he) in zip(w.tolist(), sp.reshape(-1, 4).tolist(), strict=True):
        if not 0 <= k < entries or not 0 <= a <= b <= len(s) or not 0 <= h <= he <= len(s):
            raise ValueError("an entry or a span is out of range")
        head, sep, tail = (t[off[3 * k + j] : off[3 * k + j + 1]] for j in range(3))
        name = s[a:b]
        bound += len(head) + len(tail) + 1 + (b - a) * (2 if flags & RENDER_JSON else 1)
        if flags & RENDER_JSON:
            name = name.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        digest = b""
        if flags & RENDER_HASH:
            digest = sep + s[h:he].translate(_UPPER_HEX)
            bound += len(sep) + he - h
        parts.append(head + name + digest + tail + b"\n")
    o = _u8(out)
    if len(o) < bound:
        raise ValueError("output buffer is too small")
    text = b"".join(parts)
    o[: len(text)] = np.frombuffer(text, dtype=np.uint8)
    return len(text)
