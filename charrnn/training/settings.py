"""Every setting of a training run, declared once.

A :class:`~charrnn.training.settingtypes.Setting` holds one config key's type (a kind),
default, check (what it must be), help text, whether ``--resume`` may change it and the
``charrnn train`` flag that sets it, if any.  From the declarations in :data:`SETTINGS` come
the defaults (:func:`defaults`), the reading and checking of YAML, ``--set`` and flag values
(charrnn.training.config), the flags of ``charrnn train`` (charrnn.cli.training), what
``--resume`` refuses to change (charrnn.training.setup) and the reference docs/settings.md
(:func:`reference`; ``python -m charrnn.training.settings > docs/settings.md``).

Import cost: the standard library, the cells' names and tf.distribute's choices (no NumPy,
no TensorFlow); ``charrnn train`` and ``charrnn --help`` import this through the CLI, so
nothing heavier belongs here.
"""

from charrnn.nn.cells import CELLS
from charrnn.training.distribute import PRECISIONS, STRATEGIES
from charrnn.training.settingtypes import (
    AUTO_ALL_OR_INT,
    AUTO_OR_BOOL,
    AUTO_OR_INT,
    BOOL,
    DURATION,
    EPOCH_OR_INT,
    FLOAT,
    INT,
    NON_NEGATIVE,
    NOT_EMPTY,
    PATH,
    POSITIVE,
    POSITIVE_INTERVAL,
    STEPS_OR_DURATION,
    STR,
    Check,
    Setting,
    one_of,
)

