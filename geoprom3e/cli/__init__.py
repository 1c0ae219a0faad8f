"""Command-line interface: ``geoprom3e COMMAND``.

Each command parses its options and makes one library call. Commands live in one module per area
(``cli/model.py``, ``cli/maps.py``, ...) and are attached to the :func:`main` group here.
:class:`~geoprom3e.errors.GeoProm3eError` becomes one line on stderr and exit status 2; ``-v`` shows
the traceback as well.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from geoprom3e._version import __version__
from geoprom3e.errors import GeoProm3eError

# Modules that add commands to the group; each defines ``register(group: click.Group) -> None``.
_COMMAND_MODULES = (
    "geoprom3e.cli.model",
    "geoprom3e.cli.demo",
    "geoprom3e.cli.grids",
    "geoprom3e.cli.maps",
    "geoprom3e.cli.imagery",
    "geoprom3e.cli.encoders",
    "geoprom3e.cli.train",
    "geoprom3e.cli.engine",
    "geoprom3e.cli.representations",
)


class _Group(click.Group):
    """Click group that turns package errors into one clean line and exit status 2."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except GeoProm3eError as exc:
            if (ctx.obj or {}).get("verbose"):
                import traceback

                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except OSError as exc:  # a full disk or quota anywhere the library did not name the path itself
            import errno

            if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            if (ctx.obj or {}).get("verbose"):
                import traceback

                traceback.print_exc()
            where = f" writing {exc.filename}" if exc.filename else ""
            click.echo(f"error: no space left{where} ({exc.strerror}): free some space (check `df -h`), then run "
                       "the same command again: finished work is kept", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="geoprom3e")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details and show tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Maps of where species live, how sure the ProM3E model is, and biodiversity across the USA.

    \b
    Typical use:
      geoprom3e demo                      offline end-to-end check on bundled data
      geoprom3e model info CHECKPOINT     inspect a ProM3E checkpoint
    Run `geoprom3e COMMAND --help` for each command's options.
    """
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(main)


_register_all()
