"""`charrnn visualize`: the numbers (against `charrnn evaluate` and the Keras model), the
unit ranking, and the page itself in a real headless Chromium opened from file://."""

import json
import math

import browser
import numpy as np
import pytest
from clihelp import ok, run
from conftest import ENGLISH, KOREAN

EVIL = 'He said "</script><img src=x onerror="window.pwned=1"> \u2028 & <b>bold</b>" (ok) {x}\n'


# --- the numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["english_run", "korean_run", "mingru_run", "minlstm_run"])
def test_surprise_sums_to_evaluate_streams_1(which, request, tmp_path):
    """visualize (NumPy, charrnn.nn.step's cell) against evaluate (the Keras model)."""
    run_dir = request.getfixturevalue(which)
    # + OOV.  1,284 English or 1,026 jamo predictions: `evaluate --streams 1` reads full
    # 256-symbol windows, then one of 4 or 2 (an XLA compilation per width, ~0.5 s each)
    korean = which in ("korean_run", "minlstm_run")
    text = (KOREAN[:500] if korean else ENGLISH[:1282]) + "\u00e9t\u00e9 \u263a\n"
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    data = json.loads(ok(run("visualize", run_dir, path, "--json", "--max-chars", 0)).stdout)
    ev = json.loads(ok(run("evaluate", run_dir, path, "--streams", 1, "--json")).stdout)["total"]
    nats = sum(b for b in data["char_bits"] if b is not None) * math.log(2)
    expected = ev["nats"]  # OOV charge included
    assert nats == pytest.approx(expected, rel=1e-5)
    assert data["summary"]["nats"] == pytest.approx(expected, rel=1e-5)
    assert (
        data["summary"]["oov_bits"] == pytest.approx(ev["oov_bits"], rel=1e-5)
        and ev["oov_bits"] > 0
    )
    assert data["summary"]["bits_per_char"] == pytest.approx(ev["bits_per_char"], rel=1e-5)
    assert data["summary"]["predictions"] == ev["predictions"]
    assert "\u263a" in data["oov"]
    assert len(data["text"]) == len(text) == len(data["char_bits"])


def test_planted_quote_unit_ranks_first_above_the_null():
    from charrnn.analysis.features import char_features, rank_units

    rng = np.random.default_rng(1)
    words = ["the", "king", "said", "and", "so", "it", "was", "night", "over", "hills"]
    parts = []
    for _ in range(400):
        w = " ".join(rng.choice(words, size=rng.integers(1, 6)))
        parts.append(f'"{w}"' if rng.random() < 0.3 else w)
    text = " ".join(parts) + "\n"
    f = char_features(text)
    assert f["in_quotes"].sum() > 100
    # smooth noise (autocorrelated, like real units) in 40 units; unit 23 tracks quotes
    noise = np.cumsum(rng.normal(size=(len(text), 40)), axis=0) * 0.05
    acts = np.tanh(noise)
    acts[:, 23] = 0.6 * f["in_quotes"] + rng.normal(scale=0.5, size=len(text))
    r = rank_units(acts, f)
    quotes = r["in_quotes"]
    assert quotes["top"][0][0] == 23
    assert abs(quotes["top"][0][1]) > quotes["null_max"]
    assert all(abs(c) < quotes["null_max"] for u, c in quotes["top"][1:])  # the rest is chance
    assert "indentation" not in r  # constant features are left out


def test_features_of_code():
    from charrnn.analysis.features import char_features

    text = 'int f(a) {\n    if (b[1]) /* c "q" */ x = "s";  // end\n}\n'
    f = char_features(text)
    at = lambda s, k=0: text.index(s, k)  # noqa: E731
    assert f["bracket_depth"][at("b[")] == 2 and f["bracket_depth"][at("1")] == 3
    assert f["indentation"][at("if")] == 4 and f["line_position"][at("if")] == 5
    assert f["in_comment"][at("c ")] == 1 and f["in_quotes"][at("q")] == 0  # quotes in comments
    assert f["in_quotes"][at('s"')] == 1 and f["in_comment"][at("end")] == 1
    assert f["in_comment"][at("x =")] == 0 and f["in_comment"][at("}")] == 0


