"""Training configuration: defaults, YAML files, command-line overrides, validation.

A config has three sections, ``data`` (a prepared dataset directory), ``model``
and ``train``.  Precedence, lowest first: the defaults below, the YAML file
(``--config``; on ``--resume`` the run's own config.yaml), ``--set
section.key=value``, then the plain flags (``--data``, ``--out``, ...).  Every
mistake is reported as one CharrnnError naming the key and where it came from.
Relative paths (data, out, logdir) are relative to the current directory.
"""

import copy
import importlib.resources
import math
import re
from pathlib import Path

import yaml

from charrnn.errors import CharrnnError
from charrnn.nn.cells import CELLS, embedding_size
from charrnn.train.distribute import PRECISIONS, STRATEGIES

DEFAULTS = {
    "data": "data/linux",
    "model": {
        "cell": "lstm",
        "num_layers": 3,
        "rnn_size": 512,
        "embedding_size": 128,  # mingru, minlstm: always rnn_size (their residual stream)
        "dropout": 0.0,
        "size": None,  # auto: num_layers, rnn_size, embedding_size and
        # dropout chosen for max_time (charrnn.train.autosize)
        "auto_throughput": None,
    },  # size auto: symbols/s of a 2x256 LSTM here;
    # null: measured
    "train": {
        "batch_size": 50,
        "seq_length": 100,
        "learning_rate": 0.002,
        "seq_unit": "symbols",  # what seq_length counts: symbols, or original characters
        # (for jamo data: a window covering seq_length characters)
        "decay_rate": 0.97,  # lr multiplier per decay period (classic char-rnn)
        "decay_every": "epoch",  # "epoch" or a number of steps
        "lr_schedule": "exp",  # exp: decay_rate per period; cosine: to final_lr_fraction
        "final_lr_fraction": 0.1,  # cosine only: lr at the last step, as a fraction
        "warmup_steps": 0,  # linear warm-up from 0 over this many steps
        "grad_clip": 5.0,  # global-norm clipping; null turns it off
        "weight_decay": 0.0,  # decoupled (AdamW) decay of the weight matrices, times
        # the LR each step; 0: plain Adam
        "max_epochs": 50,
        "max_steps": None,
        "max_time": None,
        "planned_steps": None,  # the step a time budget plans the run to end at (budget.py);
        # null: measured from max_time
        "eval_every": 500,  # steps, or a duration of the run's clock (e.g. 5m)
        "save_every": 500,  # likewise
        "keep_checkpoints": 5,
        "eval_symbols": "auto",  # validation symbols scored per evaluation: a number, all
        # (the whole split), or auto: up to 262,144 (with max_time:
        # what keeps evaluations within 5% of it); a fixed subset
        "final_eval": "subset",  # at the end: subset, or all (the whole split once more)
        "log_every": 50,  # steps between metrics.jsonl / TensorBoard lines
        "sample_length": 200,  # length of the TensorBoard text sample at each eval
        "seed": 0,
        "deterministic": "auto",  # TensorFlow op determinism (exact resume); auto: on
        # without a GPU, off with one (see distribute.py)
        "jit_compile": False,  # XLA-compile the steps (measured slower on CPU for LSTMs)
        "out": "runs/linux",
        "logdir": None,  # TensorBoard logs; default: <out>/logs
        "strategy": "auto",  # tf.distribute: auto, default, mirrored, multiworker
        "precision": "auto",  # auto (bfloat16 on CPUs that have it), float32,
        # mixed_bfloat16, mixed_float16
        "intra_op_threads": "auto",  # threads one TF op may use; 0: TensorFlow's default;
        # auto: 1 for small models on 2-core CPUs (faster)
    },
}

# Types: "int", "float", "str", "bool", "duration", "decay", "auto_int" ("auto" or an int),
# "auto_bool" ("auto" or a bool), "interval" (steps, or a duration string), "eval_size"
# ("auto", "all" or an int);
# "?" suffix = null allowed.
TYPES = {
    "data": "str",
    "model": {
        "cell": "str",
        "num_layers": "int",
        "rnn_size": "int",
        "embedding_size": "int",
        "dropout": "float",
        "size": "str?",
        "auto_throughput": "float?",
    },
    "train": {
        "batch_size": "int",
        "seq_length": "int",
        "seq_unit": "str",
        "learning_rate": "float",
        "decay_rate": "float",
        "decay_every": "decay",
        "lr_schedule": "str",
        "final_lr_fraction": "float",
        "warmup_steps": "int",
        "grad_clip": "float?",
        "weight_decay": "float",
        "max_epochs": "int?",
        "max_steps": "int?",
        "max_time": "duration?",
        "planned_steps": "int?",
        "eval_every": "interval",
        "save_every": "interval",
        "keep_checkpoints": "int",
        "eval_symbols": "eval_size",
        "final_eval": "str",
        "log_every": "int",
        "sample_length": "int",
        "seed": "int?",
        "deterministic": "auto_bool",
        "jit_compile": "bool",
        "out": "str",
        "logdir": "str?",
        "strategy": "str",
        "precision": "str",
        "intra_op_threads": "auto_int",
    },
}