# The order is that of a written config.yaml and of docs/settings.md.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data",
        PATH,
        "data/linux",
        "The prepared dataset directory, as `charrnn prepare` writes it.",
        NOT_EMPTY,
        flag="--data",
    ),
    # --- model: what model.json holds; resume refuses another architecture ---
    Setting(
        "model.cell",
        STR,
        "lstm",
        "The recurrent cell: lstm, gru, rnn, or the parallel cells mingru and minlstm "
        "(residual blocks whose gates read only the input); auto: chosen for max_time "
        "(`model: auto` sets cell and size to auto).",
        one_of("auto", *CELLS, must=f"must be auto or one of {', '.join(CELLS)}"),
        fixed_on_resume=True,
    ),
    Setting(
        "model.num_layers",
        INT,
        3,
        "Recurrent layers (for mingru and minlstm: residual blocks).",
        POSITIVE,
        fixed_on_resume=True,
    ),
    Setting(
        "model.rnn_size",
        INT,
        512,
        "Units per layer: the width of the recurrent state.",
        POSITIVE,
        fixed_on_resume=True,
    ),
    Setting(
        "model.embedding_size",
        INT,
        128,
        "Width of the symbol embedding; for mingru and minlstm always rnn_size (their "
        "residual stream), whatever is set.",
        POSITIVE,
        fixed_on_resume=True,
    ),
    Setting(
        "model.dropout",
        FLOAT,
        0.0,
        "Dropout between the layers, in training only.",
        Check(lambda v: 0 <= v < 1, "must be in [0, 1)"),
        fixed_on_resume=True,  # also: it owns a checkpointed random generator
    ),
    Setting(
        "model.size",
        STR,
        None,
        "auto: choose num_layers, rnn_size, embedding_size and dropout for max_time "
        "(--max-time) from the data and this machine's speed; printed, stored in model.json, "
        "kept on --resume. YAML `model: auto` also chooses the cell (`model.cell: auto`).",
        one_of("auto", must="must be auto or null"),
        null="the model keys as set",
        flag="--model-size",
    ),
    Setting(
        "model.auto_throughput",
        FLOAT,
        None,
        "For model auto: this machine's speed in symbols/s of a 2x256 LSTM at batch 64, "
        "instead of measuring it with a short probe (needed on several workers, so that "
        "all choose the same model).",
        POSITIVE,
        null="measured",
    ),
    # --- train ---
    Setting(
        "train.batch_size",
        INT,
        50,
        "Streams trained side by side: the train split is cut into this many contiguous "
        "streams, the rows of a batch.",
        POSITIVE,
        fixed_on_resume=True,  # the carried state and the data position depend on it
    ),
    Setting(
        "train.seq_length",
        INT,
        100,
        "Symbols per training window (truncated backpropagation through time); the "
        "recurrent state carries from one window to the next.",
        POSITIVE,
        fixed_on_resume=True,
    ),
    Setting(
        "train.learning_rate",
        FLOAT,
        0.002,
        "Adam's learning rate at the start (after warm-up), before the schedule lowers it.",
        POSITIVE,
    ),
    Setting(
        "train.seq_unit",
        STR,
        "symbols",
        "What seq_length counts: symbols, or chars: on jamo data a window of the symbols "
        "that cover seq_length characters of the train split on average.",
        one_of("symbols", "chars"),
        fixed_on_resume=True,
    ),
    Setting(
        "train.decay_rate",
        FLOAT,
        0.97,
        "lr_schedule exp: the LR's multiplier per decay period (classic char-rnn).",
        Check(lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ),
    Setting(
        "train.decay_every",
        EPOCH_OR_INT,
        "epoch",
        "lr_schedule exp: the decay period, epoch or a number of steps.",
        Check(lambda v: v == "epoch" or v > 0, "must be 'epoch' or a step count > 0"),
    ),
    Setting(
        "train.lr_schedule",
        STR,
        "exp",
        "exp: decay_rate every decay_every; cosine: from learning_rate down to "
        "final_lr_fraction of it at the last step (of max_steps, max_epochs or the plan "
        "for max_time).",
        one_of("exp", "cosine"),
    ),
    Setting(
        "train.final_lr_fraction",
        FLOAT,
        0.1,
        "lr_schedule cosine: the LR at the last step, as a fraction of learning_rate.",
        Check(lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ),
    Setting(
        "train.warmup_steps",
        INT,
        0,
        "Raise the LR linearly from 0 over this many first steps.",
        NON_NEGATIVE,
    ),
    Setting(
        "train.grad_clip",
        FLOAT,
        5.0,
        "Clip the gradient to this global norm (the norm before clipping is logged).",
        POSITIVE,
        null="no clipping",
    ),
    Setting(
        "train.weight_decay",
        FLOAT,
        0.0,
        "Decoupled (AdamW) decay of the weight matrices and the embedding, not the biases, "
        "times the LR each step; 0: plain Adam.",
        Check(lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ),
    Setting(
        "train.max_epochs",
        INT,
        50,
        "Stop after this many epochs.",
        POSITIVE,
        null="no limit",
        flag="--max-epochs",
    ),
    Setting(
        "train.max_steps",
        INT,
        None,
        "Stop at this global step.",
        POSITIVE,
        null="no limit",
        flag="--max-steps",
    ),
    Setting(
        "train.max_time",
        DURATION,
        None,
        "Train for this long, counted across --resume: seconds or e.g. 90s, 10m, 2h. The "
        "run times its first steps and plans its step count (where the LR schedule ends) "
        "to fit.",
        POSITIVE,
        null="no time limit",
        flag="--max-time",
    ),
    Setting(
        "train.planned_steps",
        INT,
        None,
        "The step the run is planned to end at, given instead of timed.",
        POSITIVE,
        null="planned from max_time (if set)",
    ),
    Setting(
        "train.eval_every",
        STEPS_OR_DURATION,
        500,
        "Evaluate on the validation subset every this many steps, or every so long of the "
        "run's clock (e.g. 5m).",
        POSITIVE_INTERVAL,
    ),
    Setting(
        "train.save_every",
        STEPS_OR_DURATION,
        500,
        "Save a checkpoint every this many steps, or every so long of the run's clock (e.g. 10m).",
        POSITIVE_INTERVAL,
    ),
    Setting(
        "train.keep_checkpoints",
        INT,
        5,
        "How many of the latest checkpoints to keep (the best one is kept besides).",
        POSITIVE,
    ),
    Setting(
        "train.eval_symbols",
        AUTO_ALL_OR_INT,
        "auto",
        "Validation symbols scored per evaluation, always the same fixed subset of the "
        "split: a number, all (the whole split), or auto: up to 262,144 (with max_time: "
        "what keeps evaluations within 5% of it).",
        Check(lambda v: v in ("auto", "all") or v >= 2, "must be auto, all or >= 2"),
    ),
    Setting(
        "train.final_eval",
        STR,
        "subset",
        "At the end: subset (an evaluation like the others), or all (the whole validation "
        "split once more).",
        one_of("subset", "all"),
    ),
    Setting(
        "train.log_every",
        INT,
        50,
        "Steps between the lines of metrics.jsonl and TensorBoard.",
        POSITIVE,
    ),
    Setting(
        "train.sample_length",
        INT,
        200,
        "Symbols of the text sample written to TensorBoard at each evaluation; 0: none.",
        NON_NEGATIVE,
    ),
    Setting(
        "train.seed",
        INT,
        0,
        "Random seed for the initial weights and dropout.",
        null="unseeded (other weights each run)",
        flag="--seed",
    ),
    Setting(
        "train.deterministic",
        AUTO_OR_BOOL,
        "auto",
        "TensorFlow op determinism (exact resume): true, false, or auto: on without a GPU, "
        "off with one.",
    ),
    Setting(
        "train.jit_compile",
        BOOL,
        False,
        "XLA-compile the training step (measured slower on CPU for LSTMs; never on a GPU "
        "or with several replicas).",
    ),
    Setting(
        "train.out",
        PATH,
        "runs/linux",
        "The run directory to write: checkpoints, metrics, logs, config.yaml.",
        NOT_EMPTY,
        flag="--out",
        short_flag="-o",
    ),
    Setting(
        "train.logdir",
        PATH,
        None,
        "TensorBoard log directory.",
        null="`<out>/logs`",
        flag="--logdir",
    ),
    Setting(
        "train.strategy",
        STR,
        "auto",
        "tf.distribute strategy: auto (multiworker when TF_CONFIG names a cluster, mirrored "
        "with more than one GPU, else default), default (one device), mirrored (all GPUs "
        "here), multiworker.",
        one_of(*STRATEGIES),
        flag="--strategy",
    ),
    Setting(
        "train.precision",
        STR,
        "auto",
        "auto (mixed_bfloat16 on a CPU that does bfloat16 in hardware, else float32), "
        "float32, mixed_bfloat16, or mixed_float16 (with loss scaling).",
        one_of(*PRECISIONS),
    ),
    Setting(
        "train.intra_op_threads",
        AUTO_OR_INT,
        "auto",
        "Threads one TensorFlow op may use; 0: TensorFlow's default; auto: 1 for small "
        "models on CPU-only machines of at most 2 cores (faster there; smaller ones on CPUs "
        "without AVX-512), else 0.",
        Check(lambda v: v == "auto" or v >= 0, "must be auto or >= 0"),
    ),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


def _sections() -> dict:
    out: dict = {}
    for s in SETTINGS:
        if s.section is None:
            out[s.key] = None
        else:
            out.setdefault(s.section, []).append(s.name)
    return out


# {"data": None (a top-level key), "model": [its keys], "train": [...]}
SECTIONS: dict[str, list[str] | None] = _sections()


def defaults() -> dict:
    """A fresh config of the defaults, nested by section."""
    config: dict = {}
    for s in SETTINGS:
        holder = config if s.section is None else config.setdefault(s.section, {})
        holder[s.name] = s.default
    return config


def fixed_on_resume(section: str) -> list[Setting]:
    """The settings of ``section`` that ``--resume`` may not change."""
    return [s for s in SETTINGS if s.section == section and s.fixed_on_resume]


# --- docs/settings.md -----------------------------------------------------------------------


def _row(s: Setting) -> str:
    kind = s.kind.name + (" or null" if s.nullable else "")
    notes = [s.help] + ([f"Null: {s.null}."] if s.null else [])
    if s.check:
        notes.append(s.check.must[0].upper() + s.check.must[1:] + ".")
    if s.fixed_on_resume:
        notes.append("Fixed on `--resume`.")
    if s.flag:
        notes.append("Flag: " + ", ".join(f"`{f}`" for f in (s.short_flag, s.flag) if f) + ".")
    text = " ".join(notes).replace("|", "\\|")
    return f"| `{s.key}` | {kind} | `{s.default_text}` | {text} |"


_INTRO = """\
# Settings

Every key of a training config, as `charrnn train` reads it. Generated from the declarations in
`charrnn/training/settings.py` by `python -m charrnn.training.settings > docs/settings.md` (a test
checks that this file is what they generate): edit them, not this file.

A config has three sections: `data` (a prepared dataset directory), `model` and `train`.
Precedence, lowest first: the defaults below, the YAML file (`--config`; on `--resume` the run's
own `config.yaml`), `--set section.key=value` (repeatable), then the flags named below. `--set`
reads its value as YAML, except for a str or path setting, whose text is taken as written
(`--set train.out=010` is `010`, where YAML reads 8). `model: auto` is short for
`model: {size: auto, cell: auto}`. Durations are seconds or a string such as `90s`, `10m`, `2h`,
`1h30m`. Relative paths are relative to the current directory. An unknown key, a wrong type or
an impossible value is one error line naming the key, where its value came from, the value and
what it must be.
"""


def reference() -> str:
    """docs/settings.md: every setting's key, type, default and help, by section."""
    parts = [_INTRO]
    for section, keys in SECTIONS.items():
        names = [section] if keys is None else [f"{section}.{k}" for k in keys]
        parts.append(f"\n## {section}\n\n| key | type | default | what |\n|---|---|---|---|\n")
        parts.append("".join(_row(BY_KEY[key]) + "\n" for key in names))
    return "".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