def _random_loaded(symbols, cell="lstm", layers=2, units=128, jamo=False, seed=0, scale=0.3):
    from charrnn.nn.tensors import engine_weights
    from charrnn.store.loaded import LoadedModel
    from charrnn.text import Vocab

    rng = np.random.default_rng(seed)
    v, e = len(symbols), 16
    g = {"lstm": 4, "gru": 3, "rnn": 1}[cell] * units
    bias = (2, g) if cell == "gru" else (g,)
    f = lambda *s: rng.normal(scale=scale, size=s).astype(np.float32)  # noqa: E731
    emb = f(v, e)
    kernels = [f(e if i == 0 else units, g) for i in range(layers)]
    recurrent = [f(units, g) for _ in range(layers)]
    biases = [f(*bias) for _ in range(layers)]
    tensors = {"embedding": emb, "logits.kernel": f(units, v), "logits.bias": f(v)}
    for i in range(layers):
        tensors[f"layers.{i}.kernel"] = kernels[i]
        tensors[f"layers.{i}.recurrent_kernel"] = recurrent[i]
        tensors[f"layers.{i}.bias"] = biases[i]
    w = engine_weights(cell, tensors)
    loaded = LoadedModel(
        "random", {"cell": cell}, Vocab(sorted(symbols), jamo=jamo), {}, checkpoint="random"
    )
    loaded.weights = w
    return loaded


def test_page_of_a_2x128_model_and_5000_chars_stays_under_5_mb():
    from charrnn.analysis.visualize import analyse, visualize_page

    text = (ENGLISH * 2)[:5000]
    data = analyse(_random_loaded(set(text)), text)
    assert len(data["activations"]["stored"]) == 2 * 2 * 128  # every unit fits
    assert len(visualize_page(data).encode("utf-8")) < 5_000_000


def test_bad_input_is_one_error_line(english_run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Four score", encoding="utf-8")
    r = run("visualize", english_run, path, "--units", "99999", "-o", tmp_path / "p.html")
    assert r.exit_code != 0 and "Error: unit 99999 does not exist" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "p.html").exists()
    path.write_text("\u263a", encoding="utf-8")
    r = run("visualize", english_run, path)
    assert (
        r.exit_code != 0
        and "Error: the text has 1 character(s) of which the model can read 0" in r.output
    )


# --- the page in a browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver():
    yield from browser.browser_session()


def _page(run_dir, text, tmp_path, name, *args):
    src, out = tmp_path / f"{name}.txt", tmp_path / f"{name}.html"
    src.write_text(text, encoding="utf-8")
    r = ok(run("visualize", run_dir, src, "-o", out, *args))
    assert "Wrote" in r.stderr and "KB" in r.stderr  # the size is reported
    return out


def _backgrounds(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#text span'), s => "
        "getComputedStyle(s).background)"
    )


_models = {}  # run -> Keras model's forward pass, restored and traced once per test session


