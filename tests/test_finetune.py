"""Fine-tuning onto another alphabet: `train --init-from RUN` maps weights by symbol, and
`prepare --vocab-from RUN` keeps the run's alphabet.  Real CLI, real tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
from clihelp import error_line, ok, run

# Public domain: the Declaration of the Rights of Man and of the Citizen (1789), articles 1-6.
FRENCH = """\
Art. 1er. Les hommes naissent et demeurent libres et égaux en droits. Les distinctions sociales
ne peuvent être fondées que sur l'utilité commune.
Art. 2. Le but de toute association politique est la conservation des droits naturels et
imprescriptibles de l'Homme. Ces droits sont la liberté, la propriété, la sûreté, et la
résistance à l'oppression.
Art. 3. Le principe de toute Souveraineté réside essentiellement dans la Nation. Nul corps, nul
individu ne peut exercer d'autorité qui n'en émane expressément.
Art. 4. La liberté consiste à pouvoir faire tout ce qui ne nuit pas à autrui : ainsi, l'exercice
des droits naturels de chaque homme n'a de bornes que celles qui assurent aux autres Membres de
la Société la jouissance de ces mêmes droits. Ces bornes ne peuvent être déterminées que par la Loi.
Art. 5. La Loi n'a le droit de défendre que les actions nuisibles à la Société. Tout ce qui n'est
pas défendu par la Loi ne peut être empêché, et nul ne peut être contraint à faire ce qu'elle
n'ordonne pas.
Art. 6. La Loi est l'expression de la volonté générale. Tous les Citoyens ont droit de concourir
personnellement, ou par leurs Représentants, à sa formation. Elle doit être la même pour tous,
soit qu'elle protège, soit qu'elle punisse.
"""
# The source run's settings (tests/conftest.py _train); the fine-tuned runs must match them.
MODEL = [
    "model.num_layers=2",
    "model.rnn_size=32",
    "model.embedding_size=16",
    "train.batch_size=16",
    "train.seq_length=32",
]
ACCENTED = set("éèêàû")


def symbols(path):
    return json.loads((Path(path) / "vocab.json").read_text(encoding="utf-8"))["symbols"]


def train(data, out, *sets, steps, init_from=None, seed=1):
    args = ["train", "--data", data, "--out", out, "--max-steps", steps, "--seed", seed]
    if init_from:
        args += ["--init-from", init_from]
    for s in MODEL + [
        "train.eval_every=20",
        "train.save_every=20",
        "train.log_every=20",
        "train.sample_length=0",
        *sets,
    ]:
        args += ["--set", s]
    return ok(run(*args))


def weights(run_dir, checkpoint="best"):
    """embedding [V, E], output kernel [H, V], bias [V], and the recurrent weights."""
    from charrnn.store.loader import load_run

    m = load_run(run_dir, checkpoint).model
    return {
        "emb": m.embedding.embeddings.numpy(),
        "kernel": m.dense.kernel.numpy(),
        "bias": m.dense.bias.numpy(),
        "rnn": [w.numpy() for r in m.rnns for w in r.weights],
    }


@pytest.fixture(scope="module")
def french(tmp_path_factory):
    root = tmp_path_factory.mktemp("french")
    src = root / "french.txt"
    src.write_text(FRENCH * 3, encoding="utf-8")
    return src


@pytest.fixture(scope="module")
def french_data(french):
    out = french.parent / "fr"
    ok(run("prepare", french, "-o", out, "--val-fraction", "0.1", "-q"))
    return out


def test_init_from_maps_by_symbol(english_run, french_data, tmp_path):
    old, new = symbols(english_run), symbols(french_data)
    shared = [c for c in new if c in old]
    fresh = [c for c in new if c not in old]
    dropped = [c for c in old if c not in new]
    assert ACCENTED <= set(fresh) and len(shared) > 20 and dropped  # a real change of alphabet

    # 1 step at a negligible learning rate: the checkpoint holds the initial weights.
    tiny_lr = "train.learning_rate=1e-12"
    result = train(french_data, tmp_path / "init", tiny_lr, steps=1, init_from=english_run)
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("initialised weights")]
    assert (
        len(line) == 1
        and (
            f"{len(shared)} symbols shared (weights kept), {len(fresh)} new "
            f"(fresh weights), {len(dropped)} dropped"
        )
        in line[0]
    )
    train(french_data, tmp_path / "scratch", tiny_lr, steps=1)  # same seed, no --init-from
    src, init = weights(english_run), weights(tmp_path / "init", "latest")
    scratch = weights(tmp_path / "scratch", "latest")

    o = [old.index(c) for c in shared]
    n = [new.index(c) for c in shared]
    f = [new.index(c) for c in fresh]
    np.testing.assert_allclose(init["emb"][n], src["emb"][o], atol=1e-6)
    np.testing.assert_allclose(init["kernel"][:, n], src["kernel"][:, o], atol=1e-6)
    np.testing.assert_allclose(init["bias"][n], src["bias"][o], atol=1e-6)
    for a, b in zip(init["rnn"], src["rnn"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # New symbols get the model's normal initialisation: what a fresh run has.
    np.testing.assert_allclose(init["emb"][f], scratch["emb"][f], atol=1e-6)
    np.testing.assert_allclose(init["kernel"][:, f], scratch["kernel"][:, f], atol=1e-6)
    np.testing.assert_allclose(init["bias"][f], scratch["bias"][f], atol=1e-6)
    assert not np.allclose(init["emb"][n], scratch["emb"][n], atol=1e-3)


def test_vocab_from_keeps_the_old_alphabet(english_run, english_data, french, tmp_path):
    data = tmp_path / "fr+en"
    summary = ok(
        run(
            "prepare",
            french,
            "-o",
            data,
            "--val-fraction",
            "0.1",
            "--vocab-from",
            english_run,
            "--json",
            "-q",
        )
    ).stdout
    old, new = symbols(english_run), symbols(data)
    assert new[: len(old)] == old  # the old ids
    added = new[len(old) :]
    assert ACCENTED <= set(added) and added == sorted(added)
    assert json.loads(summary)["vocab_from"] == {
        "path": str(english_run),
        "symbols": len(old),
        "added": len(added),
    }
    assert ok(run("dump", data)).stdout == FRENCH * 3  # ids decode through the new order

    out = tmp_path / "tuned"
    result = train(
        data, out, "train.learning_rate=0.01", "model.dropout=0.1", steps=60, init_from=english_run
    )  # dropout may differ from the source's
    assert (
        f"{len(old)} symbols shared (weights kept), {len(added)} new (fresh weights), "
        "0 dropped" in result.stderr
    )
    # Training proceeds, and the model writes the new characters.
    losses = [json.loads(ln)["loss"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.3, losses
    text = ok(run("sample", out, "-n", 600, "--seed", 3)).stdout
    assert len(set(text) & ACCENTED) >= 2, text
    # A symbol the French text never shows gets no gradient in the embedding, so its row
    # is the source's even after training: the old alphabet survives.
    unseen = [i for i, c in enumerate(old) if c not in FRENCH]
    assert len(unseen) > 3
    src, tuned = weights(english_run), weights(out, "latest")
    np.testing.assert_allclose(tuned["emb"][unseen], src["emb"][unseen], atol=1e-6)
    assert not np.allclose(tuned["emb"][: len(old)], src["emb"], atol=1e-4)  # it did train
    # The old characters still encode: a prime made of them, and English scored as a whole.
    prime = "".join(old[i] for i in unseen if old[i].isalpha())[:4]
    assert ok(run("sample", out, "-n", 20, "--prime", prime, "--seed", 1)).stdout.startswith(prime)
    report = json.loads(
        ok(run("evaluate", out, Path(english_data).parent / "english.txt", "--json")).stdout
    )
    assert report["total"]["oov_chars"] == 0


def test_prepare_vocab_from_min_count_and_settings(english_run, english_data, french, tmp_path):
    ok(run("prepare", french, "-o", tmp_path / "ds", "--vocab-from", english_data, "-q"))
    assert symbols(tmp_path / "ds")[: len(symbols(english_data))] == symbols(english_data)
    data = tmp_path / "rare"
    ok(run("prepare", french, "-o", data, "--vocab-from", english_run, "--min-count", 10, "-q"))
    old, new = symbols(english_run), json.loads((data / "vocab.json").read_text("utf-8"))
    assert new["symbols"][: len(old)] == old and "\ufffd" in new["symbols"][len(old) :]
    assert new["symbols"][new["unk"]] == "\ufffd"
    counts = dict(zip(new["symbols"], new["counts"]))
    assert counts["é"] >= 10 and "û" not in counts and counts["W"] == 0
    assert counts["\ufffd"] == sum(
        FRENCH.count(c) * 3 for c in set(FRENCH) if c not in old and FRENCH.count(c) * 3 < 10
    )
    assert "newlines lf" in error_line(
        run(
            "prepare", french, "-o", tmp_path / "a", "--vocab-from", english_run, "--keep-newlines"
        ),
        only=True,
    )
    assert "jamo off" in error_line(
        run("prepare", french, "-o", tmp_path / "b", "--vocab-from", english_run, "--jamo", "on"),
        only=True,
    )
    assert "no vocab.json" in error_line(
        run("prepare", french, "-o", tmp_path / "c", "--vocab-from", tmp_path), only=True
    )
    assert not any((tmp_path / x).exists() for x in "abc")


def test_prepare_vocab_from_a_jamo_vocabulary(korean_data, tmp_path):
    src = Path(__file__).resolve().parent.parent / "data" / "korean_constitution.txt"
    text = src.read_text(encoding="utf-8").replace("\r\n", "\n")
    ok(run("prepare", src, "-o", tmp_path / "ko", "--vocab-from", korean_data, "-q"))
    old, new = symbols(korean_data), symbols(tmp_path / "ko")
    assert new[: len(old)] == old and len(new) > len(old)  # more jamo and punctuation
    assert all(len(c) == 1 and not "\uac00" <= c <= "\ud7a3" for c in new)  # still jamo
    assert ok(run("dump", tmp_path / "ko")).stdout == text


def test_init_from_refuses_a_different_architecture_or_data_policy(
    english_run, french, french_data, korean_data, tmp_path
):
    line = error_line(
        run(
            "train",
            "--data",
            french_data,
            "--out",
            tmp_path / "a",
            "--init-from",
            english_run,
            *sum((["--set", s] for s in MODEL), []),
            "--set",
            "model.rnn_size=48",
            "--set",
            "model.cell=gru",
        ),
        only=True,
    )
    assert "architecture differs (cell lstm (source) vs gru, rnn_size 32 (source) vs 48)" in line
    line = error_line(
        run(
            "train",
            "--data",
            korean_data,
            "--out",
            tmp_path / "b",
            "--init-from",
            english_run,
            *sum((["--set", s] for s in MODEL), []),
        ),
        only=True,
    )
    assert "jamo off (source) vs on" in line and "architecture" not in line
    keep = tmp_path / "keep"
    ok(run("prepare", french, "-o", keep, "--keep-newlines", "-q"))
    line = error_line(
        run(
            "train",
            "--data",
            keep,
            "--out",
            tmp_path / "c",
            "--init-from",
            english_run,
            *sum((["--set", s] for s in MODEL), []),
        ),
        only=True,
    )
    assert "newlines lf (source) vs keep" in line and "--vocab-from" in line
    assert not any((tmp_path / x / "model.json").exists() for x in "abc")  # refused up front


def test_init_from_and_vocab_from_a_safetensors_file(english_run, french, french_data, tmp_path):
    """From the portable weights file of `charrnn export` (the export issue) instead of a run."""
    bad = error_line(
        run(
            "train",
            "--data",
            french_data,
            "--out",
            tmp_path / "x",
            "--init-from",
            french,
            *sum((["--set", s] for s in MODEL), []),
        ),
        only=True,
    )
    assert "weights file" in bad  # a file that is no weights file: one clear error
    wfile = tmp_path / "en.safetensors"
    ok(run("export", english_run, "-o", wfile))
    data = tmp_path / "fr+en"
    ok(run("prepare", french, "-o", data, "--val-fraction", "0.1", "--vocab-from", wfile, "-q"))
    old = symbols(english_run)
    assert symbols(data)[: len(old)] == old
    out = tmp_path / "init"
    result = train(data, out, "train.learning_rate=1e-12", steps=1, init_from=wfile)
    assert f"initialised weights from {wfile}: {len(old)} symbols shared" in result.stderr
    src, init = weights(english_run), weights(out, "latest")
    for key in ("emb", "bias"):
        np.testing.assert_allclose(init[key][: len(old)], src[key], atol=1e-6)
    np.testing.assert_allclose(init["kernel"][:, : len(old)], src["kernel"], atol=1e-6)
    for a, b in zip(init["rnn"], src["rnn"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_init_from_a_parallel_cell_copies_every_block_tensor(mingru_run, french_data, tmp_path):
    """mingru onto French: the norms, projections, feed-forward and final norm copied as
    they are, the embedding rows and output columns by symbol; a LSTM source is refused."""
    from charrnn.store.loader import load

    old, new = symbols(mingru_run), symbols(french_data)
    o = [old.index(c) for c in new if c in old]
    n = [new.index(c) for c in new if c in old]
    out = tmp_path / "init"
    train(
        french_data,
        out,
        "model.cell=mingru",
        "train.learning_rate=1e-12",
        steps=1,
        init_from=mingru_run,
    )
    src, init = load(mingru_run).tensors, load(out, "latest").tensors
    assert src.keys() == init.keys() and {"final_norm", "layers.1.ff_out.kernel"} <= set(src)
    for name in src.keys() - {"embedding", "logits.kernel", "logits.bias"}:
        np.testing.assert_allclose(init[name], src[name], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(init["embedding"][n], src["embedding"][o], atol=1e-6)
    np.testing.assert_allclose(init["logits.kernel"][:, n], src["logits.kernel"][:, o], atol=1e-6)
    np.testing.assert_allclose(init["logits.bias"][n], src["logits.bias"][o], atol=1e-6)
    line = error_line(
        run(
            "train",
            "--data",
            french_data,
            "--out",
            tmp_path / "x",
            "--init-from",
            mingru_run,
            *[a for s in MODEL for a in ("--set", s)],
        ),
        only=True,
    )
    assert (
        "architecture differs (cell mingru (source) vs lstm, embedding_size 32 (source) "
        "vs 16)" in line
    )