# Impossible values: (test, what it must be).
_POSITIVE = (lambda v: v > 0, "must be > 0")
_POSITIVE_INTERVAL = (lambda v: interval(v)[1] > 0, "must be > 0")
CHECKS = {
    "model.cell": (
        lambda v: v in CELLS or v == "auto",
        f"must be auto or one of {', '.join(CELLS)}",
    ),
    "model.num_layers": _POSITIVE,
    "model.rnn_size": _POSITIVE,
    "model.embedding_size": _POSITIVE,
    "model.dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "model.size": (lambda v: v == "auto", "must be auto or null"),
    "model.auto_throughput": _POSITIVE,
    "train.batch_size": _POSITIVE,
    "train.seq_length": _POSITIVE,
    "train.seq_unit": (lambda v: v in ("symbols", "chars"), "must be symbols or chars"),
    "train.learning_rate": _POSITIVE,
    "train.decay_rate": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "train.decay_every": (lambda v: v == "epoch" or v > 0, "must be 'epoch' or a step count > 0"),
    "train.lr_schedule": (lambda v: v in ("exp", "cosine"), "must be exp or cosine"),
    "train.final_lr_fraction": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "train.warmup_steps": (lambda v: v >= 0, "must be >= 0"),
    "train.grad_clip": _POSITIVE,
    "train.weight_decay": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.max_epochs": _POSITIVE,
    "train.max_steps": _POSITIVE,
    "train.max_time": _POSITIVE,
    "train.planned_steps": _POSITIVE,
    "train.eval_every": _POSITIVE_INTERVAL,
    "train.save_every": _POSITIVE_INTERVAL,
    "train.eval_symbols": (lambda v: v in ("auto", "all") or v >= 2, "must be auto, all or >= 2"),
    "train.final_eval": (lambda v: v in ("subset", "all"), "must be subset or all"),
    "train.keep_checkpoints": _POSITIVE,
    "train.log_every": _POSITIVE,
    "train.sample_length": (lambda v: v >= 0, "must be >= 0"),
    "train.out": (lambda v: v.strip() != "", "must not be empty"),
    "train.strategy": (lambda v: v in STRATEGIES, f"must be one of {', '.join(STRATEGIES)}"),
    "train.precision": (lambda v: v in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
    "train.intra_op_threads": (lambda v: v == "auto" or v >= 0, "must be auto or >= 0"),
    "data": (lambda v: v.strip() != "", "must not be empty"),
}

_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value):
    """Seconds from a number or a string such as '90s', '10m', '2h', '1h30m'."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"not a duration: {value!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("empty duration")
    return total


def interval(value) -> tuple:
    """``("steps", n)`` or ``("seconds", s)`` from an eval_every / save_every value: an
    integer counts steps, a duration string (``5m``) the run's clock."""
    if isinstance(value, str):
        return "seconds", parse_duration(value)
    return "steps", value


def shipped_configs() -> list:
    root = importlib.resources.files("charrnn") / "configs"
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".yaml"))


def find_config(name: str):
    """A path to the config ``name``: a file at that path, else a shipped config of
    that name (with or without .yaml), also when charrnn is installed from a wheel."""
    if Path(name).is_file():
        return Path(name)
    root = importlib.resources.files("charrnn") / "configs"
    base = Path(name).name
    for candidate in (base, base + ".yaml"):
        resource = root / candidate
        if resource.is_file():
            return resource
    raise CharrnnError(
        f"config {name} not found: no such file, and no shipped config of that "
        f"name (shipped: {', '.join(shipped_configs())})"
    )


