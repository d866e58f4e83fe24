"""The ``filtergrid`` command: a thin layer over :mod:`filtergrid.api` and :mod:`filtergrid.renderer`.

Subcommands live one per module (meshio-style) and are imported only when used, so ``--help`` and
``render`` stay fast. Every failure a user can cause ends as one line ``filtergrid: error: ...`` on
stderr with exit code 2; set ``FILTERGRID_DEBUG=1`` to see a traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .._version import __version__
from ..errors import FiltergridError, plain
from ..untrusted import terminal
from . import deadline

#: Subcommand name -> (module under filtergrid.cli defining a click ``command``, its one-line help).
#: ``--help`` lists the commands from here without importing them; a test keeps the help texts equal.
COMMANDS = {
    "render": ("render", "Render the first layer of MODEL (or --tensor NAME) as a grid of images."),
    "inspect": ("inspect", "List MODEL's tensors in model order and say which one is the first layer."),
    "convert": ("convert", "Write the first layer of MODEL as a float32 (filters, H, W, C) array."),
    "demo": ("demo", "Render the first conv layer of a tiny CNN trained on scikit-learn's digits."),
    "audit": ("audit", "Audit every model under PATH...: format, first layer, health and grid of each, in one report."),
    "diff": ("diff", "Render the first layers of A and B side by side with B - A, and print how much each filter changed."),
}

EXIT_USAGE = 2


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}").command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from COMMANDS' short help: no subcommand is imported."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            rows.append((name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="filtergrid",
                      message="%(prog)s %(version)s")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Give up (exit 2) when the command runs longer than this.")
def cli(timeout: float | None) -> None:
    """See what a model's first layer learned: a grid of its filters, from any checkpoint.

    Formats are recognised by their bytes (safetensors, ONNX, Keras, NumPy, ...); no torch or
    tensorflow is needed, and nothing in a model file is ever executed.
    """
    deadline.arm(timeout)


def fail(message: str) -> None:
    """The one error line: names from files are escaped for the terminal and bounded."""
    click.echo(f"filtergrid: error: {terminal(' '.join(str(message).split()))}", err=True)
    sys.exit(EXIT_USAGE)


def say(message: str) -> None:
    """A success line on stdout, escaped like errors (it names files and tensors)."""
    click.echo(terminal(message))


def _global_options_first(argv: list[str]) -> list[str]:
    """``filtergrid render m --timeout 5`` means ``filtergrid --timeout 5 render m``: move it, unless
    the subcommand has a ``--timeout`` of its own (the audit's is per file)."""
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name not in COMMANDS or any("--timeout" in p.opts for p in cli.get_command(None, name).params):  # type: ignore[arg-type, union-attr]
        return argv
    at = argv.index(name)
    moved, rest, i = [], [], at + 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg == "--timeout" and i + 1 < len(argv):
            moved += argv[i:i + 2]
            i += 2
            continue
        (moved if arg.startswith("--timeout=") else rest).append(arg)
        i += 1
    return argv[:at] + moved + [name] + rest


def _one_blas_thread() -> None:
    """filtergrid multiplies no matrices, but importing numpy starts one OpenBLAS thread per core, which
    spin and cost 10-50 ms of start-up on a busy machine. Set before numpy is imported; a user's own
    setting wins. Only the command does this: ``import filtergrid`` leaves the environment alone."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every user-caused failure into one line and exit 2."""
    _one_blas_thread()
    try:
        try:
            args = _global_options_first(sys.argv[1:] if argv is None else list(argv))
            cli.main(args=args, prog_name="filtergrid", standalone_mode=False)
        finally:
            deadline.disarm()
    except FiltergridError as e:
        fail(str(e))
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(EXIT_USAGE)
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)  # click's UsageError family has one, ClickException not
        hint = f" (see: filtergrid {ctx.command.name} --help)" if ctx and ctx.command.name != "cli" else ""
        fail(e.format_message() + hint)
    except click.exceptions.Abort:
        click.echo("filtergrid: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("filtergrid: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug of ours: still one line, with a way to see more
        if os.environ.get("FILTERGRID_DEBUG"):
            raise
        fail(f"filtergrid failed on something it did not expect ({plain(e)}); rerun with FILTERGRID_DEBUG=1 "
             "to see where, and report it")
    sys.exit(0)
