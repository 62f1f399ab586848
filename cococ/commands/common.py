"""Checks every command makes on its arguments before it starts work (issue 18).

A count that must be positive is refused by argparse (`positive_int`), a file argument that
names a folder is refused by name, and an output place is checked before the training or the
compile that would fill it: a late failure loses the work, and a folder made and then left
empty by a failed start is half-state the next command trips over, so nothing is created here.
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from cococ.ir.core import CococError


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (iterations, batch sizes, runs, samples, workers)."""
    return _int_at_least(text, 1, "a positive whole number")


def nonnegative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (where 0 means 'off' or 'all')."""
    return _int_at_least(text, 0, "a whole number >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {n}")
    return n


def input_file(path, flag: str) -> Path:
    """`path` as a Path, refused when it is missing or a folder; `flag` names the argument."""
    p = Path(path)
    if p.is_dir():
        raise CococError(f"{flag} {p}: is a folder, expected a file")
    if not p.exists():
        raise CococError(f"{flag} {p}: no such file")
    return p


def writable_file(path, flag: str, *, make_parents: bool = False) -> Path:
    """`path` as a Path, checked to be writable as a file before any work starts: not a folder,
    and its folder exists (or, with `make_parents`, can be made) and takes new files."""
    p = Path(path)
    if p.is_dir():
        raise CococError(f"{flag} {p}: is a folder, expected a file name")
    if not make_parents and not p.parent.is_dir():
        raise CococError(f"{flag} {p}: folder {p.parent} does not exist")
    _check_writable_place(p.parent, p, flag)
    return p


def writable_dir(path, flag: str) -> Path:
    """`path` as a Path, checked to be a folder that exists and takes files, or that can be made
    (its nearest existing ancestor is a writable folder); it is not created here."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CococError(f"{flag} {p}: is a file, expected a folder")
    _check_writable_place(p, p, flag)
    return p


def _check_writable_place(folder: Path, target: Path, flag: str) -> None:
    """The nearest existing ancestor of `folder` (itself included) must be a folder that takes a
    new file: tried with a temporary file, which also catches read-only mounts and root."""
    here = folder
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise CococError(f"{flag} {target}: cannot write there: {here} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=here):
            pass
    except OSError as e:
        raise CococError(f"{flag} {target}: cannot write in {here}: {e.strerror or e}") from None


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's place and warns, so scripts
    written for the old name keep working while the help shows one name per idea."""

    def __init__(self, option_strings, dest, new: str, **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(f"{option_string} is deprecated; use {self.new}", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, new: str, **kw) -> None:
    """Accept `old` (hidden from --help and docs/cli.md) as a deprecated spelling of the option `new`,
    already added to `parser`; `kw` are what `new` was added with (type, choices, metavar)."""
    dest = next(a.dest for a in parser._actions if new in a.option_strings)
    parser.add_argument(old, action=_DeprecatedAlias, new=new, dest=dest, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kw)


def deprecated_aliases(parser: argparse.ArgumentParser) -> dict[str, str]:
    """old spelling -> new one, of the aliases `deprecated_alias` added to `parser`."""
    return {s: a.new for a in parser._actions if isinstance(a, _DeprecatedAlias) for s in a.option_strings}
