"""``credcheck check --hashes``: hex digests, ``account:hash`` lines or pwdump lines, answered line by line (with
the account's name), and an Active Directory audit's summary.

The shapes of line (``--hashes-format``): ``bare``, a hex digest of the scheme; ``user``, an account name, ':' (or
a tab) and a digest (DSInternals' HashcatNT view, hashcat's ``--username`` files); ``pwdump``,
``account:rid:lmhash:nthash:::`` as NTDS extraction tools print it (secretsdump, DSInternals' PWDump view;
``DOMAIN\\account`` names too; what follows the NT hash's ':' is pwdump's free fields). ``auto`` tells the shape
from the first line that has one and holds the input to it: a line of another shape is a bad line, as is one of no
shape, a ``HEX:HEX`` line (a cracked list's ``HASH:PLAINTEXT`` as much as an account: ambiguous), and one whose
account name is not UTF-8 or holds a control character. The line kernels (``parse_accounts``, ``render_accounts``)
parse and answer a block of lines at once; the source is asked with :meth:`~credcheck.checker.Checker.check_rows`
in batches, by the rule of ``cli._input``.

An NT hash is NTLM: pwdump input is checked against NTLM hashes (a range API without ``--hash`` is asked for NTLM
ranges), and a store or a filter of another scheme, or ``--hash sha1``, is a :class:`UsageError`.

Account names are not secrets in the audit's output (the auditor needs them): they are printed with their answers
and in the summary, on standard output only, never in an error line, on standard error or in a message. A digest
is printed only with ``--show-hashes``. The summary (user and pwdump input) follows the answers after an empty
line (``--json``: one last object, ``{"summary": ...}``): accounts checked and leaked, the groups of accounts that
share a hash (one password: the audit's finding), the accounts with the empty password's hash, and the pwdump
accounts whose LM hash is stored, each with its accounts' names.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .. import _native
from .._corpus import MAX_LINE_BYTES, scheme_hint
from .._frames import entry_point
from .._native import ACCOUNT_AUTO, ACCOUNT_BARE, ACCOUNT_LM, ACCOUNT_PWDUMP, ACCOUNT_USER, AccountFault
from .._report import counted
from ..checker import Checker, Exposure
from ..errors import UsageError
from ..hashing import DIGEST_SIZES, digest
from ._input import Answered, Unchecked, asked, error_line

__all__ = ["FORMATS", "HashLines", "answer_text"]

FORMATS: Final = ("auto", "bare", "user", "pwdump")
_KINDS: Final = {"bare": ACCOUNT_BARE, "user": ACCOUNT_USER, "pwdump": ACCOUNT_PWDUMP}
#: What a line of each shape is, in the reason a line of another shape gets
_SHAPES: Final = {
    "user": "an account:hash line",
    "pwdump": "a pwdump line (account:rid:lmhash:nthash:::)",
}
_NOT_FOUND: Final = Exposure(False, 0)


def answer_text(answer: Exposure, json_output: bool) -> str:
    """How ``check`` shows an answer: ``compromised (seen 3 times)``, ``compromised`` or ``not found`` (``--json``:
    ``{"compromised": true, "count": 3}``)."""
    if json_output:
        return json.dumps({"compromised": answer.compromised, "count": answer.count})
    if not answer.compromised:
        return "not found"
    return "compromised" if answer.count is None else f"compromised (seen {counted(answer.count, 'time')})"


@dataclasses.dataclass(frozen=True)
class _Parsed:
    """A block as parse_accounts read it: each line's fault code, spans and flags, and the good lines' digests."""

    codes: npt.NDArray[np.uint8]
    spans: npt.NDArray[np.int64]
    flags: npt.NDArray[np.uint8]
    rows: npt.NDArray[np.uint8]


class _Buffers:
    """Arrays the kernels write into, kept from one block to the next (a new one each block would cost page faults
    worth half the parse); what outlives a block is copied out of them."""

    def __init__(self) -> None:
        self._arrays: dict[Any, npt.NDArray[Any]] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> npt.NDArray[Any]:
        """An array of ``shape`` and ``dtype`` (its first dimension at least as asked), kept as ``name``."""
        key = (name, shape[1:], np.dtype(dtype).str)  # rows of 16 bytes are never handed out for rows of 20
        array = self._arrays.get(key)
        if array is None or len(array) < shape[0]:
            array = self._arrays[key] = np.empty(
                (max(shape[0], 2 * len(array) if array is not None else 0), *shape[1:]), dtype=dtype
            )
        return array


def _parse(block: bytes, shape: str, hexlen: int, max_line: int, auto: bool, buffers: _Buffers) -> _Parsed:
    room = len(block) + 1  # a line for every byte at most: counting them would cost more than the parse
    rows = buffers.get(f"{shape} rows", (room, hexlen // 2), np.uint8)
    spans = buffers.get(f"{shape} spans", (room, 4), np.int64)
    codes, flags = buffers.get(f"{shape} codes", (room,), np.uint8), buffers.get(f"{shape} flags", (room,), np.uint8)
    kind = _KINDS[shape] | (ACCOUNT_AUTO if auto else 0)
    lines, good = _native.kernels.parse_accounts(block, kind, hexlen, max_line, rows, spans, codes, flags)
    return _Parsed(codes[:lines], spans[:lines], flags[:lines], rows[:good])


class _Entries:
    """The texts render_accounts writes a line with: a head, the account, a separator and the digest (shown or
    not), a tail; one entry per answer or error, numbered as they are first asked for."""

    def __init__(self, *, named: bool, json_output: bool, show_hashes: bool) -> None:
        self.named, self.json, self.show = named, json_output, show_hashes
        self._index: dict[Any, int] = {}
        self._parts: list[bytes] = []
        self._table: tuple[bytes, npt.NDArray[np.int64]] | None = None
        self.longest = 0

    def _entry(self, key: Any, head: str, sep: str, tail: str) -> int:
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self._index)
            parts = [part.encode() for part in (head, sep, tail)]
            self._parts += parts
            self.longest = max(self.longest, sum(map(len, parts)))
            self._table = None
        return index

    def error(self, reason: str) -> int:
        """The entry of an error line (no account, no digest)."""
        return self._entry(reason, error_line(reason, self.json), "", "")

    def answer(self, answer: Exposure) -> int:
        """The entry of an answer."""
        text = answer_text(answer, self.json)
        if self.json:
            rest = '", ' + text[1:]  # the answer's keys after the account's (and the digest's)
            if self.named:
                return self._entry(answer, '{"account": "', '", "hash": "', rest)
            return self._entry(answer, "", '{"hash": "', rest if self.show else text)
        if self.named:
            return self._entry(answer, "", " ", f": {text}")
        return self._entry(answer, "", "", f": {text}" if self.show else text)

    def table(self) -> tuple[bytes, npt.NDArray[np.int64]]:
        """The texts, and the offsets of each entry's head, separator and tail in them."""
        if self._table is None:
            offsets = np.zeros(len(self._parts) + 1, dtype=np.int64)
            np.cumsum([len(part) for part in self._parts], out=offsets[1:])
            self._table = b"".join(self._parts), offsets
        return self._table


