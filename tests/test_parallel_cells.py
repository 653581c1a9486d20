"""The parallel cells (mingru, minlstm) as first-class cells: train (exact resume, mixed
precision, model auto), sample (both engines, beam, allow, -i), evaluate (static and
dynamic), visualize's sweep and the embedding setting, through the real CLI on tiny
models.  (Fine-tuning: tests/test_finetune.py; the mirrored strategy:
tests/test_distribute.py; visualize against evaluate: tests/test_visualize.py.)"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from clihelp import ok, run
from conftest import ENGLISH
from test_generate import _logprob
from test_train import checkpoint_values, metrics, same_metrics

from charrnn.generate import sampler
from charrnn.generate.choice import Options
from charrnn.generate.sampler import Sampler
from charrnn.nn.cells import REGISTRY
from charrnn.nn.step import NumpyOps, cell_step
from charrnn.store.loader import load

# 2x16, batch 16 x 32: 10 batches an epoch of english_data
COMMON = [
    "--set",
    "model.num_layers=2",
    "--set",
    "model.rnn_size=16",
    "--set",
    "model.embedding_size=8",  # asked for, but a parallel cell's is rnn_size
    "--set",
    "train.batch_size=16",
    "--set",
    "train.seq_length=32",
    "--set",
    "train.learning_rate=0.01",
    "--set",
    "train.sample_length=0",
    "--set",
    "train.intra_op_threads=1",
]


def train(data, out, cell, *args, steps):
    return ok(
        run(
            "train",
            "--data",
            data,
            "--out",
            out,
            "--max-steps",
            steps,
            *COMMON,
            "--set",
            f"model.cell={cell}",
            *args,
        )
    )


# --- training --------------------------------------------------------------------------


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(english_data, tmp_path):
    """TBPTT with the state carried across batches and reset at each epoch; dropout on
    the residual branches exercises the restored RNG.  The resume at step 12 is mid-epoch."""
    common = [
        "--seed",
        7,
        "--set",
        "model.dropout=0.3",
        "--set",
        "train.precision=float32",
        "--set",
        "train.log_every=2",
        "--set",
        "train.eval_every=6",
        "--set",
        "train.save_every=100",
        "--set",
        "train.decay_every=7",
    ]
    whole = train(english_data, tmp_path / "whole", "minlstm", *common, steps=24)
    train(english_data, tmp_path / "split", "minlstm", *common, steps=12)
    ok(
        run(
            "train",
            "--resume",
            "--out",
            tmp_path / "split",
            "--max-steps",
            24,
            "--set",
            "model.embedding_size=8",
        )
    )  # asking again changes nothing
    # the embedding is the residual stream: what the log, config.yaml and model.json say
    assert "model: 2x16 minlstm, embedding 16 (= rnn_size" in whole.stderr
    assert "embedding_size: 16" in (tmp_path / "split" / "config.yaml").read_text()
    assert json.loads((tmp_path / "split" / "model.json").read_text())["embedding_size"] == 16

    a = same_metrics(tmp_path / "whole", tmp_path / "split", list(range(2, 25, 2)))
    assert a[-1]["loss"] < a[0]["loss"]
    from charrnn.store.checkpoints import list_in

    va = checkpoint_values(list_in(tmp_path / "whole" / "checkpoints")[0].prefix)
    vb = checkpoint_values(list_in(tmp_path / "split" / "checkpoints")[0].prefix)
    assert va.keys() == vb.keys()
    assert any(k.startswith("state/") for k in va) and any(k.startswith("rng/") for k in va)
    for k in va:
        np.testing.assert_allclose(va[k], vb[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert int(va["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 2


def test_mixed_precision_is_finite_and_close_to_float32(english_data, tmp_path):
    """With dropout, whose layers stay float32 like the residual stream."""
    vals = {}
    for precision in ("float32", "mixed_float16"):  # (auto: mixed_bfloat16, the fixtures')
        out = tmp_path / precision
        result = train(
            english_data,
            out,
            "mingru",
            "--set",
            f"train.precision={precision}",
            "--set",
            "model.dropout=0.1",
            "--seed",
            3,
            "--set",
            "train.eval_every=20",
            "--set",
            "train.log_every=5",
            steps=20,
        )
        assert f"precision {precision}" in result.stderr
        assert all(math.isfinite(r["loss"]) for r in metrics(out))
        vals[precision] = [r["val_loss"] for r in metrics(out) if "val_loss" in r][-1]
    assert vals["float32"] != vals["mixed_float16"]  # it really computed in 16 bits
    assert abs(vals["float32"] - vals["mixed_float16"]) < 0.02, vals


def test_the_tf_checkpoint_alone_holds_the_blocks(mingru_run):
    """Without weights.safetensors a run loads from its TensorFlow checkpoint's "model"."""
    from charrnn.store import checkpoints, loader, rundir

    m = load(mingru_run)
    prefix = str(Path(m.checkpoint) / checkpoints.TF_NAME)
    tensors, _ = loader._restore(rundir.read_model_args(mingru_run), prefix)
    for name, value in m.tensors.items():
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)


