"""Command-line interface: parsing and printing only; the work is in the library modules.

stdout carries data (samples, dumps, --json); everything for humans goes to stderr.
"""

import os
import sys

import click

from charrnn import __version__, backend
from charrnn.errors import CharrnnError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharrnnError as e:
            raise click.ClickException(str(e)) from None


def info(message: str = "", **kwargs) -> None:
    """A line for humans: always stderr."""
    click.echo(message, err=True, **kwargs)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="charrnn")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow's own log messages and extra detail.")
def cli(verbose):
    """Train character-level LSTM/GRU language models and sample text from them.

    \b
    charrnn prepare corpus.txt -o data/corpus
    charrnn train --config quick.yaml --data data/corpus
    charrnn sample --prime "/* "
    """
    backend.set_verbose(verbose)


# --- prepare / dump ----------------------------------------------------------


# --- train -------------------------------------------------------------------


# --- sample / evaluate -------------------------------------------------------


def main(argv=None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        return cli.main(args=argv, prog_name="charrnn", standalone_mode=False) or 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        info("Aborted.")
        return 130
    except KeyboardInterrupt:
        info("Interrupted.")
        return 130
    except BrokenPipeError:
        # `charrnn sample | head`: the reader went away; that is not an error.
        # Point stdout at /dev/null so the interpreter's final flush is quiet.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
