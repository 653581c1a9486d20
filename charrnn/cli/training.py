"""`charrnn train`."""

import click

from charrnn.cli.group import cli, info, process_seconds
from charrnn.train.distribute import STRATEGIES


@cli.command()
@click.option(
    "-c",
    "--config",
    "config_name",
    metavar="NAME|PATH",
    help="YAML config: a file, or a shipped config (linux, shakespeare, korean, quick; .yaml "
    "optional).",
)
@click.option("--data", type=click.Path(), help="Prepared dataset directory (sets data).")
@click.option("-o", "--out", type=click.Path(), help="Run directory to write (sets train.out).")
@click.option(
    "--max-time",
    metavar="DURATION",
    help="Train for this long, counted across --resume: seconds or e.g. 90s, 10m, 2h. The run "
    "times its first steps and plans its step count (where the LR schedule ends) to fit "
    "(sets train.max_time).",
)
@click.option(
    "--model-size",
    type=click.Choice(["auto"]),
    help="auto: choose the layers, units, embedding and dropout for --max-time from the data and "
    "this machine's speed; printed, stored in model.json, kept on --resume (sets model.size; "
    "YAML `model: auto` also chooses the cell, `model.cell: auto`).",
)
@click.option("--max-steps", type=int, help="Stop at this global step (sets train.max_steps).")
@click.option("--max-epochs", type=int, help="Stop after this many epochs (sets train.max_epochs).")
@click.option(
    "--seed", type=int, help="Random seed for the initial weights and dropout (sets train.seed)."
)
@click.option(
    "--logdir",
    type=click.Path(),
    help="TensorBoard log directory [default: <out>/logs] (sets train.logdir).",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    help="tf.distribute strategy: auto (multiworker when TF_CONFIG names a cluster, mirrored with "
    ">1 GPU, else default), default (one device), mirrored (all GPUs here), multiworker "
    "(sets train.strategy).",
)
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
    ctx,
    config_name,
    data,
    out,
    max_time,
    model_size,
    max_steps,
    max_epochs,
    seed,
    logdir,
    strategy,
    resume,
    init_from,
    force,
    sets,
):
    """Train a model on a prepared dataset; checkpoints, metrics and logs go to the run directory.

    \b
    charrnn train --config quick.yaml
    charrnn train --config linux.yaml --data data/linux --max-time 2h
    charrnn train --data data/mytext --max-time 30m --model-size auto
    charrnn train --resume --out runs/linux
    """
    from charrnn.train import config as configmod
    from charrnn.train import loop as trainmod

    if resume and (init_from or force):
        raise click.UsageError(
            f"--resume and {'--init-from' if init_from else '--force'} exclude each other"
        )
    flags = {
        "data": data,
        "train.out": out,
        "train.max_time": max_time,
        "model.size": model_size,
        "train.max_steps": max_steps,
        "train.max_epochs": max_epochs,
        "train.seed": seed,
        "train.logdir": logdir,
        "train.strategy": strategy,
    }
    cfg = configmod.resolve(config_name, sets, flags, resume)
    result = trainmod.train(cfg, resume=resume, init_from=init_from, force=force, log=info)
    if (wall := process_seconds()) is not None:  # beside the run's own clock ("time:" above)
        info(f"wall time: {wall:.1f} s from the start of this process to its end")
    if result.status == "interrupted":
        ctx.exit(128 + (result.signal or 2))
