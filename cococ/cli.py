"""The `cococ` command line: one sub-command per module in cococ/commands/.

Each command module defines `add_arguments(parser)` and `run(args) -> int`, and a module
docstring whose first paragraph (one sentence) is its line in `cococ --help`; the whole
docstring and the options make its section of docs/cli.md (cococ/cli_docs.py). User errors
(CococError, and the OSError of a file the up-front checks of cococ/commands/common.py could not
foresee) print one line and exit 1, and warnings print one line each (a deprecated option
spelling too); `--debug` shows the traceback. Every command takes --max-memory,
the limit of ir/memory.py's guard on what a network may allocate, for the command's duration.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
import warnings

import cococ

from cococ.ir.core import CococError
from cococ.ir.memory import LIMIT_ENV, limited_memory

# command name -> module under cococ.commands (imported only when the command runs)
COMMANDS = {
    "show": "show",
    "opt": "opt",
    "convert": "convert",
    "build": "build",
    "run": "run",
    "targets": "targets",
    "train": "train",
    "eval": "eval",
    "blocks": "blocks",
    "prune": "prune",
}


def _load(name: str):
    return importlib.import_module(f"cococ.commands.{COMMANDS[name]}")


def summary(doc: str | None) -> str:
    """A command's one-line help: the docstring's first paragraph, whole (its first line alone
    can end mid-sentence where the sentence wraps)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def version() -> str:
    """The installed distribution's version; the package's own when it runs from a source tree
    that was never installed."""
    try:
        return importlib.metadata.version("cococ")
    except importlib.metadata.PackageNotFoundError:
        return cococ.__version__


class _Parser(argparse.ArgumentParser):
    """Usage errors are user errors too: one line, exit status 1 (argparse's default is usage + 2)."""

    def error(self, message: str):
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="cococ", description="cococ: a compression-compilation co-design compiler for CNNs")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"cococ {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, add_help=False)  # a placeholder: no need to import the module
            continue
        mod = _load(name)
        p = sub.add_parser(name, help=summary(mod.__doc__),
                           description=(mod.__doc__ or "").strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # keep the examples' lines
        mod.add_arguments(p)
        p.add_argument("--max-memory", metavar="SIZE",
                       help=f"refuse a network whose weights or activations would need more than SIZE "
                            f"(e.g. 64G; default {LIMIT_ENV} or 16G)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = next((a for a in argv if a in COMMANDS), None)
    parser = make_parser(only=command)
    plain_format = warnings.formatwarning  # set before parsing: a deprecated option warns there
    warnings.formatwarning = lambda message, *_a, **_k: f"cococ {command}: warning: {message}\n"
    try:
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 0
        with limited_memory(args.max_memory):
            return int(_load(args.command).run(args) or 0)
    except CococError as e:
        if debug:
            raise
        print(f"cococ {command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a file the checks up front could not foresee (a disk that fills, a race)
        if debug:
            raise
        print(f"cococ {command}: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}",
              file=sys.stderr)
        return 1
    except MemoryError:
        if debug:
            raise
        print(f"cococ {command}: error: out of memory (--max-memory or {LIMIT_ENV} refuses such "
              f"networks up front)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cococ: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = plain_format


if __name__ == "__main__":
    sys.exit(main())