def read_yaml(path, what="config") -> dict:
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise CharrnnError(
            f"{path}:{where} is not valid YAML ({getattr(e, 'problem', e)}); fix the file"
        ) from None
    except OSError as e:
        raise CharrnnError(f"cannot read {what} {path}: {e.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CharrnnError(f"{path}: a config must be a mapping with sections data, model, train")
    return data


def merge(config: dict, overrides: dict, source: str, sources: dict) -> None:
    """Merge ``overrides`` (nested like the config) into ``config`` in place, rejecting
    unknown keys; ``sources`` records where each key's value came from."""
    for key, value in overrides.items():
        if key not in TYPES:
            raise CharrnnError(
                f"{source}: unknown section {key!r}; the sections are {', '.join(TYPES)}"
            )
        if key == "model" and value == "auto":  # `model: auto`: {size: auto, cell: auto}
            value = {"size": "auto", "cell": "auto"}
        if isinstance(TYPES[key], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise CharrnnError(
                    f"{source}: {key} must be a mapping of keys ({', '.join(TYPES[key])})"
                )
            for sub, subvalue in value.items():
                if sub not in TYPES[key]:
                    raise CharrnnError(
                        f"{source}: unknown key {key}.{sub}; valid keys of "
                        f"{key}: {', '.join(TYPES[key])}"
                    )
                config[key][sub] = subvalue
                sources[f"{key}.{sub}"] = source
        else:
            config[key] = value
            sources[key] = source


def parse_set(items) -> list:
    """``["train.batch_size=32", ...]`` -> [({"train": {"batch_size": 32}}, "--set ...")]."""
    out = []
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CharrnnError(
                f"--set {item}: expected section.key=value, e.g. --set train.batch_size=32"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        if len(parts) == 1:
            out.append(({key: value}, f"--set {key}"))
        elif len(parts) == 2:
            out.append(({parts[0]: {parts[1]: value}}, f"--set {key}"))
        else:
            raise CharrnnError(
                f"--set {item}: keys have the form section.key (e.g. train.batch_size)"
            )
    return out


def _coerce(kind, value):
    """Return the value converted to ``kind`` or raise ValueError."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        if nullable:
            return None
        raise ValueError("must not be null")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"must be an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if kind == "str":
        if isinstance(value, (dict, list, bool)) or value is None:
            raise ValueError(f"must be a string, got {value!r}")
        return str(value)
    if kind == "duration":
        try:
            return parse_duration(value)
        except ValueError:
            raise ValueError(
                f"must be seconds or a duration such as 90s, 10m, 2h; got {value!r}"
            ) from None
    if kind == "interval":  # steps, or a duration kept as written (config.yaml reads back)
        if isinstance(value, str) and not value.strip().isdigit():
            try:
                parse_duration(value)
            except ValueError:
                raise ValueError(
                    f"must be a step count or a duration such as 90s, 5m; got {value!r}"
                ) from None
            return value.strip()
        return _coerce("int", int(value) if isinstance(value, str) else value)
    if kind == "eval_size":
        if value in ("auto", "all"):
            return value
        try:
            return _coerce("int", value)
        except ValueError:
            raise ValueError(f"must be auto, all or a number of symbols, got {value!r}") from None
    if kind == "auto_bool":
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"must be auto, true or false, got {value!r}")
    if kind in ("decay", "auto_int"):
        word, number = ("epoch", "a number of steps") if kind == "decay" else ("auto", "an integer")
        if value == word or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise ValueError(f"must be '{word}' or {number}, got {value!r}")
    raise AssertionError(kind)


def validate(config: dict, sources: dict) -> dict:
    """Type-check and range-check every value in place; returns the config.  A parallel
    cell's model.embedding_size is set to its rnn_size (charrnn.nn.cells.embedding_size),
    so config.yaml, model.json and resume's comparison all hold the model's real width."""

    def where(key):
        return sources.get(key, "default")

    for section, spec in TYPES.items():
        items = spec.items() if isinstance(spec, dict) else [(None, spec)]
        for sub, kind in items:
            key = section if sub is None else f"{section}.{sub}"
            holder, name = (config, section) if sub is None else (config[section], sub)
            try:
                holder[name] = _coerce(kind, holder[name])
            except ValueError as e:
                raise CharrnnError(f"{where(key)}: {key} {e}") from None
            check = CHECKS.get(key)
            value = holder[name]
            if check and value is not None and not check[0](value):
                raise CharrnnError(f"{where(key)}: {key} {check[1]}, got {value!r}")
    model = config["model"]  # the width the model will have (a parallel cell's: rnn_size)
    model["embedding_size"] = embedding_size(
        model["cell"], model["rnn_size"], model["embedding_size"]
    )
    return config


def load_config(config=None, base=None, sets=(), flags=None):
    """Resolve a config.

    ``config``: a path or shipped config name (or None); ``base``: a path whose YAML
    replaces the defaults first (the run's config.yaml on --resume); ``sets``: the
    ``--set`` strings; ``flags``: {"train.out": ..., "data": ...} from plain flags
    (None values are ignored).  Returns (config dict, sources dict).
    """
    resolved = copy.deepcopy(DEFAULTS)
    sources = {}
    if base is not None:
        merge(resolved, read_yaml(Path(base)), str(base), sources)
    if config is not None:
        path = find_config(config)
        merge(resolved, read_yaml(path), str(path), sources)
    for overrides, source in parse_set(sets):
        merge(resolved, overrides, source, sources)
    for key, value in (flags or {}).items():
        if value is None:
            continue
        flag = "--" + key.split(".")[-1].replace("_", "-")
        section, _, sub = key.partition(".")
        merge(resolved, {section: {sub: value}} if sub else {section: value}, flag, sources)
    return validate(resolved, sources), sources


def to_yaml(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)


def resolve(config=None, sets=(), flags=None, resume=False):
    """The config for ``charrnn train``: on resume the run's own config.yaml is the base
    (found from --out, else from train.out of the other sources)."""
    resolved, sources = load_config(config, None, sets, flags)
    if resume:
        base = Path(resolved["train"]["out"]) / "config.yaml"
        if not base.is_file():
            raise CharrnnError(
                f"nothing to resume in {resolved['train']['out']}: no config.yaml "
                "there; pass the run directory with --out"
            )
        resolved, sources = load_config(config, base, sets, flags)
    return resolved
