"""The web export: the page's JavaScript step of every cell against charrnn's own logits
(the TF-restored model), in a real headless Chromium opened from file://.

Teacher-forced rule: along charrnn's greedy path from a fixed prime, every logit of the page
is within 1e-4 + 1e-4 * |logit| of charrnn's, and the argmax is the same wherever charrnn's
top two are more than 1e-3 apart.
"""

import browser
import numpy as np
import pytest
from clihelp import ok, run

STEPS = 200


@pytest.fixture(scope="module")
def driver():
    yield from browser.browser_session()


def _write(run_dir, tmp_path):
    """The page through the real CLI: `charrnn export RUN --format web -o page.html`."""
    from charrnn.cli import main
    from charrnn.store.loader import load

    out = tmp_path / "page.html"
    assert main(["export", str(run_dir), "--format", "web", "-o", str(out)]) == 0
    loaded = load(run_dir)
    page = out.read_text("utf-8")
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    return loaded, out


def _greedy_path(loaded, run_dir, prime_ids):
    """charrnn's greedy continuation (`charrnn sample -t 0`'s sampler) and the TF-restored
    model's teacher-forced logits over prime + path."""
    from charrnn.generate.choice import Options
    from charrnn.generate.sampler import Sampler, start_id
    from charrnn.store.loader import load_run

    sampler = Sampler(
        loaded.weights, 1, Options(temperature=0), start_id=start_id(loaded.vocab), engine="numpy"
    )
    sampler.prime(prime_ids)
    ids = [int(i) for i in prime_ids] + [int(i) for i in sampler.generate(STEPS)[0]]
    model = load_run(run_dir).model
    return ids, model(np.asarray(ids, np.int32)[None], training=False).numpy()[0]


def _check_teacher_forced(driver, run_dir, prime, tmp_path):
    loaded, page = _write(run_dir, tmp_path)
    url = browser.open_page(driver, page)
    browser.assert_offline(driver, url)
    prime_ids = loaded.vocab.encode(prime)
    assert (
        driver.execute_script("return window.charrnn.encode(arguments[0])", prime)
        == prime_ids.tolist()
    )
    ids, expected = _greedy_path(loaded, run_dir, prime_ids)
    got = np.array(driver.execute_script("return window.charrnn.logits(arguments[0])", ids))
    assert got.shape == expected.shape == (len(ids), len(loaded.vocab))
    np.testing.assert_array_less(np.abs(got - expected), 1e-4 + 1e-4 * np.abs(expected))
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3
    assert clear.sum() > len(ids) // 2
    assert (got.argmax(axis=1) == expected.argmax(axis=1))[clear].all()
    browser.assert_offline(driver, url)
    return loaded


def _generate(driver, prime, temperature, topk, length):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for name, value in (
        ("prime", prime),
        ("temperature", temperature),
        ("topk", topk),
        ("length", length),
    ):
        box = driver.find_element(By.ID, name)
        box.clear()
        box.send_keys(str(value))
    driver.find_element(By.ID, "generate").click()
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
    )
    return driver.find_element(By.ID, "out").get_attribute("textContent")


@pytest.mark.parametrize("which", ["english_run", "gru_run", "mingru_run"])
def test_web_page_matches_charrnn_logits(which, request, driver, tmp_path):
    run_dir = request.getfixturevalue(which)
    _check_teacher_forced(driver, run_dir, "We hold these truths", tmp_path)
    greedy = _generate(driver, "We hold", 0, 0, 80)
    assert greedy.startswith("We hold") and len(greedy) == len("We hold") + 80
    assert _generate(driver, "We hold", 1.0, 1, 80) == greedy  # top-k 1 is greedy
    sampled = _generate(driver, "", 1.5, 0, 300)
    assert len(sampled) == 300 and sampled != greedy[:300]
    browser.assert_offline(driver, driver.current_url)


@pytest.mark.parametrize("which", ["korean_run", "minlstm_run"])
def test_web_page_jamo_model_prints_syllables(which, request, driver, tmp_path):
    korean_run = request.getfixturevalue(which)
    _check_teacher_forced(driver, korean_run, "대한민국의 주권은", tmp_path)
    text = _generate(driver, "대한민국", 0, 0, 60)
    assert text.startswith("대한민국")
    syllables = sum("\uac00" <= c <= "\ud7a3" for c in text[4:])
    assert syllables >= 20
    # recomposed as `charrnn sample` does, loose jamo of a half-trained model included
    cli = ok(run("sample", korean_run, "--prime", "대한민국", "-n", 60, "-t", 0)).stdout
    assert text == cli.removesuffix("\n")
    browser.assert_offline(driver, driver.current_url)


def _random_parallel_loaded(symbols, cell, layers, units, seed):
    """A random model of a parallel cell under charrnn.nn.tensors' names: matrices scaled
    by 1/sqrt(fan-in), biases small, norm scales near 1."""
    from charrnn.nn.tensors import expected_shapes
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

    rng = np.random.default_rng(seed)
    args = {
        "vocab_size": len(symbols),
        "cell": cell,
        "num_layers": layers,
        "rnn_size": units,
        "embedding_size": units,
    }
    tensors = {}
    for name, shape in expected_shapes(args).items():
        if name.endswith("norm"):
            tensors[name] = 1 + rng.normal(scale=0.2, size=shape)
        else:
            tensors[name] = rng.normal(
                scale=shape[0] ** -0.5 if len(shape) == 2 else 0.1, size=shape
            )
    loaded = LoadedModel(
        "random",
        args,
        Vocab(sorted(symbols)),
        {},
        checkpoint="random",
        tensors={k: v.astype(np.float32) for k, v in tensors.items()},
    )
    assert loaded.weights.final_norm is not None
    return loaded


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "mingru", "minlstm"])
def test_web_page_every_cell_matches_the_numpy_step(cell, driver, tmp_path):
    """Wider random models (3x96, every cell type, incl. the plain RNN no test run trains)
    against charrnn.generate's NumPy step, with the same tolerance."""
    from test_visualize import _random_loaded

    from charrnn.export.webpage import write_page
    from charrnn.nn.cells import get
    from charrnn.nn.step import NumpyOps, cell_step

    symbols = set("abcdefgh ijklmnop\n.,")
    if get(cell).parallel:
        loaded = _random_parallel_loaded(symbols, cell, layers=3, units=96, seed=3)
    else:
        # weights small enough that the net is not chaotic (else any rounding difference
        # grows without bound and no two float32 implementations agree after a few dozen steps)
        loaded = _random_loaded(
            symbols, cell=cell, layers=3, units=96, seed=3, scale=0.08 if cell == "rnn" else 0.3
        )
    page = tmp_path / f"{cell}.html"
    write_page(loaded, page)
    url = browser.open_page(driver, page)
    ids = np.random.default_rng(0).integers(0, len(loaded.vocab), size=120).tolist()
    got = np.array(driver.execute_script("return window.charrnn.logits(arguments[0])", ids))
    w = loaded.weights
    states = [np.zeros((1, w.units), np.float32) for _ in range(len(w.layers) * w.states_per_layer)]
    expected = []
    for t in ids:
        logits, states = cell_step(NumpyOps, w, np.array([t], np.int32), states)
        expected.append(logits[0])
    expected = np.array(expected, np.float64)
    assert np.abs(expected - expected.mean(axis=0)).mean() > 1e-2  # the input matters
    np.testing.assert_array_less(np.abs(got - expected), 1e-4 + 1e-4 * np.abs(expected))
    browser.assert_offline(driver, url)
