"""`charrnn evaluate --dynamic`: scoring while the weights adapt to the text."""

import json

import numpy as np
import pytest
from clihelp import ok, run

from charrnn.analysis import scoring
from charrnn.analysis.dynamic import dynamic_scorer
from charrnn.store.loader import load

# Text the model never saw, twice: the second time it should know it better.
NEW = (
    "Slow rivers carry old boats past the mill, and the miller counts them every "
    "morning before the bread is baked.\n"
)


def test_each_symbol_is_scored_before_the_weights_see_it(english_run):
    m = load(english_run)
    ids = m.vocab.encode(NEW * 3)
    before = [v.numpy().copy() for v in m.model.trainable_variables]
    static = scoring.symbol_nats(m.model, ids, pieces=1)
    dyn = dynamic_scorer(m.model, segment=50, lr=0.1)(ids)
    # the first segment is scored by the trained weights, in the same one stream
    np.testing.assert_allclose(dyn[1:51], static[1:51], rtol=1e-4, atol=1e-5)
    assert not np.allclose(dyn[51:], static[51:])  # then the weights have moved
    # the third copy is predicted much better than before, the trained weights come back
    third = slice(2 * len(ids) // 3, None)
    assert np.nanmean(dyn[third]) < np.nanmean(static[third]) - 0.1
    for v, b in zip(m.model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_evaluate_dynamic_through_the_cli(english_run, tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW * 3, encoding="utf-8")
    static = json.loads(ok(run("evaluate", english_run, path, "--json")).stdout)
    args = (
        "evaluate",
        english_run,
        path,
        path,
        "--json",
        "--dynamic",
        "--dynamic-lr",
        0.1,
        "--dynamic-segment",
        50,
    )
    dyn = json.loads(ok(run(*args)).stdout)
    assert dyn["scoring"]["pieces"] == 1 and dyn["scoring"]["dynamic"] == {"segment": 50, "lr": 0.1}
    first, second = dyn["files"]
    assert first["bits_per_char"] == pytest.approx(second["bits_per_char"], rel=1e-6)  # reset
    assert first["bits_per_char"] < static["files"][0]["bits_per_char"] - 0.05
    lines = [
        json.loads(x)
        for x in ok(
            run("evaluate", english_run, path, "--per-line", "--dynamic", "--dynamic-lr", 0.1)
        ).stdout.splitlines()
    ]
    assert len(lines) == 3 and lines[2]["bits_per_char"] < lines[0]["bits_per_char"]
    r = run("evaluate", english_run, path, "--dynamic", "--streams", 4)
    assert r.exit_code == 2 and "--dynamic reads each file in one stream" in r.stderr


def test_cli_defaults_are_the_module_s():
    from charrnn.analysis import dynamic
    from charrnn.cli import cli

    options = {p.name: p.default for p in cli.get_command(None, "evaluate").params}
    assert (options["dynamic_lr"], options["dynamic_segment"]) == (dynamic.LR, dynamic.SEGMENT)
