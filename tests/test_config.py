"""Training configuration: shipped configs, precedence, and one-line errors for bad values;
the settings' declarations and what derives from them (flags, resume guard, docs/settings.md)."""

import subprocess
import sys
from pathlib import Path

import pytest
from clihelp import error_line, ok, run
from hypothesis import given
from hypothesis import strategies as st

from charrnn.errors import CharrnnError
from charrnn.training import settings, settingtypes
from charrnn.training.config import (
    find_config,
    load_config,
    parse_duration,
    resolve,
    shipped_configs,
    to_yaml,
)

ROOT = Path(__file__).resolve().parent.parent


def assert_error(result, *needles):
    line = error_line(result, only=True)
    for needle in needles:
        assert needle in line, line


def test_every_shipped_config_loads_and_validates():
    names = shipped_configs()
    assert {"linux.yaml", "shakespeare.yaml", "korean.yaml", "quick.yaml"} <= set(names)
    for name in names:
        for spelling in (name, name[:-5]):  # with and without .yaml
            cfg, sources = load_config(spelling)
            assert cfg["train"]["out"].startswith("runs/")
            assert cfg["data"].startswith("data/")
    linux, _ = load_config("linux")
    assert linux["model"] == {
        "cell": "lstm",
        "num_layers": 3,
        "rnn_size": 512,
        "embedding_size": 128,
        "dropout": 0.0,
        "size": None,
        "auto_throughput": None,
    }
    assert load_config("quick")[0]["train"]["max_time"] == 90.0
    assert load_config("korean")[0]["data"] == "data/korean_constitution"


def test_defaults_match_the_issue():
    cfg, _ = load_config()
    assert cfg["data"] == "data/linux"
    assert cfg["model"] == {
        "cell": "lstm",
        "num_layers": 3,
        "rnn_size": 512,
        "embedding_size": 128,
        "dropout": 0.0,
        "size": None,
        "auto_throughput": None,
    }
    issue = {
        "batch_size": 50,
        "seq_length": 100,
        "learning_rate": 0.002,
        "decay_rate": 0.97,
        "decay_every": "epoch",
        "grad_clip": 5.0,
        "max_epochs": 50,
        "max_steps": None,
        "max_time": None,
        "eval_every": 500,
        "save_every": 500,
        "keep_checkpoints": 5,
        "seed": 0,
        "out": "runs/linux",
    }
    assert {k: cfg["train"][k] for k in issue} == issue


def test_a_file_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick.yaml").write_text("train: {batch_size: 7}\n")
    assert find_config("quick.yaml").resolve() == (tmp_path / "quick.yaml").resolve()
    assert load_config("quick.yaml")[0]["train"]["batch_size"] == 7
    assert load_config("quick")[0]["train"]["batch_size"] == 64  # no file "quick": shipped


def test_precedence_file_then_set_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: data/x\ntrain: {batch_size: 8, out: runs/a, max_time: 2h}\n")
    cfg, sources = load_config(
        str(path),
        sets=["train.batch_size=16", "train.out=runs/b", "model.cell=gru"],
        flags={"train.out": "runs/c", "data": None},
    )
    assert cfg["train"]["batch_size"] == 16 and cfg["train"]["out"] == "runs/c"
    assert cfg["model"]["cell"] == "gru" and cfg["data"] == "data/x"
    assert cfg["train"]["max_time"] == 7200.0
    assert sources["train.batch_size"] == "--set train.batch_size"
    assert sources["train.out"] == "--out"


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1h30m", 5400),
        ("45", 45),
        (30, 30),
        ("1.5h", 5400),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_duration_parts_add_up(h, m, s):
    assert parse_duration(f"{h}h{m}m{s}s") == h * 3600 + m * 60 + s