def test_model_auto_counts_a_parallel_cell_s_own_weights(english_data, tmp_path):
    from charrnn.training import autosize

    out = tmp_path / "auto"
    vocab = len(json.loads((english_data / "vocab.json").read_text())["symbols"])
    train_symbols = len(np.load(english_data / "train.npy", mmap_mode="r"))
    # max_steps 2 of 8 x 16 lets the run read 256 symbols, whatever the budget
    expect, _ = autosize.choose(
        vocab, train_symbols, 2.0, "mingru", throughput=3000.0, most=2 * 8 * 16
    )
    r = ok(
        run(
            "train",
            "--data",
            english_data,
            "--out",
            out,
            "--model-size",
            "auto",
            "--max-time",
            "2s",
            "--max-steps",
            2,
            "--set",
            "model.cell=mingru",
            "--set",
            "model.auto_throughput=3000",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.seq_length=16",
            "--set",
            "train.sample_length=0",
        )
    )
    units = expect["rnn_size"]
    assert expect["embedding_size"] == units
    n = autosize.params(expect["num_layers"], units, vocab, "mingru")
    assert f"model auto: {expect['num_layers']}x{units} mingru, embedding {units}, " in r.stderr
    assert f"({n:,} parameters)" in r.stderr and f"{n:,} parameters\n" in r.stderr
    stored = json.loads((out / "model.json").read_text())
    assert {k: stored[k] for k in expect} == expect


# --- sampling --------------------------------------------------------------------------


def keras_greedy(model, prime_ids, n):
    """Greedy continuation, one Keras call per symbol with the state carried."""
    from charrnn.backend import tensorflow

    tf = tensorflow()
    logits, states = model(tf.constant(np.asarray(prime_ids, np.int32)[None]), return_state=True)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(logits.numpy()[0, -1])))
        logits, states = model(tf.constant([out[-1:]]), states=states, return_state=True)
    return out


@pytest.mark.parametrize("which, prime", [("mingru_run", "We are "), ("minlstm_run", "대한민국")])
def test_greedy_is_the_keras_models_argmax(which, prime, request):
    run_dir = request.getfixturevalue(which)
    m = load(run_dir)
    ids = keras_greedy(m.model, m.vocab.encode(prime), 24)  # >= 6 syllables of jamo
    got = ok(run("sample", run_dir, "-t", 0, "-n", 6, "--prime", prime, "--seed", 1)).stdout
    want = prime + m.vocab.decode(ids)
    assert got == want[: len(got)] and len(got) == len(prime) + 6


def test_numpy_and_xla_engines_draw_the_same_sample(mingru_run):
    w = load(mingru_run).weights
    opt = Options(temperature=1.1, top_p=0.95, seed=4)
    got = {}
    for engine in ("numpy", "xla"):
        s = Sampler(w, 2, opt, engine=engine)
        try:
            s.prime([3, 4, 5])
            got[engine] = np.concatenate([s.generate(k) for k in (1, 60, 99)], axis=1)
        finally:
            s.close()
    np.testing.assert_array_equal(got["numpy"], got["xla"])
    assert (got["numpy"][0] != got["numpy"][1]).any()


