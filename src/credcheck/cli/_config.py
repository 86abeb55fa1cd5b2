"""Every command's options from the environment and a TOML file as well as from the command line, with one
precedence: **command line > environment > config file > defaults**.

:func:`install` layers each command's parser once, from its argparse actions alone, so every command and every
flag added later takes part without code of its own:

- an option's environment variable is ``CREDCHECK_<COMMAND>_<OPTION>``: the command's words and the option's long
  name, upper case, ``-`` as ``_`` (``CREDCHECK_SERVE_PORT``, ``CREDCHECK_PAIRS_BUILD_MAX_MEMORY``, the positional
  ``URL`` of mirror as ``CREDCHECK_MIRROR_URL``); an empty variable counts as not set. A variable under a command's
  prefix that names none of its options is an error (a typo is never ignored);
- its key in the file is the long name in the command's table (``[serve]`` ``port = 8080``, ``[pairs.build]``
  ``max-memory = "2GiB"``); the file is named by ``--config FILE``, else by ``CREDCHECK_CONFIG``. The whole file
  is checked, whichever command reads it: an unknown table or key, or a file that is not TOML, is an error naming
  it;
- a value from either goes through the action's own ``type`` and ``choices``, so it is refused as the flag would
  be, naming the variable or the key; a switch is ``1``/``0`` (``true``/``false``, ``yes``/``no``, ``on``/``off``)
  in the environment and a boolean in the file, and ``--no-SWITCH`` turns it off on the command line; an option
  given several times (``--store``) or taking several values is a TOML array, and words in the environment
  (split as a shell would: ``CREDCHECK_SERVE_STORE="sha1.store ntlm.store"``). A source replaces, never extends,
  the lists of the sources below it;
- in a mutually exclusive group, the highest source that gives one of its options decides, and one source giving
  two of them is an error; a required option may come from any source;
- ``--print-config`` prints the effective options as the TOML table of the command, each with where its value
  came from, instead of running the command. Nothing is read from the files the options name (a key file stays
  where it is); an option named like a password, a token or a secret is masked, and so is the user-info of a URL.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, NoReturn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, before it joined the standard library
    import tomli as tomllib

from ._flags import Parsed, ParseKnown, Parser, add
from ._runner import EXIT_OK, Command

__all__ = ["CONFIG_ENV", "PRECEDENCE", "install", "negations"]

#: The environment variable that names the config file when --config does not.
CONFIG_ENV: Final = "CREDCHECK_CONFIG"
ENV_PREFIX: Final = "CREDCHECK_"
PRECEDENCE: Final = "command line > environment > config file > defaults"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
#: An option whose name says it holds a secret is never printed.
_SECRET_NAME: Final = re.compile(r"pass(word)?|secret|token|credential", re.IGNORECASE)
_MASK: Final = '"********"'
#: Actions that are no option of the command: help, version, the command's subcommands.
_NOT_OPTIONS: Final = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


class _Unset(list[Any]):
    """Not given on the command line: every layered action's default while the command line is parsed (a list,
    so that an append action copies it into a new plain list)."""

    __slots__ = ()

    def __copy__(self) -> list[Any]:
        return []

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)


def _is_list(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*")


def negations(parser: argparse.ArgumentParser) -> list[str]:
    """The ``--no-SWITCH`` flags :func:`install` adds to ``parser`` (hidden from its help)."""
    return [
        flag
        for action in parser._actions
        if isinstance(action, argparse._StoreFalseAction) and action.help == argparse.SUPPRESS
        for flag in action.option_strings
        if flag.startswith("--no-")
    ]


@dataclasses.dataclass(frozen=True)
class _Option:
    """A configurable action of one command: its key in the file and its environment variable."""

    action: argparse.Action
    key: str
    env: str

    @property
    def flag(self) -> str:
        """How the command line names it: its long flag, or a positional's metavar."""
        if self.action.option_strings:
            return self.action.option_strings[-1]
        return str(self.action.metavar or self.action.dest)


@dataclasses.dataclass
class _Value:
    """An option's effective value and where it came from."""

    value: Any
    source: str


def _key(action: argparse.Action) -> str:
    longs = [flag for flag in action.option_strings if flag.startswith("--")]
    return longs[0][2:] if longs else action.dest.replace("_", "-")


def _words(words: Sequence[str]) -> str:
    return "_".join(word.upper().replace("-", "_") for word in words)


