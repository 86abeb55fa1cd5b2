"""`credcheck check --hashes` as an Active Directory audit (credcheck.cli._audit): pwdump, account:hash and bare
digest lines, answered account by account, and the audit's summary."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from credcheck.cli import main
from credcheck.cli._audit import HashLines
from credcheck.errors import UsageError
from credcheck.hashing import ntlm_hex

from .helpers import failing_range, run_main, secrets_in_frames, wsgi_in_thread

EMPTY_LM = "aad3b435b51404eeaad3b435b51404ee"
SOME_LM = "E52CAC67419A9A224A3B108F3FA6CB6D"
EMPTY_NT = "31d6cfe0d16ae931b73c59d7e0c089c0"
LEAKED = {"Passw0rd!": 2_024, "Winter2024!": 7, "letmein": 1}  # in the NTLM store, with their counts


def pwdump(name: str, nt: str, lm: str = EMPTY_LM, rid: int | str = 1104, tail: str = ":::") -> str:
    return f"{name}:{rid}:{lm}:{nt}{tail}"


def hibp(path: Path, rows: dict[str, int]) -> Path:
    path.write_text("".join(f"{digest.upper()}:{count}\n" for digest, count in sorted(rows.items())))
    return path


@pytest.fixture
def ntlm_store(tmp_path: Path) -> Path:
    """An NTLM range store of LEAKED, built by `credcheck build --hash ntlm`."""
    store = tmp_path / "ntlm.store"
    source = hibp(tmp_path / "ntlm.txt", {ntlm_hex(p): n for p, n in LEAKED.items()})
    assert main(["build", str(source), "--store", str(store), "--hash", "ntlm", "-q"]) == 0
    return store


def check(argv: list[str], stdin: bytes, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> tuple[int, list[str], str]:
    """`credcheck check ARGV` in this process: exit status, output lines, standard error."""
    status = run_main(["check", *argv], stdin, monkeypatch)
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def answers(out: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The JSON answer lines of a check, and its summary (None without one)."""
    parsed = [json.loads(line) for line in out]
    if parsed and "summary" in parsed[-1]:
        return parsed[:-1], parsed[-1]["summary"]
    return parsed, None