def _model_probs(run_dir, ids):
    """Softmax of the Keras model's logits for every position (from the TF checkpoint)."""
    from charrnn.backend import tensorflow
    from charrnn.store.loader import load_run

    if run_dir not in _models:
        model = load_run(run_dir).model
        # traced: eagerly, the recurrence over thousands of symbols is a Python loop
        _models[run_dir] = tensorflow().function(lambda x: model(x, training=False))
    forward = _models[run_dir]
    logits = forward(np.asarray(ids, np.int32)[None]).numpy()[0].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _check_hover(driver, run_dir, text, char_index):
    """Hover a character: the 5 alternatives of each of its symbols match the model."""
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By

    from charrnn.store.loader import load

    vocab = load(run_dir).vocab
    ids = vocab.encode(text)  # (texts without characters outside the vocabulary)
    per_char = np.array([len(vocab.encode(c)) for c in text])
    probs = _model_probs(run_dir, ids)
    span = driver.find_elements(By.CSS_SELECTOR, "#text span")[char_index]
    ActionChains(driver).move_to_element(span).perform()
    tables = driver.find_elements(By.CSS_SELECTOR, "#detail table")
    first = int(per_char[:char_index].sum())
    assert len(tables) == per_char[char_index]
    for t, table in enumerate(tables, start=first):
        rows = table.find_elements(By.CSS_SELECTOR, "tr.cand")
        assert len(rows) == 5
        shown = [float(r.find_element(By.CSS_SELECTOR, "td.prob").text.rstrip("%")) for r in rows]
        expected = np.sort(probs[t - 1])[::-1][:5] * 100
        np.testing.assert_allclose(shown, expected, atol=0.011)
        if ids[t] in np.argsort(-probs[t - 1])[:5]:
            assert len(table.find_elements(By.CSS_SELECTOR, "tr.actual")) == 1
    t = first + len(tables) - 1  # the last symbol's line: its probability's rank
    line = driver.find_elements(By.CSS_SELECTOR, "#detail .actual-line")[-1].text
    assert f"rank {1 + int((probs[t - 1] > probs[t - 1][ids[t]]).sum())}," in line


def _check_unit_changes_colours(driver, feature=None):
    from selenium.webdriver.common.by import By

    before = _backgrounds(driver)
    sel = "#features .feature" + (f"[data-feature={feature}]" if feature else "") + " button.unit"
    button = driver.find_elements(By.CSS_SELECTOR, sel)[0]
    button.click()
    after = _backgrounds(driver)
    changed = sum(a != b for a, b in zip(before, after))
    assert changed > len(after) // 2
    assert "unit" in driver.find_element(By.ID, "mode").text
    assert "on" in button.get_attribute("class")
    return after


@pytest.mark.parametrize("which", ["english_run", "gru_run"])
def test_page_surprise_and_cells(which, request, driver, tmp_path):
    from selenium.webdriver.common.by import By

    run_dir = request.getfixturevalue(which)
    text = ENGLISH[:2000]
    url = browser.open_page(driver, _page(run_dir, text, tmp_path, which))
    browser.assert_offline(driver, url)
    assert driver.find_element(By.ID, "text").get_attribute("textContent") == text
    _check_hover(driver, run_dir, text, 123)
    _check_unit_changes_colours(driver)
    # any unit by number
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "group")).select_by_index(1)
    box = driver.find_element(By.ID, "unitno")
    box.clear()
    box.send_keys("7")
    driver.find_element(By.ID, "show").click()
    assert driver.find_element(By.ID, "mode").text.endswith("(unit 39)")  # group 1 starts at 32
    # keyboard: focus the text, move with the arrow keys
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.ID, "text").send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert "character 3 " in driver.find_element(By.ID, "detail").text.lower()
    browser.assert_offline(driver, url)


def test_korean_page_shows_syllables(korean_run, driver, tmp_path):
    from selenium.webdriver.common.by import By

    text = KOREAN[:600]
    url = browser.open_page(driver, _page(korean_run, text, tmp_path, "korean"))
    browser.assert_offline(driver, url)
    spans = driver.find_elements(By.CSS_SELECTOR, "#text span")
    assert len(spans) == len(text)  # one per syllable, not per jamo
    assert driver.find_element(By.ID, "text").get_attribute("textContent") == text
    i = text.index("대한민국")
    assert spans[i + 1].text == "한"
    _check_hover(driver, korean_run, text, i + 1)  # 3 jamo: 3 tables of next-jamo candidates
    detail = driver.find_element(By.ID, "detail").text
    assert "composed with the syllable so far" in detail
    cands = [
        e.text
        for e in driver.find_elements(By.CSS_SELECTOR, "#detail .jamo")[2].find_elements(
            By.CSS_SELECTOR, "td.sym"
        )
    ]
    assert any("\uac00" <= c[0] <= "\ud7a3" for c in cands if c)  # 하 + T candidates, composed
    after = _check_unit_changes_colours(driver, "jamo_position")
    assert "linear-gradient" in after[i + 1]  # a syllable shows one band per jamo
    browser.assert_offline(driver, url)