class _Schema:
    """Every layered command of the tree by its words, for checking a whole config file."""

    def __init__(self) -> None:
        self.commands: dict[tuple[str, ...], _Layers] = {}

    def check(self, data: Mapping[str, Any], path: str, error: Callable[[str], NoReturn]) -> None:
        """Refuse a table or key of the file that no command has (a typo), naming it and what was meant."""
        self._check_table(data, (), path, error)

    def _check_table(
        self, table: Mapping[str, Any], words: tuple[str, ...], path: str, error: Callable[[str], NoReturn]
    ) -> None:
        layers = self.commands.get(words)
        below = sorted(
            {cmd[len(words)] for cmd in self.commands if len(cmd) > len(words) and cmd[: len(words)] == words}
        )
        for name, value in table.items():
            if layers is not None and name in layers.options:
                continue
            dotted = ".".join((*words, name))
            if name in below:
                if not isinstance(value, dict):
                    error(f"{path}: {dotted} must be a table, [{dotted}], of the command's options")
                self._check_table(value, (*words, name), path, error)
                continue
            if layers is None:  # not a command's table: only the tables of commands go here
                hint = difflib.get_close_matches(name, below, n=1) if isinstance(value, dict) else []
                tables = ", ".join(f"[{'.'.join((*words, b))}]" for b in below)
                error(
                    f"{path}: unknown {'table' if isinstance(value, dict) else 'key'} {dotted}"
                    + (f" (did you mean [{'.'.join((*words, hint[0]))}]?)" if hint else f": options go in {tables}")
                )
            hint = difflib.get_close_matches(name, layers.options, n=1)
            error(
                f"{path}: [{'.'.join(words)}] unknown key {name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else f": credcheck {layers.command} has no option --{name}")
            )


