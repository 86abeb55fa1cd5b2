"""Every command's options from the environment and a TOML file (credcheck.cli._config): one precedence, the
action's own checks, no typo ignored, the effective options printed without secrets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

from credcheck import open as open_source
from credcheck.cli import _config, main, make_parser
from credcheck.cli._flags import Parser
from credcheck.server import _runners as runners

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse(argv: list[str]) -> argparse.Namespace:
    return make_parser().parse_args(argv)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The usage error ``credcheck ARGV`` exits 2 with: its last line."""
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def printed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``credcheck ARGV --print-config`` prints (it exits 0, having run nothing else)."""
    assert main([*argv, "--print-config"]) == 0
    return capsys.readouterr().out


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "credcheck.toml"
    path.write_text(text)
    return path


def leaves() -> list[tuple[str, ...]]:
    return [
        words
        for words, parser in _config._leaves(make_parser())
        if isinstance(parser.layers, _config._Layers)  # every command with options
    ]


class TestPrecedence:
    @pytest.mark.parametrize(
        ("flag", "env", "file", "port", "source"),
        [
            (True, True, True, 7001, "command line"),
            (False, True, True, 7002, "env CREDCHECK_SERVE_PORT"),
            (False, False, True, 7003, "config file"),
            (False, False, False, 8000, "default"),
        ],
    )
    def test_command_line_then_environment_then_file_then_default(
        self,
        flag: bool,
        env: bool,
        file: bool,
        port: int,
        source: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Each source wins over the ones below it, and the printed options say which one gave the value."""
        argv = ["serve", "--port", "7001"] if flag else ["serve"]
        if env:
            monkeypatch.setenv("CREDCHECK_SERVE_PORT", "7002")
        if file:
            argv += ["--config", str(config(tmp_path, "[serve]\nport = 7003\n"))]
        assert parse(argv).port == port
        (line,) = [line for line in printed(argv, capsys).splitlines() if line.startswith("port =")]
        assert line.split("#")[1].strip() == source and f"= {port} " in line

    def test_values_are_converted_by_the_actions_type(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A value from the environment or the file goes through the flag's own type: numbers, a prefix range."""
        monkeypatch.setenv("CREDCHECK_EXPORT_PREFIXES", "00000-000FF")
        path = config(tmp_path, '[export]\nstore = ["a.store"]\nout = "out"\npad-to = 12\n')
        args = parse(["export", "--config", str(path)])
        assert (args.prefixes, args.pad_to, args.store, args.out) == (range(0, 0x100), 12, ["a.store"], "out")

    def test_a_list_is_replaced_not_extended(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--store on the command line replaces the stores of the environment, which replace the file's."""
        path = config(tmp_path, '[serve]\nstore = ["file.store"]\n')
        assert parse(["serve", "--config", str(path)]).store == ["file.store"]
        monkeypatch.setenv("CREDCHECK_SERVE_STORE", "a.store 'b c.store'")
        assert parse(["serve", "--config", str(path)]).store == ["a.store", "b c.store"]
        assert parse(["serve", "--config", str(path), "--store", "x.store"]).store == ["x.store"]

    def test_the_config_file_is_named_by_the_environment_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """CREDCHECK_CONFIG names the file when --config does not; --config wins over it."""
        monkeypatch.setenv("CREDCHECK_CONFIG", str(config(tmp_path, "[serve]\nhost = '0.0.0.0'\n")))
        assert parse(["serve"]).host == "0.0.0.0"
        assert f"# config file: {tmp_path / 'credcheck.toml'} (from CREDCHECK_CONFIG)" in printed(["serve"], capsys)
        other = tmp_path / "other.toml"
        other.write_text("[serve]\nhost = '::1'\n")
        assert parse(["serve", "--config", str(other)]).host == "::1"

    def test_an_empty_variable_is_not_set(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """CREDCHECK_SERVE_PORT= (as a unit file may leave it) leaves the default."""
        monkeypatch.setenv("CREDCHECK_SERVE_PORT", "")
        assert parse(["serve"]).port == 8000

    def test_the_command_runs_with_them(self, hibp_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A build whose output and scheme come from the environment and the file writes what they say."""
        monkeypatch.setenv("CREDCHECK_BUILD_STORE", str(tmp_path / "from-env.store"))
        path = config(tmp_path, f"[build]\nsources = [{str(hibp_file)!r}]\nmin-count = 3\nquiet = true\n")
        assert main(["build", "--config", str(path)]) == 0
        with open_source(str(tmp_path / "from-env.store")) as checker:
            assert not checker.check("123456").compromised  # seen twice: under min-count 3
            assert checker.check("qwerty").count == 3


class TestSwitches:
    @pytest.mark.parametrize(("word", "on"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)])
    def test_a_switch_from_the_environment(self, word: str, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        """A switch is 1/0, true/false, yes/no or on/off in the environment."""
        monkeypatch.setenv("CREDCHECK_MIRROR_UPDATE", word)
        assert parse(["mirror", "--store", "s"]).update is on

    def test_each_source_can_turn_a_switch_off(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A switch the file turns on is turned off by the environment, and by --no-SWITCH on the command line."""
        path = config(tmp_path, "[mirror]\nstore = 's'\nupdate = true\n")
        assert parse(["mirror", "--config", str(path)]).update is True
        assert parse(["mirror", "--config", str(path), "--no-update"]).update is False
        monkeypatch.setenv("CREDCHECK_MIRROR_UPDATE", "0")
        assert parse(["mirror", "--config", str(path)]).update is False
        assert parse(["mirror", "--config", str(path), "--update"]).update is True

    def test_negations_are_hidden_from_help(self) -> None:
        """--no-SWITCH exists for every switch but is not listed one by one (the epilog says so once)."""
        build = dict(_config._leaves(make_parser()))["build",]
        assert {"--no-update", "--no-strict", "--no-json", "--no-quiet"} <= set(_config.negations(build))
        assert "--no-update" not in build.format_help() and "--no-SWITCH" in build.format_help()


class TestRefusals:
    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            (
                "CREDCHECK_SERVE_PORT",
                "eighty",
                "environment variable CREDCHECK_SERVE_PORT: invalid int value: 'eighty'",
            ),
            (
                "CREDCHECK_SERVE_BODIES",
                "never",
                "environment variable CREDCHECK_SERVE_BODIES: invalid choice: 'never' (choose from 'background', "
                "'wait', 'off')",
            ),
            ("CREDCHECK_SERVE_STORE", "https://u:secret@x/", "CREDCHECK_SERVE_STORE: expected a file, got a URL"),
            ("CREDCHECK_SERVE_JSON", "1", "CREDCHECK_SERVE_JSON: serve has no such option"),
            ("CREDCHECK_SERVE_PROT", "1", "serve has no such option (did you mean CREDCHECK_SERVE_PORT?)"),
            ("CREDCHECK_MIRROR_UPDATE", "maybe", "CREDCHECK_MIRROR_UPDATE: expected 1 or 0"),
            ("CREDCHECK_SERVE_STORE", "'a.store", "CREDCHECK_SERVE_STORE: No closing quotation"),
        ],
    )
    def test_a_bad_variable_is_refused_as_the_flag_would_be(
        self,
        variable: str,
        value: str,
        message: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A bad value gets the flag's own message, naming the variable; a variable no option has is an error."""
        monkeypatch.setenv(variable, value)
        command = variable.split("_")[1].lower()
        line = refused([command, "--store", "s"] if command == "mirror" else [command], capsys)
        assert line.startswith(f"credcheck {command}: error: ") and message in line
        assert "secret" not in line

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[serve]\nprot = 1\n", "[serve] unknown key 'prot' (did you mean 'port'?)"),
            (
                "[serve]\nfrobnicate = 1\n",
                "[serve] unknown key 'frobnicate': credcheck serve has no option --frobnicate",
            ),
            ("[serv]\nport = 1\n", "unknown table serv (did you mean [serve]?)"),
            (
                "port = 1\n",
                "unknown key port: options go in [build], [check], [export], [info], [mirror], [pairs], [serve]",
            ),
            ("[pairs.biuld]\nworkers = 1\n", "unknown table pairs.biuld (did you mean [pairs.build]?)"),
            ("[build]\nworkers = 1\n", "[build] unknown key 'workers'"),  # pairs build's, not build's
            ("[serve]\nport = 'eighty'\n", "[serve] port: invalid int value: 'eighty'"),
            ("[serve]\nport = 80.5\n", "[serve] port: invalid int value: '80.5'"),
            ("[serve]\nport = true\n", "[serve] port: expected a string or a number"),
            ("[serve]\nstore = 'a.store'\n", "[serve] store: expected an array of strings or numbers"),
            ("[serve]\nhost = ['a']\n", "[serve] host: expected a string or a number"),
            ("[serve]\nbodies = 'never'\n", "[serve] bodies: invalid choice: 'never'"),
            ("[mirror]\nupdate = 'yes'\n", "[mirror] update: expected true or false"),
            ("[serve\nport = 1\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1"),
            ("[serve]\nport = 1\nport = 2\n", "not valid TOML: Cannot overwrite a value (at line 3"),
            ("serve = 1\n", "serve must be a table, [serve], of the command's options"),
        ],
    )
    def test_a_bad_file_is_refused_naming_the_key(
        self, text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A typo in any table (not only the command's), a value the flag would refuse, or a file that is not TOML
        is an error naming the file and the key; nothing in it is silently ignored."""
        path = config(tmp_path, text)
        line = refused(
            ["serve", "--config", str(path)] if "mirror" not in text else ["mirror", "--config", str(path)], capsys
        )
        assert f"error: config file {path}: " in line and message in line

    def test_a_missing_file_is_refused(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--config naming no file is an error, never the defaults."""
        line = refused(["serve", "--config", str(tmp_path / "nowhere.toml")], capsys)
        assert line.endswith(f"config file {tmp_path / 'nowhere.toml'}: No such file or directory")


class TestGroupsAndRequired:
    def test_a_required_option_may_come_from_any_source(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """export's required --store and --out are satisfied by the file and the environment; missing, they are
        the usual error."""
        assert refused(["export"], capsys).endswith("the following arguments are required: --store, --out")
        monkeypatch.setenv("CREDCHECK_EXPORT_OUT", "dir")
        assert refused(["export"], capsys).endswith("the following arguments are required: --store")
        path = config(tmp_path, "[export]\nstore = ['a.store']\n")
        assert parse(["export", "--config", str(path)]).out == "dir"

    def test_a_required_positional_may_come_from_the_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """build's SOURCE... from the file; an empty list is refused."""
        assert refused(["build", "--store", "s"], capsys).endswith("the following arguments are required: SOURCE")
        path = config(tmp_path, "[build]\nsources = ['a.txt', 'b.txt']\n")
        assert parse(["build", "--config", str(path)]).sources == ["a.txt", "b.txt"]
        assert parse(["build", "c.txt", "--config", str(path)]).sources == ["c.txt"]
        empty = config(tmp_path, "[build]\nsources = []\n")
        assert "[build] sources: expected at least one value" in refused(["build", "--config", str(empty)], capsys)

    def test_a_required_group_may_come_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """check's one of --filter/--store/--api: from the environment too; none is argparse's own message."""
        assert refused(["check"], capsys).endswith("one of the arguments --filter --store --api is required")
        monkeypatch.setenv("CREDCHECK_CHECK_API", "http://127.0.0.1:9")
        assert parse(["check"]).api == "http://127.0.0.1:9"

    def test_the_highest_source_decides_a_group(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--store on the command line sets aside --api from the environment, which sets aside --filter from the
        file; two of a group from one source are refused, naming both."""
        path = config(tmp_path, "[check]\nfilter = 'f.bloom'\n")
        assert parse(["check", "--config", str(path)]).filter == "f.bloom"
        monkeypatch.setenv("CREDCHECK_CHECK_API", "http://127.0.0.1:9")
        args = parse(["check", "--config", str(path)])
        assert (args.filter, args.api) == (None, "http://127.0.0.1:9")
        args = parse(["check", "--config", str(path), "--store", "s.store"])
        assert (args.filter, args.store, args.api) == (None, "s.store", None)
        monkeypatch.setenv("CREDCHECK_CHECK_STORE", "s.store")
        assert refused(["check"], capsys).endswith(
            "the environment: CREDCHECK_CHECK_STORE and CREDCHECK_CHECK_API cannot be given together"
        )
        both = config(tmp_path, "[pairs.build]\nworkers = 2\nscheduler = 'tcp://127.0.0.1:9'\n")
        line = refused(["pairs", "build", "c.txt", "--pairs", "p", "--key", "k", "--config", str(both)], capsys)
        assert line.endswith("workers and scheduler cannot be given together")

    def test_the_command_line_still_refuses_both(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Two of a group on the command line stay argparse's own error."""
        assert "not allowed with argument" in refused(["check", "--store", "s", "--api", "http://127.0.0.1:9"], capsys)


class TestPrintConfig:
    def test_it_is_the_commands_table_and_reads_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The printed options are valid TOML: given back as the config file, they give the same options."""
        monkeypatch.setenv("CREDCHECK_MIRROR_PREFIXES", "00000-0FFFF")
        argv = ["mirror", "http://127.0.0.1:9", "--store", "s", "--fp-rate", "1e-3", "--update"]
        text = printed(argv, capsys)
        assert set(tomllib.loads(text)) == {"mirror"}
        monkeypatch.delenv("CREDCHECK_MIRROR_PREFIXES")
        again = vars(parse(["mirror", "--config", str(config(tmp_path, text))]))
        want = vars(parse(argv)) | {"prefixes": range(0x10000)}
        assert {k: v for k, v in again.items() if k not in ("config", "func")} == {
            k: v for k, v in want.items() if k not in ("config", "func")
        }

    def test_nothing_secret_is_shown(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A URL's user-info is masked and a key file is named, never read."""
        key = tmp_path / "pairs.key"
        key.write_bytes(b"KEYMATERIAL")
        monkeypatch.setenv("CREDCHECK_MIRROR_URL", "https://alice:hun@ter2@mirror.example/")
        text = printed(["mirror", "--store", "s"], capsys)
        assert "hun" not in text and "ter2" not in text and "alice" not in text
        assert 'url = "https://***@mirror.example/"' in text
        text = printed(["pairs", "check", "--pairs", "p", "--key", str(key)], capsys)
        assert f'key = "{key}"' in text and "KEYMATERIAL" not in text

    def test_options_named_as_secrets_are_masked(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An option named like a password, a token or a secret is printed masked, whatever its source."""
        root = Parser(prog="tool")
        sub = root.add_subparsers(dest="command", parser_class=Parser).add_parser("push")
        sub.add_argument("--api-token")
        sub.add_argument("--db-password")
        _config.install(root)
        monkeypatch.setenv("CREDCHECK_PUSH_API_TOKEN", "tok-123")
        args = root.parse_args(["push", "--db-password", "pw-456", "--print-config"])
        assert args.func.run(args) == 0
        out = capsys.readouterr().out
        assert "tok-123" not in out and "pw-456" not in out
        assert 'api-token = "********"' in out and 'db-password = "********"' in out


class TestEveryCommand:
    def test_every_command_with_options_is_layered(self) -> None:
        """The password and pair commands named in the issue, and every other command with options."""
        assert {("serve",), ("build",), ("mirror",), ("export",), ("pairs", "build")} <= set(leaves())
        assert ("demo",) not in leaves()

    @pytest.mark.parametrize("words", leaves(), ids=" ".join)
    def test_every_option_has_a_variable_and_a_key(self, words: tuple[str, ...]) -> None:
        """Each option of each command answers to CREDCHECK_<COMMAND>_<OPTION> and to its long name in the
        command's table, and the help says so."""
        parser = dict(_config._leaves(make_parser()))[words]
        layers = parser.layers
        assert isinstance(layers, _config._Layers)
        prefix = "CREDCHECK_" + "_".join(w.upper() for w in words) + "_"
        for option in layers.options.values():
            assert option.env == prefix + option.key.upper().replace("-", "_")
            assert option.flag in ("--" + option.key, option.action.metavar)
        assert prefix + "<OPTION>" in parser.format_help().replace("\n", " ")

    def test_a_new_flag_needs_no_code(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A flag added to any command later takes part as it is: its type and choices apply from each source."""
        root = Parser(prog="tool")
        sub = root.add_subparsers(dest="command", parser_class=Parser).add_parser("run")
        sub.add_argument("--level", type=int, choices=[1, 2, 3], default=1)
        sub.add_argument("--tag", action="append", default=[])
        _config.install(root)
        monkeypatch.setenv("CREDCHECK_RUN_LEVEL", "3")
        path = config(tmp_path, "[run]\nlevel = 2\ntag = ['a', 'b']\n")
        args = root.parse_args(["run", "--config", str(path)])
        assert (args.level, args.tag) == (3, ["a", "b"])
        monkeypatch.setenv("CREDCHECK_RUN_LEVEL", "4")
        with pytest.raises(SystemExit):
            root.parse_args(["run"])

    def test_the_workers_environment_is_no_option(self) -> None:
        """What serve hands its granian workers in the environment is under no command's prefix (it used to be
        CREDCHECK_SERVE_PAIRS and CREDCHECK_SERVE_BODIES: --pairs and --bodies to the next serve)."""
        handed = [runners._STORES_ENV, runners._CACHE_ENV, runners._BODIES_ENV, runners._PAIRS_ENV]
        prefixes = ["CREDCHECK_" + "_".join(w.upper() for w in words) + "_" for words in leaves()]
        assert [name for name in handed if any(name.startswith(prefix) for prefix in prefixes)] == []


def test_print_config_of_every_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--print-config works for every command given its required options (here from the environment)."""
    needed: dict[str, Any] = {
        "CREDCHECK_BUILD_SOURCES": "a.txt",
        "CREDCHECK_CHECK_STORE": "s",
        "CREDCHECK_EXPORT_STORE": "s",
        "CREDCHECK_EXPORT_OUT": "o",
        "CREDCHECK_MIRROR_STORE": "s",
        "CREDCHECK_PAIRS_BUILD_SOURCES": "c.txt",
        "CREDCHECK_PAIRS_BUILD_PAIRS": "p",
        "CREDCHECK_PAIRS_BUILD_KEY": "k",
        "CREDCHECK_PAIRS_CHECK_PAIRS": "p",
        "CREDCHECK_PAIRS_KEYGEN_KEYFILE": "k",
        "CREDCHECK_INFO_FILES": "f",
    }
    for name, value in needed.items():
        monkeypatch.setenv(name, value)
    for words in leaves():
        text = printed(list(words), capsys)
        assert tomllib.loads(text) != {}