@pytest.mark.usefixtures("kernels")
class TestAThousandLeakedOfAHundredThousand:
    """The issue's audit: 100,000 pwdump accounts, exactly 1,000 of them with a leaked NT hash."""

    @pytest.fixture
    def audit(self, tmp_path: Path) -> dict[str, Any]:
        rng = np.random.default_rng(21)
        digests = [bytes(row).hex() for row in rng.integers(0, 256, (100_000 + 1_000, 16), dtype=np.uint8)]
        leaked = digests[:990]  # accounts 0-999: 990 leaked digests, the last ten reused by accounts 990-999
        others = digests[990:]
        store = tmp_path / "ntlm.store"
        corpus = {digest: 1 + i % 50 for i, digest in enumerate(leaked)}
        corpus.update({digest: 3 for digest in others[100_000:]})  # leaked digests that no account has
        assert (
            main(["build", str(hibp(tmp_path / "ntlm.txt", corpus)), "--store", str(store), "--hash", "ntlm", "-q"])
            == 0
        )
        nt = [leaked[i % 990] for i in range(1_000)] + others[: 100_000 - 1_000]
        for group in range(4):  # four groups of three accounts with one password that never leaked
            for member in range(3):
                nt[1_000 + 3 * group + member] = others[group]
        for i in range(2_000, 2_005):  # five accounts with the empty password (not in the store)
            nt[i] = EMPTY_NT
        lm = {5, 990, 50_000, 60_001, 70_002, 80_003, 99_999}  # seven accounts with their LM hash stored
        names = [f"CONTOSO\\u{i:06d}" for i in range(100_000)]
        lines = [pwdump(name, nt[i], SOME_LM if i in lm else EMPTY_LM, 1_000 + i) for i, name in enumerate(names)]
        return {
            "store": store,
            "stdin": ("\r\n".join(lines) + "\r\n").encode(),
            "names": names,
            "leaked": {names[i]: corpus[nt[i]] for i in range(1_000)},
            "empty": names[2_000:2_005],
            "lm": [names[i] for i in sorted(lm)],
        }

    def test_every_leaked_account_named_and_no_other(
        self, audit: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """Each of the 1,000 leaked accounts is named with its count; the 99,000 others are not found; exit 1."""
        status, out, err = check(
            ["--store", str(audit["store"]), "--hashes", "--json"], audit["stdin"], monkeypatch, capsys
        )
        lines, summary = answers(out)
        assert status == 1 and err == ""
        assert [line["account"] for line in lines] == audit["names"]
        found = {line["account"]: line["count"] for line in lines if line["compromised"]}
        assert found == audit["leaked"]
        assert all(line["count"] == 0 for line in lines if not line["compromised"])
        assert summary is not None and (summary["accounts"], summary["leaked"], summary["unchecked"]) == (
            100_000,
            1_000,
            0,
        )

    def test_the_summary_counts_shared_empty_and_lm(
        self, audit: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """Ten leaked and four unleaked groups of accounts share a hash (32 accounts); five empty passwords (not a
        group); seven LM hashes stored: counted and named in the summary."""
        _, out, _ = check(["--store", str(audit["store"]), "--hashes", "--json"], audit["stdin"], monkeypatch, capsys)
        summary = answers(out)[1]
        assert summary is not None
        shared = summary["shared"]
        expected = sorted(
            [[audit["names"][i], audit["names"][i + 990]] for i in range(10)]
            + [audit["names"][1_000 + 3 * g : 1_003 + 3 * g] for g in range(4)],
            key=lambda group: (-len(group), audit["names"].index(group[0])),
        )
        assert (shared["groups"], shared["accounts"], shared["members"]) == (14, 32, expected)
        assert summary["empty_password"] == {"accounts": 5, "members": audit["empty"]}
        assert summary["lm_hash"] == {"accounts": 7, "members": audit["lm"]}

    def test_the_text_output_names_them_too(
        self, audit: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """Without --json each line is `ACCOUNT: answer`; the summary follows an empty line."""
        status, out, _ = check(["--store", str(audit["store"]), "--hashes"], audit["stdin"], monkeypatch, capsys)
        assert status == 1
        lines, summary = out[:100_000], out[100_000:]
        said = [re.fullmatch(r"(.*): compromised \(seen (\d+) times?\)", line) for line in lines]
        leaked = {match[1]: int(match[2]) for match in said if match is not None}
        assert leaked == audit["leaked"] and sum("compromised" in line for line in lines) == 1_000
        assert sum(line.endswith(": not found") for line in lines) == 99_000
        assert summary[:3] == [
            "",
            "audit: 100,000 accounts checked, 1,000 leaked",
            "shared passwords: 14 groups of accounts with one NT hash, 32 accounts in them",
        ]
        assert "empty password: 5 accounts" in summary and "LM hash stored: 7 accounts" in summary


AMBIGUOUS = (
    "a hex digest before the ':' (HASH:PLAINTEXT, a cracked list?); --hashes-format user reads it as an account name"
)
ALICE = "CONTOSO\\alice"


def accounts_input() -> dict[str, bytes]:
    """One leaked and one clean account in each shape (bare digests have no name)."""
    leaked, clean = ntlm_hex("Passw0rd!"), ntlm_hex("never leaked 21")
    return {
        "pwdump": (
            pwdump(ALICE, leaked) + "\n" + pwdump("bob", clean.lower(), tail="::: (status=Enabled)") + "\n"
        ).encode(),
        "user": f"CONTOSO\\alice:{leaked}\nbob\t{clean}\n".encode(),
        "bare": f"{leaked}\n{clean}\n".encode(),
    }


class TestShapes:
    @pytest.mark.parametrize("named", [False, True], ids=["auto", "named"])
    @pytest.mark.parametrize("shape", ["pwdump", "user", "bare"])
    def test_each_shape_is_told_and_answered(
        self, ntlm_store: Path, shape: str, named: bool, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """pwdump, account:hash (':' or a tab) and bare digests, told from the first line or named: each line its
        answer, named by its account; a summary for accounts only."""
        argv = ["--store", str(ntlm_store), "--hashes", "--json", *(["--hashes-format", shape] if named else [])]
        status, out, err = check(argv, accounts_input()[shape], monkeypatch, capsys)
        lines, summary = answers(out)
        assert (status, err) == (1, "")
        expected = [{"compromised": True, "count": 2_024}, {"compromised": False, "count": 0}]
        if shape == "bare":
            assert (lines, summary) == (expected, None)
        else:
            assert lines == [{"account": "CONTOSO\\alice", **expected[0]}, {"account": "bob", **expected[1]}]
            assert summary is not None and (summary["accounts"], summary["leaked"]) == (2, 1)
            assert (summary["lm_hash"] is None) == (shape == "user")

    def test_hashes_format_implies_hashes(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """--hashes-format alone reads hashes (never hashes the lines as passwords)."""
        status, out, _ = check(
            ["--store", str(ntlm_store), "--hashes-format", "pwdump"], accounts_input()["pwdump"], monkeypatch, capsys
        )
        assert status == 1 and out[:2] == ["CONTOSO\\alice: compromised (seen 2,024 times)", "bob: not found"]

    def test_a_line_of_another_shape_is_a_bad_line(
        self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """The first line with a hash sets the shape: lines before it that have none, and later lines of another
        shape, get error lines in their places (numbered on standard error); the others are answered; exit 2."""
        leaked = ntlm_hex("Passw0rd!")
        stdin = f"Account:Hash\n{pwdump('alice', leaked)}\ncarol:{leaked}\n{leaked}\n{pwdump('dave', leaked)}\n"
        status, out, err = check(["--store", str(ntlm_store), "--hashes"], stdin.encode(), monkeypatch, capsys)
        assert status == 2
        not_pwdump = "error: not a pwdump line (account:rid:lmhash:nthash:::)"
        assert out[:5] == [
            "error: not a hex digest, an account:hash line or a pwdump line",
            "alice: compromised (seen 2,024 times)",
            not_pwdump,
            not_pwdump,
            "dave: compromised (seen 2,024 times)",
        ]
        assert [int(n) for n in re.findall(r"standard input line (\d+)", err)] == [1, 3, 4]
        assert "audit: 2 accounts checked, 2 leaked; 3 lines could not be checked" in out

    @pytest.mark.parametrize(
        ("line", "reason"),
        [
            (pwdump("x", ntlm_hex("a"), rid="r1"), "not a pwdump line"),
            (pwdump("x", ntlm_hex("a")[:31]), "not a pwdump line"),
            (pwdump("x", ntlm_hex("a"), tail=""), "not a pwdump line"),
            (pwdump("", ntlm_hex("a")), "empty account name"),
            (pwdump("x\x1b[2J", ntlm_hex("a")), "a control character in the account name"),
            (pwdump("x", "NO PASSWORD" + "*" * 21), "no NT hash"),
            ("", "empty line"),
            ("x" * 2_000, "longer than 1,024 bytes"),
        ],
        ids=["rid", "short-nt", "no-fields", "no-name", "control", "no-nt", "empty", "long"],
    )
    def test_malformed_pwdump_lines(
        self, ntlm_store: Path, line: str, reason: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """A malformed line among pwdump lines is a bad line with its reason, never an answer; exit 2."""
        stdin = f"{pwdump('alice', ntlm_hex('letmein'))}\n{line}\n".encode()
        status, out, err = check(["--store", str(ntlm_store), "--hashes"], stdin, monkeypatch, capsys)
        assert status == 2 and out[0] == "alice: compromised (seen 1 time)"
        assert out[1].startswith(f"error: {reason}") and f"standard input line 2: {reason}" in err

    def test_a_name_that_is_not_utf8(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """An account name that is not UTF-8 is a bad line (never printed)."""
        stdin = b"adm\xffin:500:" + f"{EMPTY_LM}:{ntlm_hex('letmein')}:::\n".encode()
        status, out, _ = check(
            ["--store", str(ntlm_store), "--hashes", "--hashes-format", "pwdump"], stdin, monkeypatch, capsys
        )
        assert status == 2 and out[0] == "error: the account name is not UTF-8"

    def test_an_ambiguous_line(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """HEX:HEX (a cracked list's HASH:PLAINTEXT as much as an account) is refused under auto, with what to pass;
        --hashes-format user reads it as an account."""
        stdin = f"{ntlm_hex('x')}:{ntlm_hex('letmein')}\n".encode()
        status, out, _ = check(["--store", str(ntlm_store), "--hashes"], stdin, monkeypatch, capsys)
        assert status == 2 and out == [f"error: {AMBIGUOUS}"]
        status, out, _ = check(["--store", str(ntlm_store), "--hashes-format", "user"], stdin, monkeypatch, capsys)
        assert status == 1 and out[0] == f"{ntlm_hex('x')}: compromised (seen 1 time)"

    def test_empty_and_lm_columns(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """The empty LM hash in either case and pwdump's NO PASSWORD are no LM hash; any other is; the empty
        password's NT hash is named, not counted as a shared password."""
        lines = [
            pwdump("a", EMPTY_NT),
            pwdump("b", EMPTY_NT, EMPTY_LM.upper()),
            pwdump("c", ntlm_hex("x"), "NO PASSWORD" + "*" * 21),
            pwdump("d", ntlm_hex("x"), SOME_LM.lower()),
        ]
        _, out, _ = check(
            ["--store", str(ntlm_store), "--hashes", "--json"], "\n".join(lines).encode(), monkeypatch, capsys
        )
        summary = answers(out)[1]
        assert summary is not None
        assert summary["empty_password"] == {"accounts": 2, "members": ["a", "b"]}
        assert summary["lm_hash"] == {"accounts": 1, "members": ["d"]}
        assert summary["shared"] == {"groups": 1, "accounts": 2, "members": [["c", "d"]]}


class TestSummary:
    def test_digests_alike_in_their_first_bytes_are_not_shared(
        self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """Groups are of whole digests: digests equal in their first 8 bytes, or in all but the lowest bits of the
        first one (what the grouping sorts by, the row's place in those bits), are no group; equal ones are."""
        base = "a1b2c3d4e5f60718" + "0" * 16
        nts = [
            base,
            base[:16] + "0" * 15 + "1",  # the first 8 bytes alike, the rest not
            "a0" + base[2:],  # only the lowest bit of the first byte not alike
            "a3" + base[2:],
            base.upper(),  # the first one's, in upper case
        ]
        lines = [pwdump(f"u{i}", nt) for i, nt in enumerate(nts)]
        _, out, _ = check(
            ["--store", str(ntlm_store), "--hashes", "--json"], "\n".join(lines).encode(), monkeypatch, capsys
        )
        summary = answers(out)[1]
        assert summary is not None and summary["shared"] == {"groups": 1, "accounts": 2, "members": [["u0", "u4"]]}


class TestScheme:
    def test_forgetting_hash_ntlm_hints_at_it(
        self, leaked_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """A 32-digit digest where the scheme is sha1 gets build's hint: pass --hash ntlm."""
        stdin = f"{ntlm_hex('x')}\nalice:{ntlm_hex('y')}\n".encode()
        for shape in ("bare", "user"):
            status, out, _ = check(["--store", str(leaked_store), "--hashes-format", shape], stdin, monkeypatch, capsys)
            assert status == 2
            assert "look like ntlm hashes (32 hex digits) but the scheme is sha1; pass --hash ntlm" in "\n".join(out)

    def test_pwdump_against_a_sha1_store_is_refused(
        self, leaked_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """pwdump lines (NT hashes) against a SHA-1 store: one clear error naming the store, whether the shape was
        named (before reading) or told from a line (naming it); exit 2, no answer."""
        stdin = accounts_input()["pwdump"]
        for argv, says in [
            (["--hashes-format", "pwdump"], "pwdump lines hold NT hashes"),
            (["--hashes"], "standard input line 1 is a pwdump line: pwdump lines hold NT hashes"),
        ]:
            status, out, err = check(["--store", str(leaked_store), *argv], stdin, monkeypatch, capsys)
            assert (status, out) == (2, [])
            assert err.startswith(
                f"credcheck: error: {says} (scheme ntlm), but --store {leaked_store} holds sha1 hashes"
            )

    def test_pwdump_against_hash_sha1_is_refused(self, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """--hash sha1 with pwdump lines contradicts them: an error before any request."""
        argv = ["--api", "http://127.0.0.1:9", "--hash", "sha1", "--hashes-format", "pwdump"]
        status, out, err = check(argv, accounts_input()["pwdump"], monkeypatch, capsys)
        assert (status, out) == (2, []) and "--hash sha1 asks for sha1 ranges" in err


@contextlib.contextmanager
def counted_api(store: Path) -> Iterator[tuple[str, list[str]]]:
    """A range API serving ``store`` on 127.0.0.1, and the paths it was asked for."""
    from credcheck.server import make_app

    asked: list[str] = []
    with contextlib.closing(make_app([store])) as app:

        def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            asked.append(environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", ""))
            return app(environ, start_response)

        with wsgi_in_thread(counting) as (url, _):
            yield url, asked


class TestSources:
    @pytest.fixture
    def many(self) -> tuple[bytes, set[str]]:
        """300 pwdump accounts, one in three leaked."""
        leaked = list(LEAKED)
        lines, found = [], set()
        for i in range(300):
            password = leaked[i % 3] if i % 3 == 0 else f"clean {i}"
            lines.append(pwdump(f"u{i}", ntlm_hex(password)))
            if i % 3 == 0:
                found.add(f"u{i}")
        return "\n".join(lines).encode(), found

    @pytest.mark.parametrize("source", ["store", "filter", "api"])
    def test_every_source_names_the_same_accounts(
        self,
        tmp_path: Path,
        ntlm_store: Path,
        many: tuple[bytes, set[str]],
        source: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: Any,
    ) -> None:
        """A store, a filter and a range API (asked for NTLM ranges without --hash, one request per distinct prefix
        rather than per account) name the same leaked accounts."""
        stdin, found = many
        if source == "filter":
            bloom = tmp_path / "ntlm.bloom"
            assert main(["build", str(tmp_path / "ntlm.txt"), "--filter", str(bloom), "--hash", "ntlm", "-q"]) == 0
            argv = ["--filter", str(bloom)]
        elif source == "store":
            argv = ["--store", str(ntlm_store)]
        with contextlib.ExitStack() as stack:
            if source == "api":
                url, asked = stack.enter_context(counted_api(ntlm_store))
                argv = ["--api", url]
            status, out, _ = check([*argv, "--hashes", "--json"], stdin, monkeypatch, capsys)
        lines, _ = answers(out)
        assert status == 1 and {line["account"] for line in lines if line["compromised"]} == found
        if source == "api":
            prefixes = {ntlm_hex(p)[:5] for p in [*LEAKED, *(f"clean {i}" for i in range(300))]}
            assert len(asked) <= len(prefixes) and all(path.endswith("?mode=ntlm") for path in asked)


class TestFailures:
    def test_a_range_the_api_cannot_give(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """An account whose range the API cannot give gets an error line in its place, naming no account; the others
        are answered and named, the summary counts it as unchecked; exit 2."""
        from credcheck.server import make_app

        lines = [
            pwdump("alice", ntlm_hex("Passw0rd!")),
            pwdump("bob", ntlm_hex("letmein")),
            pwdump("carol", ntlm_hex("x")),
        ]
        broken = ntlm_hex("letmein")[:5]
        with contextlib.closing(make_app([ntlm_store])) as app, wsgi_in_thread(failing_range(app, broken)) as (url, _):
            status, out, err = check(["--api", url, "--hashes"], "\n".join(lines).encode(), monkeypatch, capsys)
        assert status == 2
        assert out[0] == "alice: compromised (seen 2,024 times)" and out[2] == "carol: not found"
        assert out[1].startswith(f"error: range {broken}: ") and "bob" not in out[1] + err
        assert "audit: 2 accounts checked, 1 leaked; 1 line could not be checked" in out


class TestPrivacy:
    def test_no_hash_unless_asked(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """No digest reaches the output or standard error, bad lines included; --show-hashes prints each line's
        (upper case) beside its answer."""
        digests = [ntlm_hex("Passw0rd!"), ntlm_hex("clean 1"), SOME_LM, EMPTY_LM]
        stdin = f"{pwdump('alice', digests[0].lower(), SOME_LM)}\n{pwdump('bob', digests[1], rid='x')}\n".encode()
        _, out, err = check(["--store", str(ntlm_store), "--hashes"], stdin, monkeypatch, capsys)
        text = ("\n".join(out) + err).upper()
        assert not any(digest.upper() in text for digest in digests)
        _, out, _ = check(["--store", str(ntlm_store), "--hashes", "--show-hashes"], stdin, monkeypatch, capsys)
        assert out[0] == f"alice {digests[0]}: compromised (seen 2,024 times)"
        _, out, _ = check(
            ["--store", str(ntlm_store), "--hashes", "--show-hashes", "--json"], stdin, monkeypatch, capsys
        )
        assert json.loads(out[0]) == {"account": "alice", "hash": digests[0], "compromised": True, "count": 2_024}

    def test_show_hashes_is_for_hashes(self, ntlm_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        """--show-hashes without --hashes is a usage error: a password is never echoed."""
        status, out, err = check(["--store", str(ntlm_store), "--show-hashes"], b"hunter2\n", monkeypatch, capsys)
        assert (status, out) == (2, []) and "--show-hashes is for --hashes input" in err and "hunter2" not in err

    def test_names_and_hashes_stay_out_of_errors_and_logs(
        self, leaked_store: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The error of a contradicted scheme names neither an account nor a hash, in its message or in the locals
        of its frames; no log record holds one either."""
        from credcheck import open as open_source

        secret_name, secret_hash = "CONTOSO\\secret-admin", ntlm_hex("their password")
        block = f"{pwdump(secret_name, secret_hash)}\n".encode()
        caplog.set_level(logging.DEBUG)
        lines = HashLines(open_source(leaked_store), says="the store holds sha1 hashes", batch=16)
        with lines, pytest.raises(UsageError) as caught:
            lines.answer(block, 1, False)
        secrets: list[str | bytes] = [secret_name, secret_hash, secret_hash.lower(), block, secret_name.encode()]
        assert secrets_in_frames(caught.value, secrets) == []
        assert not any(secret_name in r.getMessage() or secret_hash in r.getMessage().upper() for r in caplog.records)
