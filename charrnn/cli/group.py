"""The `charrnn` command group: how errors and human messages leave the program.

stdout carries data (samples, dumps, --json); everything for humans goes to stderr.
"""

import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import click

from charrnn import __version__, backend
from charrnn.errors import CharrnnError, CharrnnWarning

# The module of charrnn.cli that defines each command, imported when the command is asked for:
# `charrnn sample` then imports neither the training settings nor tf.distribute's names.
COMMANDS = {
    "prepare": "data",
    "dump": "data",
    "train": "training",
    "sample": "generation",
    "serve": "generation",
    "evaluate": "inspection",
    "export": "inspection",
    "visualize": "inspection",
}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(f"charrnn.cli.{COMMANDS[name]}")  # registers it
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with messages_to_stderr():
                return super().invoke(ctx)
        except CharrnnError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:
            # `charrnn sample | head`: the reader went away, which is not an error.
            # (Click itself would turn it into exit status 1.)  Point stdout at
            # /dev/null so the interpreter's final flush stays quiet.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            ctx.exit(0)


class _Stderr(logging.Handler):
    """The Python API's messages (the ``charrnn`` logger) as the command line shows them."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        warn(message) if record.levelno >= logging.WARNING else info(message)


@contextlib.contextmanager
def messages_to_stderr() -> Iterator[logging.Logger]:
    """For one command: the ``charrnn`` logger's records from INFO up on stderr, and its
    CharrnnWarnings not shown twice; both as they were afterwards."""
    logger = logging.getLogger("charrnn")
    handler, level, propagate = _Stderr(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CharrnnWarning)
            yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def info(message: str = "", **kwargs: Any) -> None:
    """A line for humans: always stderr."""
    click.echo(message, err=True, **kwargs)


def warn(message: str) -> None:
    info(f"Warning: {message}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="charrnn")
@click.option(
    "-v", "--verbose", is_flag=True, help="Show TensorFlow's own log messages and extra detail."
)
def cli(verbose: bool) -> None:
    """Train character-level LSTM/GRU language models and sample text from them.

    \b
    charrnn prepare corpus.txt -o data/corpus
    charrnn train --config quick.yaml --data data/corpus
    charrnn sample --prime "/* "
    """
    backend.set_verbose(verbose)


def run_dir_or_latest(run_dir: str | None) -> str:
    if run_dir:
        return run_dir
    from charrnn.store.rundir import find_latest_run

    run_dir = find_latest_run("runs")
    info(f"Using the most recent run: {run_dir}")
    return run_dir


def is_verbose() -> bool:
    return bool(click.get_current_context().find_root().params.get("verbose"))


def process_seconds() -> float | None:
    """Seconds since this process started, from /proc (None where there is none)."""
    try:
        # field 22 of /proc/self/stat, counted after the command name, which may hold spaces
        with open("/proc/self/stat") as stat, open("/proc/uptime") as up:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            uptime = float(up.read().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