def test_seeded_sample_is_reproducible_across_the_handover(minlstm_run, monkeypatch):
    """The CLI's NumPy phase, then the XLA child process (the weights, norms and
    feed-forward cross the pipe): the same text as NumPy alone."""
    args = ("sample", minlstm_run, "-n", 60, "--seed", 3, "--prime", "대한민국")
    alone = ok(run(*args)).stdout  # 60 syllables: far fewer steps than the NumPy phase
    assert ok(run(*args)).stdout == alone and len(alone) == 4 + 60
    monkeypatch.setenv(sampler.NUMPY_STEPS_ENV, "40")
    assert ok(run(*args)).stdout == alone
    assert ok(run(*args[:-4], "--seed", 4, "--prime", "대한민국")).stdout != alone


@pytest.mark.parametrize("which, prime", [("mingru_run", "The na"), ("minlstm_run", "대한민국")])
def test_beam_and_allow(which, prime, request):
    run_dir = request.getfixturevalue(which)
    m = load(run_dir)
    greedy = ok(run("sample", run_dir, "--prime", prime, "-n", 20, "-t", 0)).stdout
    beam = ok(run("sample", run_dir, "--prime", prime, "-n", 20, "--beam", 4)).stdout
    assert len(beam) == len(greedy) == len(prime) + 20
    lb, lg = _logprob(m, prime, beam[len(prime) :]), _logprob(m, prime, greedy[len(prime) :])
    assert lb >= lg - 1e-6, (beam, lb, greedy, lg)
    allow = "aeiou nrst" if which == "mingru_run" else "대한민국의 "
    out = ok(run("sample", run_dir, "--prime", prime, "-n", 30, "--seed", 2, "--allow", allow))
    assert set(out.stdout[len(prime) :]) <= set(allow) and len(out.stdout) == len(prime) + 30


def test_interactive_candidates_are_the_models_and_tab_writes_a_sample(mingru_run):
    import pexpect
    from test_interactive import check_candidates, model_probs, screen, shows, spawn

    c = spawn(mingru_run, "--seed", "1")
    screen(c)
    c.send("We are")
    _, text, cands, _ = screen(c, shows("We are"))
    vocab, p = model_probs(mingru_run, "We are")
    check_candidates(cands, vocab, p)
    c.send("\t")  # the model writes 40 characters: the NumPy sampler's, same seed and state
    _, text, _, _ = screen(c)
    s = Sampler(load(mingru_run).weights, 1, Options(seed=1), engine="numpy")
    s.prime([sampler.start_id(vocab)] + list(vocab.encode("We are")))
    assert text == "We are" + vocab.decode(s.generate(40)[0])
    c.send("\x04")
    c.expect(pexpect.EOF)
    c.close()
    assert c.exitstatus == 0


# --- evaluating --------------------------------------------------------------------------


def stepped_nats(w, ids):
    """-ln P(ids[t] | ids[:t]) for t >= 1, stepping charrnn.nn.step's cell from zero."""
    states, out = w.zero_states(1), []
    for t in range(len(ids) - 1):
        logits, states = cell_step(NumpyOps, w, ids[t : t + 1], states)
        z = logits[0].astype(np.float64)
        out.append(z.max() + np.log(np.exp(z - z.max()).sum()) - z[ids[t + 1]])
    return np.array(out)


def test_evaluate_is_the_numpy_cell_stepped(mingru_run, tmp_path):
    """evaluate (the Keras blocks, a window at a time) equals stepping the NumPy cell."""
    text = ENGLISH[:700]
    path = tmp_path / "held.txt"
    path.write_text(text, encoding="utf-8")
    m = load(mingru_run)
    want = stepped_nats(m.weights, m.vocab.encode(text)).sum()
    total = json.loads(ok(run("evaluate", mingru_run, path, "--json")).stdout)["total"]
    assert total["nats"] == pytest.approx(want, rel=1e-5)
    assert total["predictions"] == len(text) - 1
    lines = [
        json.loads(x)
        for x in ok(run("evaluate", mingru_run, path, "--per-line")).stdout.splitlines()
    ]
    assert len(lines) == text.count("\n") + 1
    assert sum(x["bits"] for x in lines) == pytest.approx(want / math.log(2), rel=1e-5)


