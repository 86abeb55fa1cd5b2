"""The credcheck command as a whole (credcheck.cli): its entry points, its command tree and flags, the demo."""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from credcheck import sha1_hex
from credcheck.cli import main, make_parser
from credcheck.cli._flags import FLAGS


def test_module_entry_point_and_help() -> None:
    """python -m credcheck --help lists the commands."""
    out = subprocess.run(
        [sys.executable, "-m", "credcheck", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(cmd in out for cmd in ("build", "check", "demo"))


def test_console_script_is_cli_main() -> None:
    """The `credcheck` console script runs credcheck.cli:main."""
    (script,) = (ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == "credcheck")
    assert script.value == "credcheck.cli:main" and script.load() is main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command of ``parser`` (its path of names) and its parser, subcommands of subcommands too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


class TestTree:
    def test_commands(self) -> None:
        """The password tier's commands at the top, the pair tier's under `pairs`; one serve for both."""
        tree = [" ".join(path) for path, _ in _commands(make_parser())]
        top = ["build", "check", "serve", "export", "mirror", "info", "demo", "pairs"]
        assert tree == [*top, "pairs build", "pairs check", "pairs keygen"]

    def test_one_meaning_per_flag(self) -> None:
        """A flag name has one dest, metavar and type in every command, and one taken by several commands is
        defined once, in cli._flags."""
        meanings: dict[str, set[tuple[object, ...]]] = collections.defaultdict(set)
        takers: dict[str, list[str]] = collections.defaultdict(list)
        for path, parser in _commands(make_parser()):
            for action in parser._actions:
                for flag in action.option_strings:
                    meanings[flag].add((action.dest, action.metavar, action.type))
                    takers[flag].append(" ".join(path))
        assert {flag: sorted(map(str, seen)) for flag, seen in meanings.items() if len(seen) > 1} == {}
        shared = {flag for flag, commands in takers.items() if len(commands) > 1} - {"-h", "--help", "-q"}
        assert shared <= set(FLAGS) | {f"--no-{flag[2:]}" for flag in FLAGS}  # a shared switch's negation too

    @pytest.mark.parametrize(
        ("argv", "refusal"),
        [
            (["keygen", "KEY"], "invalid choice: 'keygen'"),
            (["build", "C", "--pairs", "P", "--key", "KEY"], "unrecognized arguments: --pairs P --key KEY"),
            (["check", "--pairs", "P", "--key", "KEY"], "one of the arguments --filter --store --api is required"),
            (["mirror", "http://127.0.0.1:9", "--store", "S", "--workers", "2"], "unrecognized arguments: --workers 2"),
            (["pairs", "check", "--pairs", "http://127.0.0.1:9"], "expected a file, got a URL"),
            (["check", "--store", "https://127.0.0.1:9"], "expected a file, got a URL"),
            (["check", "--api", "127.0.0.1:9"], "expected the service's http:// or https:// URL"),
            (["pairs", "check", "--api", "/srv/leak.pairs"], "expected the service's http:// or https:// URL"),
            (["mirror", "127.0.0.1:9", "--store", "S"], "expected the service's http:// or https:// URL"),
            (["serve", "--pairs", "https://127.0.0.1:9/p", "--key", "KEY"], "expected a file, got a URL"),
        ],
    )
    def test_spellings_refused(
        self,
        argv: list[str],
        refusal: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The old spellings (keygen, build --pairs, check --pairs, mirror --workers) are gone, and a URL where
        a file goes (or a file where a URL goes) is refused before anything runs: exit 2, the usage and why."""
        monkeypatch.chdir(tmp_path)  # where anything would be written if one ran after all
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("usage: credcheck") and refusal in err

    @pytest.mark.parametrize(
        "argv",
        [
            ["check", "--store", "https://user:hunter2@127.0.0.1:9"],
            ["check", "--api", "user:hunter2@127.0.0.1:9"],
            ["pairs", "check", "--api", "hunter2"],
        ],
    )
    def test_refusals_do_not_echo(self, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """A URL refused as a file, or a value refused as a URL, is not repeated: it may hold credentials."""
        with pytest.raises(SystemExit):
            main(argv)
        assert "hunter2" not in capsys.readouterr().err


def test_demo_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    """credcheck demo builds, serves on loopback and flags the leaked users through both paths, prefixes only."""
    from credcheck._demo import USERS

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("LEAKED, seen 1 time ") == 4 and out.count("not leaked (") == 4  # API and filter agree
    assert out.count("GET /range/") == len(USERS) and "sent 5 of 40 hex digits" in out
    for _, password in USERS:
        assert sha1_hex(password) not in out  # only prefixes are shown
        if not password.isdigit():  # a digit string could turn up in a port number or a timing
            assert password not in out  # masked


class TestWording:
    def test_version_names_the_kernels(self) -> None:
        """--version says which kernels run (C or numpy)."""
        from credcheck._native import NAME

        out = subprocess.run(
            [sys.executable, "-m", "credcheck", "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert out.startswith("credcheck ") and ("(C kernels)" if NAME == "c" else "numpy kernels") in out

    def test_demo_reads_as_a_person_writes(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The demo names its kernels and never says "0 ... fewer than 1 times" or "1 false positives"."""
        assert main(["demo"]) == 0
        out = capsys.readouterr().out
        assert "kernels" in out and "fewer than 1 time" not in out and "dropped 0" not in out
        assert not re.search(r"(?<![\d,])1 (false positives|times|lines|bad lines)\b", out)

    def test_story_plurals(self) -> None:
        """The demo's build story puts each number with its noun in the right number, and skips the zeros."""
        from credcheck._demo import _story
        from credcheck.build import BuildReport

        report = BuildReport("sha1", 3, [], lines_read=1, kept=1, below_min_count=1, bad_lines=2, duplicates_merged=0)
        (line,) = _story(report)
        assert line.startswith("Read 1 line in") and "kept 1 SHA-1 hash (" in line
        assert "1 hash seen fewer than 3 times dropped" in line and "2 bad lines" in line
        assert "duplicate" not in line


@pytest.mark.parametrize(
    ("module", "unloaded"),
    [
        ("credcheck", ("credcheck.pairs", "credcheck.cli", "pysodium", "distributed", "httpx", "granian", "tqdm")),
        ("credcheck.cli", ("pysodium", "distributed", "httpx", "granian", "gunicorn", "tqdm")),
    ],
)
def test_import_is_light(module: str, unloaded: tuple[str, ...]) -> None:
    """`import credcheck` loads neither the pair tier nor the CLI nor an extra; `import credcheck.cli` (above
    both tiers) loads no extra: pysodium, Dask, httpx, the servers and tqdm wait for the command that needs them."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({unloaded})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