@pytest.mark.parametrize(
    "yaml_text,needles",
    [
        ("train: {batch_sise: 8}\n", ["train.batch_sise", "unknown key"]),
        ("modle: {cell: lstm}\n", ["modle", "unknown section"]),
        ("train: {batch_size: big}\n", ["train.batch_size", "integer"]),
        ("train: {batch_size: 0}\n", ["train.batch_size", "> 0"]),
        ("train: {learning_rate: -1}\n", ["train.learning_rate"]),
        ("model: {cell: transformer}\n", ["model.cell", "lstm"]),
        ("model: {dropout: 1.5}\n", ["model.dropout"]),
        ("train: {max_time: soon}\n", ["train.max_time", "10m"]),
        ("train: {decay_every: weekly}\n", ["train.decay_every"]),
        ("train: {deterministic: maybe}\n", ["train.deterministic", "true or false"]),
        ("train: {intra_op_threads: many}\n", ["train.intra_op_threads", "'auto' or an integer"]),
        ("train: {intra_op_threads: -1}\n", ["train.intra_op_threads", "auto or >= 0"]),
        ("train: [1, 2]\n", ["train must be a mapping"]),
        ("train: {batch_size: 8\n", ["not valid YAML"]),
    ],
)
def test_bad_config_files_are_one_line_errors_naming_key_and_file(tmp_path, yaml_text, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    assert_error(run("train", "--config", path), str(path), *needles)


def test_bad_set_values_name_the_option():
    assert_error(
        run("train", "--config", "quick", "--set", "train.batch_size=0"),
        "--set train.batch_size",
        "> 0",
    )
    assert_error(run("train", "--config", "quick", "--set", "train.nope=1"), "train.nope")
    assert_error(run("train", "--config", "quick", "--set", "batch_size"), "section.key=value")
    assert_error(run("train", "--config", "quick", "--max-time", "later"), "--max-time")


def test_missing_config_lists_the_shipped_ones():
    assert_error(run("train", "--config", "no-such-config"), "no-such-config", "quick.yaml")


def test_unprepared_data_dir_is_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "corpus.txt").write_text("hello\n")
    result = run(
        "train", "--config", "quick", "--data", tmp_path / "raw", "--out", tmp_path / "run"
    )
    assert_error(result, "not a prepared dataset", "charrnn prepare")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(CharrnnError, match="nothing to resume"):
        resolve("quick", flags={"train.out": str(tmp_path / "none")}, resume=True)
    assert_error(run("train", "--resume", "--out", tmp_path / "none"), "nothing to resume")


def test_model_auto_is_short_for_size_and_cell_auto_and_checked(tmp_path):
    from charrnn.training.config import load_config

    path = tmp_path / "a.yaml"
    path.write_text("model: auto\n")
    config, _ = load_config(str(path))
    assert config["model"]["size"] == "auto" and config["model"]["num_layers"] == 3
    assert config["model"]["cell"] == "auto"
    with pytest.raises(CharrnnError, match="model.size must be auto or null"):
        load_config(None, sets=["model.size=huge"])
    with pytest.raises(
        CharrnnError, match="model.cell must be auto or one of lstm, gru, rnn, mingru, minlstm"
    ):
        load_config(None, sets=["model.cell=mamba"])
    with pytest.raises(CharrnnError, match="train.seq_unit must be symbols or chars"):
        load_config(None, sets=["train.seq_unit=bytes"])


# --- the declarations and what derives from them -------------------------------------------


def test_every_default_is_a_valid_value_of_its_own_setting():
    for setting in settings.SETTINGS:
        assert setting.read(setting.default) == setting.default, setting.key
        if setting.nullable:
            assert setting.read(None) is None
        else:
            with pytest.raises(ValueError, match="must not be null"):
                setting.read(None)
    with pytest.raises(TypeError, match="null="):  # a null default says what null means
        settingtypes.Setting("train.x", settingtypes.INT, None, "X.")