@dataclasses.dataclass
class _Accounts:
    """What the summary keeps of the accounts read: where each one's name is (its block and span), its digest,
    whether its LM hash is stored; and the counts of the answers."""

    blocks: list[bytes] = dataclasses.field(default_factory=list)
    spans: list[npt.NDArray[np.int64]] = dataclasses.field(default_factory=list)
    rows: list[npt.NDArray[np.uint8]] = dataclasses.field(default_factory=list)
    lm: list[npt.NDArray[np.bool_]] = dataclasses.field(default_factory=list)
    answered: int = 0
    leaked: int = 0
    unchecked: int = 0


class HashLines:
    """``check --hashes``: the lines of an audit, a block at a time (an :class:`~credcheck.cli._input.Answering`).

    ``checker`` is the source when it is open already (a file: its scheme is the file's), else ``open_remote``
    opens the range API once the scheme is known (``scheme``, from ``--hash``, or what the lines say); ``says``
    is what fixed the scheme, for the message of a contradiction.
    """

    def __init__(
        self,
        checker: Checker | None,
        open_remote: Callable[[str], Checker] | None = None,
        *,
        scheme: str | None = None,
        says: str = "",
        hashes_format: str = "auto",
        show_hashes: bool = False,
        batch: int,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        if hashes_format not in FORMATS:
            raise ValueError(f"hashes_format must be one of {', '.join(FORMATS)}, not {hashes_format!r}")
        self.checker, self._open_remote = checker, open_remote
        self.scheme = checker.scheme if checker is not None else scheme
        self._says = says
        self.auto = hashes_format == "auto"
        self.shape: str | None = None
        self.show_hashes, self.batch, self.max_line = show_hashes, batch, max_line
        self.accounts = _Accounts()
        self._entries: dict[bool, _Entries] = {}  # by whether the lines are named
        self._buffers = _Buffers()
        if not self.auto:
            self._settle(hashes_format, None)

    def _hexlen(self, shape: str) -> int:
        return 32 if shape == "pwdump" else 2 * DIGEST_SIZES[self.scheme or "sha1"]

    def _settle(self, shape: str, line: int | None) -> None:
        """Hold the input to ``shape`` (told by ``line``, or named), and open the source for its scheme."""
        if shape == "pwdump" and self.scheme not in (None, "ntlm"):
            told = f"standard input line {line} is a pwdump line: " if line is not None else ""
            raise UsageError(
                f"{told}pwdump lines hold NT hashes (scheme ntlm), but {self._says}; check them against an NTLM "
                "store or filter (credcheck build --hash ntlm) or a range API with --hash ntlm"
            )
        self.shape = shape
        if self.checker is None:
            assert self._open_remote is not None
            self.scheme = self.scheme or ("ntlm" if shape == "pwdump" else "sha1")
            self.checker = self._open_remote(self.scheme)

    def _detect(self, block: bytes, first: int) -> tuple[_Parsed, dict[int, str]]:
        """Read a block before the input's shape is known: each shape's parse, the first line that has one of
        them settles it; the lines before it get their reasons."""
        tried = {
            shape: _parse(block, shape, self._hexlen(shape), self.max_line, True, self._buffers) for shape in _KINDS
        }
        shaped = {shape: _shaped(parsed.codes) for shape, parsed in tried.items()}
        anywhere = np.logical_or.reduce(list(shaped.values()))
        told = int(np.argmax(anywhere)) if anywhere.any() else len(anywhere)
        reasons = {i: self._unknown(tried, i) for i in range(told)}
        if told == len(anywhere):
            return tried["bare"], reasons
        shape = next(shape for shape in _KINDS if shaped[shape][told])
        self._settle(shape, first + told)
        return tried[shape], reasons

    def _unknown(self, tried: dict[str, _Parsed], i: int) -> str:
        """Why line i, of no shape, gets no answer."""
        code = tried["user"].codes[i]
        if code in (AccountFault.EMPTY, AccountFault.TOO_LONG, AccountFault.AMBIGUOUS):
            return self._reason(int(code), "user")
        return "not a hex digest, an account:hash line or a pwdump line"

    def _reason(self, code: int, shape: str) -> str:
        """Why a line of an input of ``shape`` gets no answer (never what it holds)."""
        scheme = self.scheme or "sha1"
        if code == AccountFault.EMPTY:
            return "empty line"
        if code == AccountFault.TOO_LONG:
            return f"longer than {self.max_line:,} bytes"
        if code == AccountFault.NOT_SHAPE:
            return f"not a {scheme} hex digest" if shape == "bare" else f"not {_SHAPES[shape]}"
        if code == AccountFault.OTHER_WIDTH:
            return f"not a {scheme} hex digest: the hashes {scheme_hint(72 - self._hexlen(shape), scheme)}"
        return {
            AccountFault.AMBIGUOUS: "a hex digest before the ':' (HASH:PLAINTEXT, a cracked list?); "
            "--hashes-format user reads it as an account name",
            AccountFault.EMPTY_NAME: "empty account name",
            AccountFault.NO_NT: "no NT hash (NO PASSWORD in its column)",
            AccountFault.NAME_NOT_UTF8: "the account name is not UTF-8",
            AccountFault.NAME_CONTROL: "a control character in the account name",
        }[AccountFault(code)]

    @entry_point
    def answer(self, block: bytes, first: int, json_output: bool) -> Answered:
        """Answer the lines of ``block`` (the first one is line ``first``): one output line each, in order."""
        if self.shape is None:
            parsed, reasons = self._detect(block, first)
        else:
            parsed = _parse(block, self.shape, self._hexlen(self.shape), self.max_line, False, self._buffers)
            reasons = {}
        shape = self.shape or "bare"
        named = shape != "bare"
        entries = self._entries.get(named)
        if entries is None:
            entries = self._entries[named] = _Entries(
                named=named, json_output=json_output, show_hashes=self.show_hashes
            )
        lines = len(parsed.codes)
        which = np.empty(lines, dtype=np.int64)
        unchecked: dict[int, str] = {}
        for i in np.flatnonzero(parsed.codes != AccountFault.OK).tolist():
            unchecked[i] = reasons.get(i) or self._reason(int(parsed.codes[i]), shape)
        good = np.flatnonzero(parsed.codes == AccountFault.OK)
        compromised = np.zeros(len(good), dtype=bool)
        counts = np.zeros(len(good), dtype=np.int64)
        spans = parsed.spans
        if len(good):
            assert self.checker is not None
            rows, check = parsed.rows, self.checker.check_rows
            answers = asked(lambda lo, hi: check(rows[lo:hi]), len(good), self.batch, lambda j: first + int(good[j]))
            failed: list[int] = []
            for start, stop, answer in answers:
                if isinstance(answer, Unchecked):
                    failed += range(start, stop)
                    for j in range(start, stop):
                        unchecked[int(good[j])] = answer.reason
                else:
                    compromised[start:stop], counts[start:stop] = answer.compromised, answer.counts
            which[good] = entries.answer(_NOT_FOUND)
            # one entry a distinct answer: most are "not found", the others are few
            key = (counts + 1) * 2 + compromised
            found = np.flatnonzero(key != 2)
            if len(found):
                _, firsts, inverse = np.unique(key[found], return_index=True, return_inverse=True)
                known = [entries.answer(_answer(compromised[found[f]], counts[found[f]])) for f in firsts]
                which[good[found]] = np.asarray(known, dtype=np.int64)[inverse]
            if failed:
                spans = spans.copy()
                spans[good[failed]] = 0  # an error line names no account
            self._keep(block, parsed, good, failed, int(compromised.sum()))
        for i, reason in unchecked.items():
            which[i] = entries.error(reason)
        texts, offsets = entries.table()
        flags = (_native.RENDER_JSON if json_output else 0) | (_native.RENDER_HASH if self.show_hashes else 0)
        out = self._buffers.get("out", (2 * len(block) + lines * (entries.longest + 1),), np.uint8)
        size = _native.kernels.render_accounts(block, spans, which, texts, offsets, flags, out)
        self.accounts.unchecked += len(unchecked)
        numbered = sorted((first + i, reason) for i, reason in unchecked.items())
        return Answered(out[:size].data, lines, numbered, bool(compromised.any()))

    def _keep(self, block: bytes, parsed: _Parsed, good: npt.NDArray[np.intp], failed: list[int], leaked: int) -> None:
        """Keep what the summary needs of a block's accounts (user and pwdump input)."""
        kept = self.accounts
        kept.answered += len(good) - len(failed)
        kept.leaked += leaked
        if self.shape in ("user", "pwdump"):
            kept.blocks.append(block)
            kept.spans.append(parsed.spans[good, :2])
            kept.rows.append(parsed.rows.copy())  # not a view that keeps the block's whole buffer
            kept.lm.append((parsed.flags[good] & ACCOUNT_LM) != 0)

    def summary(self, json_output: bool) -> str | None:
        """The audit's summary (user and pwdump input; None for bare digests): its text, or its JSON line."""
        if self.shape not in ("user", "pwdump"):
            return None
        kept, scheme = self.accounts, self.scheme or "sha1"
        size = DIGEST_SIZES[scheme]
        rows = np.concatenate(kept.rows) if kept.rows else np.empty((0, size), dtype=np.uint8)
        # a digest's first 8 bytes as one integer tell almost every two apart: compared and sorted as that, then
        # the few that match checked whole
        keys = np.ascontiguousarray(rows[:, :8]).view("<u8").ravel()
        nothing = digest("", scheme)
        maybe = np.flatnonzero(keys == int.from_bytes(nothing[:8], "little"))
        empty = maybe[(rows[maybe] == np.frombuffer(nothing, dtype=np.uint8)).all(axis=1)]
        among = np.ones(len(rows), dtype=bool)
        among[empty] = False  # the empty password is its own finding, not a shared one
        members, sizes = _shared(rows, keys, among)
        lm = np.concatenate(kept.lm) if kept.lm else np.empty(0, dtype=bool)
        names = _Names(kept)
        every = iter(names.of(members))
        shared = [[next(every) for _ in range(size)] for size in sizes]
        empties = names.of(empty)
        stored = names.of(np.flatnonzero(lm)) if self.shape == "pwdump" else None
        if json_output:
            return json.dumps(
                {
                    "summary": {
                        "accounts": kept.answered,
                        "leaked": kept.leaked,
                        "unchecked": kept.unchecked,
                        "shared": {"groups": len(shared), "accounts": sum(map(len, shared)), "members": shared},
                        "empty_password": {"accounts": len(empties), "members": empties},
                        "lm_hash": None if stored is None else {"accounts": len(stored), "members": stored},
                    }
                }
            )
        lines = [
            "",
            f"audit: {counted(kept.answered, 'account')} checked, {kept.leaked:,} leaked"
            + (f"; {counted(kept.unchecked, 'line')} could not be checked" if kept.unchecked else ""),
            f"shared passwords: {counted(len(shared), 'group')} of accounts with one "
            f"{'NT hash' if scheme == 'ntlm' else 'hash'}, {counted(sum(map(len, shared)), 'account')} in them",
            *(f"  {', '.join(group)}" for group in shared),
            f"empty password: {counted(len(empties), 'account')}",
            *([f"  {', '.join(empties)}"] if empties else []),
        ]
        if stored is not None:
            lines.append(f"LM hash stored: {counted(len(stored), 'account')}")
            lines += [f"  {', '.join(stored)}"] if stored else []
        return "\n".join(lines)

    def close(self) -> None:
        """Close the source."""
        if self.checker is not None:
            self.checker.close()

    def __enter__(self) -> HashLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answer(compromised: np.bool_, count: np.int64) -> Exposure:
    """The Exposure of one of :class:`~credcheck.checker.Exposures`' entries."""
    return Exposure(bool(compromised), None if count < 0 else int(count))


def _shaped(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which lines have the shape they were parsed as (good, or a fault in one of its fields)."""
    shaped: npt.NDArray[np.bool_] = (codes == AccountFault.OK) | (codes >= AccountFault.EMPTY_NAME)
    return shaped


class _Names:
    """The names of the accounts kept, by their number in the order read."""

    def __init__(self, kept: _Accounts) -> None:
        self._kept = kept
        self._firsts = np.cumsum([0] + [len(spans) for spans in kept.spans])  # each block's first account

    def of(self, accounts: npt.NDArray[np.intp]) -> list[str]:
        """The names of these accounts, in their order."""
        blocks = (np.searchsorted(self._firsts, accounts, side="right") - 1).tolist()
        names = []
        for account, block in zip(accounts.tolist(), blocks, strict=True):
            start, end = self._kept.spans[block][account - self._firsts[block]].tolist()
            names.append(self._kept.blocks[block][start:end].decode())
        return names


def _shared(
    rows: npt.NDArray[np.uint8], keys: npt.NDArray[np.uint64], among: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.intp], list[int]]:
    """The groups (two accounts or more) of rows ``among`` that hold one digest, the largest first (then in the order
    of their first account): their row numbers, group after group and each group in order, and each one's size.
    ``keys`` are the rows' first 8 bytes as integers."""
    candidates = np.flatnonzero(among)
    # Sort integers, not digests: each key's high bits with its row's place in the low ones, one array sorted
    # (several times faster than an argsort); rows whose high bits repeat are the candidates, grouped by their
    # whole digests below (high bits alike in two other digests make a candidate, never a group)
    low = max(1, len(candidates).bit_length())
    high = ~np.uint64((1 << low) - 1)
    ordered = np.sort((keys[candidates] & high) | np.arange(len(candidates), dtype=np.uint64))
    same = (ordered[1:] & high) == (ordered[:-1] & high)
    if not same.any():
        return np.empty(0, dtype=np.intp), []
    repeats = np.zeros(len(ordered), dtype=bool)
    repeats[1:] |= same
    repeats[:-1] |= same
    candidates = candidates[np.sort((ordered[repeats] & ~high).astype(np.intp))]
    whole = np.ascontiguousarray(rows[candidates]).view(f"V{rows.shape[1]}").ravel()
    _, firsts, inverse, sizes = np.unique(whole, return_index=True, return_inverse=True, return_counts=True)
    # groups by size (descending), then by their first account; a group's members in their order
    shared = np.flatnonzero(sizes > 1)
    shared = shared[np.lexsort((firsts[shared], -sizes[shared]))]
    rank = np.full(len(sizes), len(sizes), dtype=np.intp)
    rank[shared] = np.arange(len(shared))
    grouped = rank[inverse] < len(sizes)
    members = candidates[grouped][np.argsort(rank[inverse][grouped], kind="stable")]
    return members, sizes[shared].tolist()
