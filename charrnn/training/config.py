"""Training configuration: YAML files, command-line overrides, validation.

A config has three sections, ``data`` (a prepared dataset directory), ``model``
and ``train``; every key is declared once, with its type, default, check and help, in
charrnn.training.settings.  Precedence, lowest first: the defaults, the YAML file
(``--config``; on ``--resume`` the run's own config.yaml), ``--set
section.key=value``, then the plain flags (``--data``, ``--out``, ...).  Every
mistake is reported as one CharrnnError naming the key, where its value came from,
the value and what it must be.  Relative paths (data, out, logdir) are relative to
the current directory.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from charrnn.errors import CharrnnError
from charrnn.nn.cells import embedding_size
from charrnn.training.settings import BY_KEY, SECTIONS, SETTINGS, defaults
from charrnn.training.settingtypes import interval, parse_duration

if TYPE_CHECKING:
    from importlib.abc import Traversable

    from charrnn.atomic import StrPath

__all__ = [  # parse_duration and interval live with the settings' types; imported from here too
    "find_config",
    "flag_name",
    "interval",
    "load_config",
    "merge",
    "parse_duration",
    "parse_set",
    "read_yaml",
    "resolve",
    "shipped_configs",
    "to_yaml",
    "validate",
]


def shipped_configs() -> list:
    root = importlib.resources.files("charrnn") / "configs"
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".yaml"))


def find_config(name: str) -> Path | Traversable:
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


def read_yaml(path: Path | Traversable, what: str = "config") -> dict:
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
        if key not in SECTIONS:
            raise CharrnnError(
                f"{source}: unknown section {key!r}; the sections are {', '.join(SECTIONS)}"
            )
        keys = SECTIONS[key]
        if keys is None:  # a top-level key (data)
            config[key] = value
            sources[key] = source
            continue
        if key == "model" and value == "auto":  # `model: auto`: {size: auto, cell: auto}
            value = {"size": "auto", "cell": "auto"}
        if value is None:
            continue
        if not isinstance(value, dict):
            raise CharrnnError(f"{source}: {key} must be a mapping of keys ({', '.join(keys)})")
        for sub, subvalue in value.items():
            if sub not in keys:
                raise CharrnnError(
                    f"{source}: unknown key {key}.{sub}; valid keys of {key}: {', '.join(keys)}"
                )
            config[key][sub] = subvalue
            sources[f"{key}.{sub}"] = source


def _from_text(raw: str, key: str):
    """A value written as text (--set): read as YAML, but a string or path setting takes
    the text as written (YAML would read ``out=010`` as 8 and ``out=yes`` as true), unless
    it is quoted (``out="my run"``: the quotes are YAML's)."""
    text = raw.strip()
    setting = BY_KEY.get(key)
    if setting is not None and setting.kind.verbatim and text[:1] not in ("'", '"'):
        return None if text in ("", "~", "null", "Null", "NULL") else text
    if not text:
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_set(items: Iterable[str] | None) -> list[tuple[dict, str]]:
    """``["train.batch_size=32", ...]`` -> [({"train": {"batch_size": 32}}, "--set ...")]."""
    out = []
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CharrnnError(
                f"--set {item}: expected section.key=value, e.g. --set train.batch_size=32"
            )
        out.append((_nested(key, _from_text(raw, key), f"--set {item}"), f"--set {key}"))
    return out


def _nested(key: str, value: Any, what: str = "") -> dict:
    """``"train.batch_size", 32`` -> ``{"train": {"batch_size": 32}}``; ``"data"`` is
    top-level."""
    parts = key.split(".")
    if len(parts) > 2 or not all(parts):
        raise CharrnnError(
            f"{what or repr(key)}: keys have the form section.key (e.g. train.batch_size)"
        )
    return {key: value} if len(parts) == 1 else {parts[0]: {parts[1]: value}}


def validate(config: dict, sources: dict) -> dict:
    """Type-check and range-check every value in place, as its declaration says
    (charrnn.training.settings); returns the config.  A parallel cell's model.embedding_size
    is set to its rnn_size (charrnn.nn.cells.embedding_size), so config.yaml, model.json
    and resume's comparison all hold the model's real width."""
    for setting in SETTINGS:
        holder = config if setting.section is None else config[setting.section]
        try:
            holder[setting.name] = setting.read(holder[setting.name])
        except ValueError as e:
            where = sources.get(setting.key, "default")
            raise CharrnnError(f"{where}: {setting.key} {e}") from None
    model = config["model"]  # the width the model will have (a parallel cell's: rnn_size)
    if model["cell"] != "auto":  # else once the cell is chosen (charrnn.training.setup)
        model["embedding_size"] = embedding_size(
            model["cell"], model["rnn_size"], model["embedding_size"]
        )
    return config


def flag_name(key: str) -> str:
    """The flag that sets ``key``, as messages name it (``--max-time``)."""
    setting = BY_KEY.get(key)
    if setting is not None and setting.flag:
        return setting.flag
    return "--" + key.split(".")[-1].replace("_", "-")


def load_config(
    config: str | None = None,
    base: StrPath | None = None,
    sets: Iterable[str] = (),
    flags: dict[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict, dict]:
    """Resolve a config.

    ``config``: a path or shipped config name (or None); ``base``: a path whose YAML
    replaces the defaults first (the run's config.yaml on --resume); ``sets``: the
    ``--set`` strings; ``overrides``: the Python API's {"section.key": value} (a string
    read as ``--set`` reads it); ``flags``: {"train.out": ..., "data": ...} from plain
    flags (None values are ignored).  Returns (config dict, sources dict).
    """
    resolved = defaults()
    sources = {}
    if base is not None:
        merge(resolved, read_yaml(Path(base)), str(base), sources)
    if config is not None:
        path = find_config(config)
        merge(resolved, read_yaml(path), str(path), sources)
    for nested, source in parse_set(sets):
        merge(resolved, nested, source, sources)
    for key, value in (overrides or {}).items():
        if isinstance(value, str):
            value = _from_text(value, key)
        merge(resolved, _nested(key, value), f"overrides[{key!r}]", sources)
    for key, value in (flags or {}).items():
        if value is None:
            continue
        merge(resolved, _nested(key, value), flag_name(key), sources)
    return validate(resolved, sources), sources


def to_yaml(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=False)


def resolve(
    config: str | None = None,
    sets: Iterable[str] = (),
    flags: dict[str, Any] | None = None,
    resume: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> dict:
    """The config for ``charrnn train``: on resume the run's own config.yaml is the base
    (found from --out, else from train.out of the other sources)."""
    resolved, sources = load_config(config, None, sets, flags, overrides)
    if resume:
        base = Path(resolved["train"]["out"]) / "config.yaml"
        if not base.is_file():
            raise CharrnnError(
                f"nothing to resume in {resolved['train']['out']}: no config.yaml "
                "there; pass the run directory with --out"
            )
        resolved, sources = load_config(config, base, sets, flags, overrides)
    return resolved
