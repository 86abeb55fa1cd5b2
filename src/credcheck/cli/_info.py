"""``credcheck info FILE...``: what each artefact file is, what it holds, and whether it verifies.

The kind of a file is told in one place, by the magic it starts with (:func:`credcheck._artifact.kind_of`, the
test the filter and source openers use too, over the table below); a lock file, which has no magic, by its
name. Each kind is then described by its own module, beside its header parser (a ``describe`` function), and
verified by its own reader, so nothing here parses a header. A file that cannot be described or does not verify
is said so with the reason, the other files are still described, and the exit status is the first failure's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from .. import _atomic, bloom, fuse, store
from .._artifact import Description, describe_lock, kind_of
from .._mirrorfiles import ETAGS_MAGIC, JOURNAL_MAGIC, describe_etags, describe_journal
from ..errors import ArtifactError, CredcheckError
from ..pairs import keys
from ..pairs import store as pair_store
from ..pairs.build import CHECKPOINT_MAGIC, OLD_CHECKPOINT_MAGIC, describe_checkpoint
from ..pairs.keys import KeyPair, load_key
from ..server import _bodyfile as bodyfile
from . import _flags
from ._flags import AddParser, add
from ._runner import EXIT_OK, Command, exit_status

__all__ = ["add_commands", "describe"]

#: How a file of each kind is described, by the magic it starts with (the key, for the kinds that can use it).
Describer = Callable[[Description, "KeyPair | None"], None]


def _keyless(describe: Callable[[Description], None]) -> Describer:
    return lambda info, key: describe(info)


_KINDS: Final[dict[bytes, Describer]] = {
    bloom.MAGIC: _keyless(bloom.describe),
    fuse.MAGIC: _keyless(fuse.describe),
    fuse.PARTIAL_MAGIC: _keyless(fuse.describe_partial),
    store.MAGIC: _keyless(store.describe),
    bodyfile.MAGIC: _keyless(bodyfile.describe),
    pair_store.MAGIC: pair_store.describe,
    keys.HEADER: _keyless(keys.describe),
    CHECKPOINT_MAGIC: describe_checkpoint,
    OLD_CHECKPOINT_MAGIC: describe_checkpoint,
    JOURNAL_MAGIC: _keyless(describe_journal),
    ETAGS_MAGIC: _keyless(describe_etags),
}

#: Facts shown as they are, not as counts with thousands separators.
_NOT_COUNTS: Final = frozenset({"pid"})


def add_commands(add_parser: AddParser) -> None:
    """Add ``info``."""
    i = add_parser(
        "info",
        help="say what artefact files are, what they hold and whether they verify",
        description="For each FILE -- a Bloom or fuse filter, a range store, a bodies side file (STORE.bodies), a "
        "pair store, a pair key file, a pair build's checkpoint (.NAME.checkpoints/*.ckpt), a fuse build in "
        "progress (.NAME.fuse-partial), a mirror's journal (STORE.mirror-journal) or ETags (STORE.etags), a lock "
        "file (.NAME.lock) -- print its kind, format version, size, what its header records (scheme, counts, "
        "false-positive rate, bits a hash, min-count, key id, bucket bits, build time) and whether it verifies "
        "as its reader checks it, or exactly why not. A secret key is never shown. Exit status: 0 when every file "
        "verifies (or could not be checked here, saying why), 2 when one cannot be read or does not verify.",
    )
    i.add_argument("files", nargs="+", metavar="FILE", type=_flags.local_path, help="the files to describe")
    add(
        i,
        "--key",
        help="the OPRF key file of a pair build: its checkpoints' seals are checked with it, and a pair store "
        "says whether it was made with it",
    )
    add(i, "--json", help="one JSON object a file, a line each")
    i.set_defaults(func=Command(_info))


def describe(path: str, key: KeyPair | None = None) -> Description:
    """What the file at ``path`` is, what it holds and whether it verifies (never an exception for the file's
    sake: what is wrong with it is the description's ``problem``)."""
    info = Description(path)
    try:
        try:
            described = kind_of(path, _KINDS, "artefact")
        except ArtifactError:
            if _atomic.locked_target(path) is None:
                raise
            described = _keyless(describe_lock)
        info.size = os.stat(path).st_size
        described(info, key)
    except (CredcheckError, OSError) as exc:
        info.fail(exc)
    return info


def _info(args: argparse.Namespace) -> int:
    """``credcheck info FILE... [--key KEYFILE] [--json]``."""
    key = load_key(args.key) if args.key else None
    failed = []
    for number, path in enumerate(args.files):
        info = describe(path, key)
        if args.json:
            print(json.dumps(info.as_dict()), flush=True)
        else:
            print(("\n" if number else "") + _shown(info), flush=True)
        if info.verified is False:
            failed.append(info)
    if failed:
        print(f"credcheck: {len(failed)} of {len(args.files)} files do not verify", file=sys.stderr)
        assert failed[0].error is not None
        return exit_status(failed[0].error)
    return EXIT_OK


def _shown(info: Description) -> str:
    """A description as text: the path, then a line a fact."""
    rows: list[tuple[str, Any]] = [
        ("kind", info.kind or "unknown"),
        ("format version", info.version),
        ("size", None if info.size is None else f"{info.size:,} bytes"),
    ]
    rows += [(name.replace("_", " "), _value(name, value)) for name, value in info.facts.items()]
    verdict = {True: "yes", False: f"NO: {info.problem}", None: f"not checked: {info.problem}"}[info.verified]
    rows.append(("verifies", verdict))
    width = max(len(label) for label, _ in rows)
    return "\n".join([info.path, *(f"  {label:<{width}}  {value}" for label, value in rows if value is not None)])


def _value(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and name not in _NOT_COUNTS:
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return value
