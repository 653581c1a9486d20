"""Shared fixtures.  Add yours with small edits; keep datasets tiny and session-scoped."""

import pytest

# --- real text, prepared with the real `charrnn prepare` (train-helper) -------------------

# Public-domain English: Lincoln's Gettysburg Address and the opening of the Declaration
# of Independence.
ENGLISH = """\
Four score and seven years ago our fathers brought forth on this continent, a new nation,
conceived in Liberty, and dedicated to the proposition that all men are created equal.

Now we are engaged in a great civil war, testing whether that nation, or any nation so
conceived and so dedicated, can long endure. We are met on a great battle-field of that war.
We have come to dedicate a portion of that field, as a final resting place for those who here
gave their lives that that nation might live. It is altogether fitting and proper that we
should do this.

But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow --
this ground. The brave men, living and dead, who struggled here, have consecrated it, far
above our poor power to add or detract. The world will little note, nor long remember what we
say here, but it can never forget what they did here. It is for us the living, rather, to be
dedicated here to the unfinished work which they who fought here have thus far so nobly
advanced. It is rather for us to be here dedicated to the great task remaining before us --
that from these honored dead we take increased devotion to that cause for which they gave the
last full measure of devotion -- that we here highly resolve that these dead shall not have
died in vain -- that this nation, under God, shall have a new birth of freedom -- and that
government of the people, by the people, for the people, shall not perish from the earth.

When in the Course of human events, it becomes necessary for one people to dissolve the
political bands which have connected them with another, and to assume among the powers of the
earth, the separate and equal station to which the Laws of Nature and of Nature's God entitle
them, a decent respect to the opinions of mankind requires that they should declare the causes
which impel them to the separation.

We hold these truths to be self-evident, that all men are created equal, that they are endowed
by their Creator with certain unalienable Rights, that among these are Life, Liberty and the
pursuit of Happiness. That to secure these rights, Governments are instituted among Men,
deriving their just powers from the consent of the governed, That whenever any Form of
Government becomes destructive of these ends, it is the Right of the People to alter or to
abolish it, and to institute new Government, laying its foundation on such principles and
organizing its powers in such form, as to them shall seem most likely to effect their Safety
and Happiness. Prudence, indeed, will dictate that Governments long established should not be
changed for light and transient causes; and accordingly all experience hath shewn, that
mankind are more disposed to suffer, while evils are sufferable, than to right themselves by
abolishing the forms to which they are accustomed. But when a long train of abuses and
usurpations, pursuing invariably the same Object evinces a design to reduce them under
absolute Despotism, it is their right, it is their duty, to throw off such Government, and to
provide new Guards for their future security.
"""

# The Constitution of the Republic of Korea, Articles 1-4 and 10-11 (statute text, not
# protected by copyright).
KOREAN = """\
제1조 ① 대한민국은 민주공화국이다.
② 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다.
제2조 ① 대한민국의 국민이 되는 요건은 법률로 정한다.
② 국가는 법률이 정하는 바에 의하여 재외국민을 보호할 의무를 진다.
제3조 대한민국의 영토는 한반도와 그 부속도서로 한다.
제4조 대한민국은 통일을 지향하며, 자유민주적 기본질서에 입각한 평화적 통일 정책을 수립하고 이를 추진한다.
제10조 모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다. 국가는 개인이 가지는 불가침의 기본적 인권을 확인하고 이를 보장할 의무를 진다.
제11조 ① 모든 국민은 법 앞에 평등하다. 누구든지 성별·종교 또는 사회적 신분에 의하여 정치적·경제적·사회적·문화적 생활의 모든 영역에 있어서 차별을 받지 아니한다.
② 사회적 특수계급의 제도는 인정되지 아니하며, 어떠한 형태로도 이를 창설할 수 없다.
③ 훈장등의 영전은 이를 받은 자에게만 효력이 있고, 어떠한 특권도 이에 따르지 아니한다.
"""


def _prepare(tmp_path_factory, name, text, *args):
    from charrnn.cli import main

    root = tmp_path_factory.mktemp(name)
    src = root / f"{name}.txt"
    src.write_text(text, encoding="utf-8")
    out = root / name
    assert main(["prepare", str(src), "-o", str(out), "--val-fraction", "0.1", "-q", *args]) == 0
    return out


@pytest.fixture(scope="session")
def english_data(tmp_path_factory):
    """A prepared dataset directory of ~4 KB of English (10% validation)."""
    return _prepare(tmp_path_factory, "english", ENGLISH * 2)


@pytest.fixture(scope="session")
def korean_data(tmp_path_factory):
    """A prepared dataset directory of Korean statute text, split into jamo."""
    return _prepare(tmp_path_factory, "korean", KOREAN * 3, "--jamo", "on")


# --- tiny trained runs, made with the real `charrnn train` (sample-helper) ---------------

def _train(tmp_path_factory, name, data, *sets, steps=150):
    from charrnn.cli import main

    out = tmp_path_factory.mktemp(name) / "run"
    sets = ["model.num_layers=2", "model.rnn_size=32", "model.embedding_size=16",
            "train.batch_size=16", "train.seq_length=32", "train.learning_rate=0.01",
            "train.eval_every=40", "train.save_every=40", "train.log_every=40", *sets]
    args = ["train", "--data", str(data), "--out", str(out), "--max-steps", str(steps)]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    return out


@pytest.fixture(scope="session")
def english_run(tmp_path_factory, english_data):
    """A 2x32 LSTM run trained for 150 steps on english_data."""
    return _train(tmp_path_factory, "english_run", english_data)


@pytest.fixture(scope="session")
def korean_run(tmp_path_factory, korean_data):
    """A 2x32 LSTM jamo run trained for 150 steps on korean_data."""
    return _train(tmp_path_factory, "korean_run", korean_data)


# --- a GRU run (visualize/web helper) --------------------------------------------------

@pytest.fixture(scope="session")
def gru_run(tmp_path_factory, english_data):
    """A 2x32 GRU run trained for 150 steps on english_data."""
    return _train(tmp_path_factory, "gru_run", english_data, "model.cell=gru")