def test_evaluate_dynamic_adapts_and_restores(mingru_run, tmp_path):
    from test_dynamic import NEW

    from charrnn.analysis import scoring
    from charrnn.analysis.dynamic import dynamic_scorer

    text = NEW * 3  # never seen: the third copy is known better
    m = load(mingru_run)
    ids = m.vocab.encode(text)
    before = [v.numpy().copy() for v in m.model.trainable_variables]
    static = scoring.symbol_nats(m.model, ids, pieces=1)
    dyn = dynamic_scorer(m.model, segment=50, lr=0.1)(ids)
    np.testing.assert_allclose(dyn[1:51], static[1:51], rtol=1e-4, atol=1e-5)
    third = slice(2 * len(ids) // 3, None)
    assert np.nanmean(dyn[third]) < np.nanmean(static[third]) - 0.1
    for v, b in zip(m.model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    path = tmp_path / "new.txt"
    path.write_text(text, encoding="utf-8")
    f = {
        mode: json.loads(ok(run("evaluate", mingru_run, path, "--json", *mode)).stdout)["total"]
        for mode in ((), ("--dynamic", "--dynamic-lr", "0.1", "--dynamic-segment", "50"))
    }
    static_bpc, dynamic_bpc = (x["bits_per_char"] for x in f.values())
    assert dynamic_bpc < static_bpc - 0.1


# --- visualize ---------------------------------------------------------------------------


def random_weights(cell, vocab=13, layers=2, units=8, seed=0):
    from charrnn.nn.cells import get
    from charrnn.nn.tensors import engine_weights, expected_shapes

    args = {
        "vocab_size": vocab,
        "cell": cell,
        "num_layers": layers,
        "rnn_size": units,
        "embedding_size": units if get(cell).parallel else 5,
    }
    rng = np.random.default_rng(seed)
    return engine_weights(
        cell,
        {
            k: rng.normal(scale=0.5, size=s).astype(np.float32)
            for k, s in expected_shapes(args).items()
        },
    )


@pytest.mark.parametrize("cell", list(REGISTRY))
def test_visualize_sweep_is_the_step(cell):
    """run_states (a layer, or a block, over the whole text at once) gives the logits and
    states of stepping cell_step a symbol at a time."""
    from charrnn.analysis.visualize import run_states, unit_groups

    w = random_weights(cell)
    ids = np.random.default_rng(1).integers(0, 13, 60).astype(np.int32)
    logits, acts = run_states(w, ids)
    assert acts.shape == (60, sum(g["size"] for g in unit_groups(w)))
    states = w.zero_states(1)
    for t in range(len(ids)):
        want, states = cell_step(NumpyOps, w, ids[t : t + 1], states)
        np.testing.assert_allclose(logits[t], want[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(acts[t], np.concatenate(states, axis=1)[0], rtol=1e-5, atol=1e-5)


def test_visualize_page_of_a_parallel_cell(minlstm_run, tmp_path):
    path = tmp_path / "ko.txt"
    path.write_text("대한민국은 민주공화국이다.\n", encoding="utf-8")
    out = tmp_path / "page.html"
    ok(run("visualize", minlstm_run, path, "-o", out))
    data = json.loads(ok(run("visualize", minlstm_run, path, "--json")).stdout)
    assert data["cell"] == "minlstm" and data["units"] == 32
    assert [(g["layer"], g["kind"]) for g in data["unit_groups"]] == [(1, "h"), (2, "h")]
    assert "minlstm" in Path(out).read_text(encoding="utf-8")


def test_a_run_of_a_cell_this_charrnn_does_not_know_is_one_error(mingru_run, tmp_path):
    import shutil

    from clihelp import error_line

    run_dir = tmp_path / "future"
    shutil.copytree(mingru_run, run_dir)
    args = json.loads((run_dir / "model.json").read_text())
    (run_dir / "model.json").write_text(json.dumps({**args, "cell": "mamba"}))
    text = tmp_path / "text.txt"
    text.write_text(ENGLISH, encoding="utf-8")
    for cmd in (["sample", run_dir, "-n", 5], ["evaluate", run_dir, text]):
        line = error_line(run(*cmd), only=True)
        assert f"{run_dir} is a run of cell 'mamba', which this charrnn does not know" in line
        assert line.endswith("upgrade charrnn")