def test_the_reference_is_what_the_declarations_generate():
    """docs/settings.md: regenerate it with `python -m charrnn.training.settings`."""
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert text == settings.reference()
    for setting in settings.SETTINGS:
        assert f"| `{setting.key}` |" in text
    printed = subprocess.run(
        [sys.executable, "-m", "charrnn.training.settings"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == text


def test_train_flags_are_the_declared_ones_with_their_help():
    helptext = " ".join(ok(run("train", "--help")).stdout.split())
    flagged = [s for s in settings.SETTINGS if s.flag]
    assert {s.flag for s in flagged} == {
        "--data",
        "--out",
        "--max-time",
        "--model-size",
        "--max-steps",
        "--max-epochs",
        "--seed",
        "--logdir",
        "--strategy",
    }
    for setting in flagged:  # a null default shows what null means
        default = f" [default: {setting.null.strip('`')}]" if setting.default is None else ""
        assert f"{setting.help.rstrip('.')}{default} (sets {setting.key})." in helptext
    assert "TensorBoard log directory [default: <out>/logs] (sets train.logdir)." in helptext
    assert "-o, --out PATH" in helptext and "--strategy [auto|default|mirrored|multiworker]" in (
        helptext
    )


def test_a_flag_sets_its_key_and_errors_name_the_flag(tmp_path):
    cfg, sources = load_config(
        "quick", flags={"model.size": "auto", "train.max_steps": 7, "train.logdir": None}
    )
    assert cfg["model"]["size"] == "auto" and cfg["train"]["max_steps"] == 7
    assert sources["model.size"] == "--model-size"  # the flag's name, not --size
    assert cfg["train"]["logdir"] is None and "train.logdir" not in sources
    assert_error(
        run("train", "--config", "quick", "--max-steps", 0),
        "--max-steps: train.max_steps must be > 0, got 0",
    )
    usage = run("train", "--config", "quick", "--model-size", "big")  # click's Choice
    assert usage.exit_code == 2 and "'--model-size': 'big' is not 'auto'" in usage.stderr


def test_set_takes_a_string_as_written_and_other_values_as_yaml():
    cfg, _ = load_config(
        "quick",
        sets=[
            "train.out=010",
            "data=yes",
            "train.logdir=null",
            "train.max_time=1h30m",
            "train.eval_every=5m",
            "train.grad_clip=~",
            "train.jit_compile=true",
            "train.learning_rate=1e-3",
        ],
    )
    t = cfg["train"]
    assert (t["out"], cfg["data"], t["logdir"]) == ("010", "yes", None)
    assert (t["max_time"], t["eval_every"], t["grad_clip"]) == (5400.0, "5m", None)
    assert t["jit_compile"] is True and t["learning_rate"] == 0.001
    with pytest.raises(CharrnnError, match=r"--set train.out: train.out must not be null"):
        load_config("quick", sets=["train.out= "])
    with pytest.raises(CharrnnError, match=r"--set train.seed: train.seed must be an integer"):
        load_config("quick", sets=["train.seed=soon"])


def test_set_reads_every_documented_default_back():
    sets = [f"{s.key}={s.default_text}" for s in settings.SETTINGS]
    assert load_config("quick", sets=sets)[0] == load_config()[0]


def test_written_config_reads_back_the_same(tmp_path):
    """config.yaml in a run is to_yaml of the resolved config; resume reads it as its base."""
    cfg, _ = load_config("quick", sets=["train.eval_every=5m", "model.cell=mingru"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg), encoding="utf-8")
    again, sources = load_config(None, base=path)
    assert again == cfg and set(sources) == {s.key for s in settings.SETTINGS if "." in s.key} | {
        "data"
    }
    assert list(again["train"]) == list(settings.defaults()["train"])  # the declared order


def test_resume_guard_is_the_declared_fixed_settings():
    import inspect

    from charrnn.nn.model import build_model

    fixed = [s.name for s in settings.fixed_on_resume("train")]
    assert fixed == ["batch_size", "seq_length", "seq_unit"]
    # the model keys --resume compares with model.json: the architecture, what builds the model
    model_keys = [s.name for s in settings.fixed_on_resume("model")]
    assert model_keys == list(inspect.signature(build_model).parameters)[1:]


def test_the_cli_imports_neither_yaml_nor_tensorflow():
    code = (
        "import sys, charrnn.cli; "
        "assert not {'yaml', 'tensorflow', 'keras'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_model_arguments_are_the_model_settings_resume_keeps():
    """model.json holds MODEL_ARGS (and vocab_size); resume refuses a change to the model
    settings marked fixed_on_resume: the two name the same keys."""
    from charrnn.nn.model import MODEL_ARGS
    from charrnn.training.settings import fixed_on_resume

    assert {s.key.split(".", 1)[1] for s in fixed_on_resume("model")} == set(MODEL_ARGS)