def test_hostile_text_renders_as_text_and_runs_nothing(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from charrnn.analysis.visualize import analyse, visualize_page

    text = EVIL * 3
    data = analyse(_random_loaded(set(text) | {"\u2029"}, units=16), text)  # hostile vocabulary too
    page = tmp_path / "evil.html"
    page.write_text(
        visualize_page(data, "x</title><script>window.pwned=2</script>"), encoding="utf-8"
    )
    url = browser.open_page(driver, page)
    browser.assert_offline(driver, url)
    assert driver.find_element(By.ID, "text").get_attribute("textContent") == text
    assert driver.find_elements(By.CSS_SELECTOR, "#text img, #text b, #detail img") == []
    assert driver.execute_script("return window.pwned") is None
    from selenium.webdriver import ActionChains

    span = driver.find_elements(By.CSS_SELECTOR, "#text span")[text.index("<img") + 1]
    ActionChains(driver).move_to_element(span).perform()  # vocabulary symbols in the tables
    assert driver.find_elements(By.CSS_SELECTOR, "#detail img") == []
    assert driver.execute_script("return window.pwned") is None
    assert driver.title.startswith("x</title>")
    browser.assert_offline(driver, url)


def test_large_models_keep_top_units_and_those_asked_for(english_run, tmp_path, monkeypatch):
    from charrnn.analysis import visualize

    monkeypatch.setattr(visualize, "ACTIVATION_BUDGET", 1000)  # as if the model were large
    path = tmp_path / "t.txt"
    path.write_text(ENGLISH[:800], encoding="utf-8")
    data = json.loads(ok(run("visualize", english_run, path, "--json", "--units", "5,77")).stdout)
    stored = data["activations"]["stored"]
    top = {t["unit"] for f in data["features"].values() for t in f["top"]}
    assert set(stored) == top | {5, 77} and len(stored) < 128
    q = np.frombuffer(__import__("base64").b64decode(data["activations"]["data"]), np.uint8)
    assert (
        q.size
        == len(stored) * data["activations"]["steps"]
        == len(stored) * data["summary"]["symbols"]
    )
    everything = json.loads(ok(run("visualize", english_run, path, "--json", "--all-units")).stdout)
    assert everything["activations"]["stored"] == list(range(128))


def test_script_json_is_inert_inside_a_script_element():
    from charrnn.analysis.visualize import script_json

    data = {"t": "</script><!-- <script> & \u2028\u2029 \ud800 '\"", "k<>": [1.5, None]}
    s = script_json(data)
    assert not any(c in s for c in "<>&\u2028\u2029\ud800")
    assert s.encode("utf-8")  # no lone surrogate left to fail the page's encoding
    assert json.loads(s) == data


def test_json_to_a_file_and_the_page_to_another(english_run, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(ENGLISH[:300], encoding="utf-8")
    r = ok(run("visualize", english_run, path, "--json", "-o", tmp_path / "d.json"))
    assert r.stdout == "" and "Wrote" in r.stderr
    data = json.loads((tmp_path / "d.json").read_text("utf-8"))
    assert data["format"] == "charrnn-visualize/1" and data["text"] == ENGLISH[:300]
    ok(run("visualize", english_run, path, "-o", tmp_path / "p.html"))
    page = (tmp_path / "p.html").read_text("utf-8")
    assert (
        page.startswith("<!doctype html>") and '<script type="application/json" id="data">' in page
    )
    assert "http://" not in page and "https://" not in page  # nothing to fetch
