"""`charrnn train`."""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from charrnn.cli.group import cli, info, process_seconds
from charrnn.training.settings import SETTINGS
from charrnn.training.settingtypes import FLOAT, INT, PATH, Setting

# The options that set a config key, by parameter name: declared with the settings
# (charrnn.training.settings: a Setting's flag), their help text the setting's own.
SETTING_FLAGS = {s.key.replace(".", "_"): s for s in SETTINGS if s.flag}

F = TypeVar("F", bound=Callable[..., Any])


def _option(setting: Setting, param: str):
    kind = setting.kind
    if setting.check and setting.check.choices:
        kwargs = {"type": click.Choice(setting.check.choices)}
    elif kind in (INT, FLOAT, PATH):  # click converts these (its message names the flag)
        kwargs = {"type": {INT: int, FLOAT: float, PATH: click.Path()}[kind]}
    else:  # a string the config reads (a duration): its errors name the flag
        kwargs = {"metavar": kind.metavar or None}
    names = [name for name in (setting.short_flag, setting.flag) if name]
    default = f" [default: {setting.null.strip('`')}]" if setting.default is None else ""
    help_text = f"{setting.help.rstrip('.')}{default} (sets {setting.key})."
    return click.option(*names, param, help=help_text, **kwargs)


def setting_options(command: F) -> F:
    """Add the options of SETTING_FLAGS to ``command``, in the settings' order."""
    for param, setting in reversed(SETTING_FLAGS.items()):
        command = _option(setting, param)(command)
    return command


@cli.command()
@click.option(
    "-c",
    "--config",
    "config_name",
    metavar="NAME|PATH",
    help="YAML config: a file, or a shipped config (linux, shakespeare, korean, quick; .yaml "
    "optional).",
)
@setting_options
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its latest checkpoint (its config.yaml is the base "
    "config).",
)
@click.option(
    "--init-from",
    type=click.Path(),
    metavar="RUN",
    help="Start from the weights of another run (same architecture, jamo scheme and newline "
    "policy); weights are mapped by symbol, so the vocabulary may differ (see prepare "
    "--vocab-from); optimizer and step start fresh.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Start over: delete the run already in --out (its checkpoints, metrics and logs) and "
    "train a new one.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override any config value, e.g. --set train.batch_size=32 --set model.cell=gru "
    "(repeatable).",
)
@click.pass_context
def train(
    ctx: click.Context,
    config_name: str | None,
    resume: bool,
    init_from: str | None,
    force: bool,
    sets: tuple[str, ...],
    **settings: str | int | float | None,
) -> None:
    """Train a model on a prepared dataset; checkpoints, metrics and logs go to the run directory.

    \b
    charrnn train --config quick.yaml
    charrnn train --config linux.yaml --data data/linux --max-time 2h
    charrnn train --data data/mytext --max-time 30m --model-size auto
    charrnn train --resume --out runs/linux
    """
    from charrnn import api
    from charrnn.training import config as configmod

    if resume and (init_from or force):
        raise click.UsageError(
            f"--resume and {'--init-from' if init_from else '--force'} exclude each other"
        )
    flags = {SETTING_FLAGS[param].key: value for param, value in settings.items()}
    cfg = configmod.resolve(config_name, sets, flags, resume)
    # a bar on a terminal, with the evaluations' lines above it; else the lines alone
    tty = sys.stderr.isatty()
    result = api.train_resolved(
        cfg, resume=resume, init_from=init_from, force=force, progress=tty, lines_above_bar=tty
    )
    if (wall := process_seconds()) is not None:  # beside the run's own clock ("time:" above)
        info(f"wall time: {wall:.1f} s from the start of this process to its end")
    if result.status == "interrupted":
        ctx.exit(128 + (result.signal or 2))