class _Layers:
    """One command's options from its other sources (see the module's docstring)."""

    def __init__(self, parser: Parser, words: tuple[str, ...], schema: _Schema) -> None:
        self.words, self.schema = words, schema
        self.command = " ".join(words)
        self.env_prefix = f"{ENV_PREFIX}{_words(words)}_"
        self.options: dict[str, _Option] = {}
        for action in parser._actions:
            if isinstance(action, _NOT_OPTIONS) or action.dest in ("config", "print_config"):
                continue
            if action.dest in {option.action.dest for option in self.options.values()}:
                continue  # a --no-SWITCH: its switch's
            key = _key(action)
            self.options[key] = _Option(action, key, self.env_prefix + _words([key]))
        self.required = [option for option in self.options.values() if option.action.required]
        self.groups = [
            (group, [option for option in self.options.values() if option.action in group._group_actions])
            for group in parser._mutually_exclusive_groups
        ]

    def parse(self, parser: Parser, parse: ParseKnown, args: Sequence[str] | None, namespace: Any) -> Parsed:
        """Parse the command line (every option's default left unset, nothing required yet), then fill in what it
        did not give from the environment, the file and the defaults, and check what is required."""
        actions = [option.action for option in self.options.values()]
        saved = [(action.default, action.required) for action in actions]
        groups_required = [group.required for group, _ in self.groups]
        try:
            for action in actions:
                action.default, action.required = _UNSET, False
            for group, _ in self.groups:
                group.required = False
            namespace, extras = parse(args, namespace)
        finally:
            for action, (default, required) in zip(actions, saved, strict=True):
                action.default, action.required = default, required
            for (group, _), required in zip(self.groups, groups_required, strict=True):
                group.required = required
        config, origin = namespace.config, "--config"
        if config is None and os.environ.get(CONFIG_ENV):
            config, origin = os.environ[CONFIG_ENV], CONFIG_ENV
            namespace.config = config
        values = self._layer(parser, namespace, config)
        for option in self.options.values():
            setattr(namespace, option.action.dest, values[option.key].value)
        self._check_required(parser, values)
        if namespace.print_config:  # run instead of the command, by the one runner (a closed pipe, a stop)
            text = self.show(values, None if config is None else f"{config} (from {origin})")
            namespace.func = Command(functools.partial(_print, text))
        return namespace, extras

    def _layer(self, parser: Parser, namespace: argparse.Namespace, config: str | None) -> dict[str, _Value]:
        values: dict[str, _Value] = {}
        for option in self.options.values():
            given = getattr(namespace, option.action.dest, _UNSET)
            if given is not _UNSET:
                values[option.key] = _Value(given, "command line")
        env = self._from_env(parser)
        table = {} if config is None else self._from_file(parser, config)
        # a mutually exclusive group: the highest source that gives one of its options decides for all of them
        for _, members in self.groups:
            keys = [member.key for member in members]
            for source, name in ((values, None), (env, "the environment"), (table, f"config file {config}")):
                chosen = [key for key in keys if key in source and _chooses(source[key])]
                if len(chosen) > 1 and name is not None:
                    names = [self.options[key].env if source is env else key for key in chosen]
                    parser.error(f"{name}: {' and '.join(names)} cannot be given together")
                if chosen:
                    for key in keys:
                        if key not in chosen:
                            env.pop(key, None)
                            table.pop(key, None)
                    break
        for option in self.options.values():
            if option.key in values:
                continue
            if option.key in env:
                values[option.key] = env[option.key]
            elif option.key in table:
                values[option.key] = table[option.key]
            else:
                values[option.key] = _Value(_default(parser, option.action), "default")
        return values

    def _from_env(self, parser: Parser) -> dict[str, _Value]:
        by_env = {option.env: option for option in self.options.values()}
        found: dict[str, _Value] = {}
        for name in sorted(os.environ):
            if not name.startswith(self.env_prefix) or not os.environ[name]:
                continue
            option = by_env.get(name)
            if option is None:
                hint = difflib.get_close_matches(name, by_env, n=1)
                parser.error(
                    f"environment variable {name}: {self.command} has no such option"
                    + (f" (did you mean {hint[0]}?)" if hint else "")
                )
            raw = os.environ[name]
            where = f"environment variable {name}"
            if _is_switch(option.action):
                word = raw.strip().lower()
                if word not in _TRUE | _FALSE:
                    parser.error(f"{where}: expected 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
                value: Any = self._switch(option.action, word in _TRUE)
            elif _is_list(option.action):
                try:
                    words = shlex.split(raw)
                except ValueError as exc:  # an unclosed quote: its message quotes nothing
                    parser.error(f"{where}: {exc}")
                value = self._convert(parser, option, words, where)
            else:
                value = self._convert(parser, option, raw, where)
            found[option.key] = _Value(value, f"env {name}")
        return found

    def _from_file(self, parser: Parser, path: str) -> dict[str, _Value]:
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except OSError as exc:
            parser.error(f"config file {path}: {exc.strerror or exc}")
        except tomllib.TOMLDecodeError as exc:  # says the line and column, never the text there
            parser.error(f"config file {path}: not valid TOML: {exc}")
        except UnicodeDecodeError:
            parser.error(f"config file {path}: not valid TOML: not UTF-8")
        self.schema.check(data, f"config file {path}", parser.error)
        table: Any = data
        for word in self.words:
            table = table.get(word, {})
        found: dict[str, _Value] = {}
        for key, raw in table.items():
            option = self.options[key]
            where = f"config file {path}: [{'.'.join(self.words)}] {key}"
            if _is_switch(option.action):
                if not isinstance(raw, bool):
                    parser.error(f"{where}: expected true or false")
                value: Any = self._switch(option.action, raw)
            elif _is_list(option.action):
                if not isinstance(raw, list) or not all(_scalar(item) for item in raw):
                    parser.error(f"{where}: expected an array of strings or numbers")
                value = self._convert(parser, option, [_text(item) for item in raw], where)
            else:
                if not _scalar(raw):
                    parser.error(f"{where}: expected a string or a number")
                value = self._convert(parser, option, _text(raw), where)
            found[key] = _Value(value, "config file")
        return found

    @staticmethod
    def _switch(action: argparse.Action, on: bool) -> bool:
        # a store_false switch stores its const when given: "on" in a source means given
        return bool(action.const) if on else not bool(action.const)

    @staticmethod
    def _convert(parser: Parser, option: _Option, raw: str | list[str], where: str) -> Any:
        """The value ``raw`` gives the action, through the action's own type and choices (as on the command
        line); a refusal is the flag's message, naming ``where`` instead of the flag."""
        action = option.action
        try:
            if isinstance(raw, str):
                return parser._get_values(action, [raw])
            if isinstance(action, argparse._AppendAction):
                return [parser._get_values(action, [item]) for item in raw]
            if not raw and action.nargs == "+":
                parser.error(f"{where}: expected at least one value")
            return parser._get_values(action, raw)
        except argparse.ArgumentError as exc:
            parser.error(f"{where}: {exc.message}")

    def _check_required(self, parser: Parser, values: Mapping[str, _Value]) -> None:
        missing = [option.flag for option in self.required if values[option.key].value in (None, [])]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
        for group, members in self.groups:
            if group.required and not any(_chooses(values[member.key]) for member in members):
                names = " ".join(member.flag for member in members if member.action.help != argparse.SUPPRESS)
                parser.error(f"one of the arguments {names} is required")

    def show(self, values: Mapping[str, _Value], config: str | None) -> str:
        """The effective options as the command's TOML table, each value with its source as a comment."""
        lines = [
            f"# credcheck {self.command}: the effective options ({PRECEDENCE})",
            f"# config file: {config or f'none (--config FILE or {CONFIG_ENV})'}",
            f"# environment: {self.env_prefix}<OPTION>",
            f"[{'.'.join(self.words)}]",
        ]
        rows = []
        for key, found in values.items():
            if found.value is None:
                rows.append((f"# {key} is not set", found.source))
            elif _SECRET_NAME.search(key):
                rows.append((f"{key} = {_MASK}", found.source))
            else:
                rows.append((f"{key} = {_toml(found.value)}", found.source))
        width = max(len(text) for text, _ in rows)
        lines += [f"{text:<{width}}  # {source}" for text, source in rows]
        return "\n".join(lines)


def _print(text: str, args: argparse.Namespace) -> int:
    print(text)
    return EXIT_OK


def _chooses(found: _Value) -> bool:
    """Whether a value picks its option in a mutually exclusive group (a switch left off does not)."""
    return found.value not in (None, False, [])


def _default(parser: Parser, action: argparse.Action) -> Any:
    """The action's default as argparse would set it (a string default through its type; a list copied)."""
    default = action.default
    if isinstance(default, str):
        return parser._get_value(action, default)
    if isinstance(default, list):
        return list(default)
    return default


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else repr(value)


_USERINFO: Final = re.compile(r"(?<=://)[^/\s]*@")  # up to the last @ of the authority: a password may hold one


def _toml(value: Any) -> str:
    """A value as TOML writes it (a URL's user-info masked; a prefix range as FIRST-LAST)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, range):
        return json.dumps(f"{value.start:05X}-{value.stop - 1:05X}")
    return json.dumps(_USERINFO.sub("***@", str(value)))


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Parser]]:
    """Every command of the tree under ``parser`` that runs (no subcommands of its own), with its words."""
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subcommands and words and isinstance(parser, Parser):
        yield words, parser
    for action in subcommands:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*words, name))


def install(root: argparse.ArgumentParser) -> None:
    """Layer every command under ``root`` that has options: --config, --print-config, a hidden --no-SWITCH for
    each switch, and the epilog that says where options come from."""
    schema = _Schema()
    for words, parser in _leaves(root):
        if not any(not isinstance(action, _NOT_OPTIONS) for action in parser._actions):
            continue  # nothing to configure (demo)
        for action in list(parser._actions):
            if isinstance(action, argparse._StoreTrueAction) and action.option_strings:
                parser.add_argument(
                    f"--no-{_key(action)}", dest=action.dest, action="store_false", help=argparse.SUPPRESS
                )
        group = parser.add_argument_group("configuration")
        add(
            group,
            "--config",
            help=f"read options from this TOML file's [{'.'.join(words)}] table (default: ${CONFIG_ENV})",
        )
        add(group, "--print-config")
        layers = _Layers(parser, words, schema)
        schema.commands[words] = layers
        parser.layers = layers
        options = list(layers.options.values())
        example = next((option for option in options if option.action.option_strings), options[0])
        parser.epilog = (f"{parser.epilog} " if parser.epilog else "") + (
            f"Every option can also come from the environment, {layers.env_prefix}<OPTION> (e.g. {example.env}), "
            f"or from the [{'.'.join(words)}] table of a TOML file (--config FILE or ${CONFIG_ENV}; keys are the "
            f"long option names: {example.key} = ...); {PRECEDENCE}. A switch is 1 or 0 there (--no-SWITCH turns "
            "it off here); a repeated option is a TOML array, or words in the variable. --print-config shows the "
            "result (docs/CONFIG.md)."
        )
