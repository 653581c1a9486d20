"""charrnn.text: the jamo scheme, Vocab, the stream decoder and the decoding pipeline."""

import codecs
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from charrnn.errors import CharrnnError
from charrnn.text import Vocab, decompose, read_text, recompose
from charrnn.text import decode as T

ISSUE_EXAMPLES = [
    "가ㅋㅋ",
    "웃겨ㅋㅋ",
    "가ㄱ",
    "닭",
    "값",
    "앉",
    "ㅋㅋㅋ",
    "ㅠㅠ",
    "😀👍🏽 ok",
    "\ue000",
    "\ue000\ue000\u1100\u1161",
    "\u1100\u1161\u11a8",
    "각\u11a8",
    "가\u1161",
    "ᄀ",
    "\ue000가",
    "가\ue000",
    "한국어 text, 中文, Ελληνικά\r\n",
]

# Random mixes of everything the scheme has to keep apart.
_pieces = st.one_of(
    st.integers(0xAC00, 0xD7A3).map(chr),  # precomposed syllables
    st.integers(0x3131, 0x318E).map(chr),  # compatibility jamo people type
    st.integers(0x1100, 0x11FF).map(chr),  # conjoining jamo (modern and old) in the input
    st.just("\ue000"),  # the escape mark itself
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\n\t\r"),
    st.integers(0x1F300, 0x1FAFF).map(chr),  # emoji
    st.characters(),  # any other Unicode, surrogates included
)
mixed_text = st.lists(_pieces, max_size=60).map("".join)


def vocab_for(text, jamo=True):
    symbols = decompose(text) if jamo else text
    return Vocab(sorted(set(symbols), key=ord), jamo=jamo)


@given(mixed_text)
@example("")
@settings(max_examples=300, deadline=None)
def test_decompose_recompose_exact(text):
    d = decompose(text)
    assert recompose(d) == text
    # syllables never survive decomposition, so the vocabulary stays small
    assert not any(0xAC00 <= ord(c) <= 0xD7A3 for c in d)


@pytest.mark.parametrize("text", ISSUE_EXAMPLES)
def test_issue_examples_exact(text):
    assert recompose(decompose(text)) == text
    v = vocab_for(text)
    assert v.decode(v.encode(text)) == text


def test_decompose_uses_conjoining_jamo_not_compatibility():
    # '가ㅋㅋ' must not become '갘ㅋ': the typed ㅋ (U+314B) stays distinct from a final
    assert decompose("가ㅋㅋ") == "\u1100\u1161\u314b\u314b"
    assert decompose("닭") == "\u1103\u1161\u11b0"
    assert decompose("\u1100") == "\ue000\u1100"  # a literal conjoining jamo is escaped
    assert recompose("\u1100\u1161\u11a8\u11a8") == "각\u11a8"  # a stray jamo a model invents
    assert recompose("x\ue000") == "x\ue000"  # a dangling escape is printed as itself


@given(mixed_text, st.booleans())
@settings(max_examples=200, deadline=None)
def test_vocab_encode_decode_exact(text, jamo):
    v = vocab_for(text, jamo)
    ids = v.encode(text)
    assert ids.dtype == np.int32
    assert v.decode(ids) == text


@given(mixed_text, st.lists(st.integers(0, 200), max_size=8))
@example("가ㅋㅋ", [1, 2])
@example("닭\ue000\u1161", [1, 2, 3, 4])
@settings(max_examples=300, deadline=None)
def test_stream_decoder_any_pieces(text, cuts):
    v = vocab_for(text)
    ids = v.encode(text)
    cuts = sorted({min(c, len(ids)) for c in cuts})
    dec = v.stream_decoder()
    out = ""
    for a, b in zip([0] + cuts, cuts + [len(ids)]):
        out += dec.feed(ids[a:b])
        assert text.startswith(out)  # never a half syllable that a later jamo would change
    assert out + dec.flush() == text


def test_constitution_vocab_small_with_jamo():
    text, info = read_text(
        str(Path(__file__).resolve().parent.parent / "data" / "korean_constitution.txt")
    )
    with_jamo, without = vocab_for(text, True), vocab_for(text, False)
    assert len(with_jamo) < 150 < 300 < len(without)
    assert with_jamo.decode(with_jamo.encode(text)) == text


def test_vocab_json_round_trip(tmp_path):
    v = Vocab(list("\n ab가"), [3, 2, 5, 1, 1], unk_id=None, jamo=False)
    v.save(tmp_path / "vocab.json")
    w = Vocab.load(tmp_path / "vocab.json")
    assert (w.symbols, w.counts, w.unk_id, w.jamo) == (v.symbols, v.counts, None, False)
    assert w.to_json()["format"] == "charrnn-vocab/1"
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(CharrnnError, match="not a charrnn vocabulary"):
        Vocab.load(tmp_path / "bad.json")
    with pytest.raises(CharrnnError, match="charrnn prepare"):
        Vocab.load(tmp_path / "missing.json")


def test_vocab_unknown_characters():
    v = Vocab(sorted(set(decompose("abc 가나\ufffd")), key=ord), jamo=True, unk_id=None)
    assert v.unknown_chars("abQ각☃Q") == ["Q", "각", "☃"]  # 각 needs a final ᆨ the vocab lacks
    with pytest.raises(CharrnnError) as e:
        v.encode("abQ")
    assert "'Q'" in str(e.value) and "closest" in str(e.value)
    assert v.decode(v.encode("aQb각", unknown="skip")) == "ab"
    with pytest.raises(CharrnnError, match="no unknown symbol"):
        v.encode("Q", unknown="unk")
    u = Vocab(v.symbols, unk_id=v.symbols.index("\ufffd"), jamo=True)
    assert u.decode(u.encode("aQ가", unknown="unk")) == "a\ufffd가"
    with pytest.raises(CharrnnError, match="outside this vocabulary"):
        v.decode([len(v)])


def test_vocab_in_any_id_order_rejects_repeated_symbols():
    # prepare --vocab-from appends new symbols after a run's: ids need not follow code points
    v = Vocab(list("dbé\nac"), unk_id=None)
    assert v.encode("abcé\n").tolist() == [4, 1, 5, 2, 3]
    assert v.decode(v.encode("cab\néd")) == "cab\néd"
    assert "'d', 'é'" in str(pytest.raises(CharrnnError, v.encode, "e").value)  # neighbours
    assert v.decode(v.encode("aXb", unknown="skip")) == "ab"
    with pytest.raises(CharrnnError, match="not unique"):
        Vocab(list("aba"))


# --- decoding pipeline (read_text is what prepare runs per file) ---


def test_crlf_and_cr_normalised_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "CHUNK_BYTES", 3)  # every CR lands on a chunk edge somewhere
    raw = "ab\r\ncd\r\ref\rg\r\n\r"
    p = tmp_path / "nl.txt"
    p.write_bytes(raw.encode())
    assert read_text(str(p), encoding="utf-8")[0] == "ab\ncd\n\nef\ng\n\n"
    assert read_text(str(p), encoding="utf-8", newlines="keep")[0] == raw


def test_decode_error_names_exact_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "CHUNK_BYTES", 5)
    for enc in ("utf-8", "cp949", "utf-16-le"):
        good = "가나다라마바".encode(enc)
        bad = b"\xff\xff" if enc != "utf-16-le" else b"\x00\xdc"  # invalid / lone low surrogate
        p = tmp_path / f"bad-{enc}.txt"
        p.write_bytes(good + bad + "사아".encode(enc))
        with pytest.raises(CharrnnError) as e:
            read_text(str(p), encoding=enc)
        msg = str(e.value)
        assert f"byte offset {len(good)} " in msg and str(p) in msg and "--errors replace" in msg
        text, _ = read_text(str(p), encoding=enc, errors="replace")
        assert text.startswith("가나다라마바\ufffd") and text.endswith("사아")


def test_truncated_multibyte_at_end_is_reported(tmp_path):
    p = tmp_path / "trunc.txt"
    p.write_bytes("한글".encode() + "가".encode()[:2])
    with pytest.raises(CharrnnError, match="byte offset 6 "):
        read_text(str(p), encoding="utf-8")


def test_info_and_detection(tmp_path):
    text = "대한민국은 민주공화국이다.\n" * 200
    p = tmp_path / "ko.txt"
    p.write_bytes(codecs.BOM_UTF8 + text.encode())
    got, info = read_text(str(p))
    assert got == text
    assert info["encoding"] == "utf-8-sig" and info["confidence"] == 1.0
    assert info["bytes"] == p.stat().st_size and len(info["sha256"]) == 64
    assert T.detect_encoding(b"plain ascii\n")[0] == "utf-8"  # ascii means utf-8
    with pytest.raises(CharrnnError, match="binary"):
        T.detect_encoding(b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 4)


def test_every_hangul_syllable_splits_and_recombines_as_hangul_jamo_says():
    """hangul-jamo, an independent implementation, as the reference for all 11,172
    syllables: it names (lead, vowel, final) in compatibility jamo; ours are the
    conjoining jamo at the same indices, and both put the syllable back together."""
    import hangul_jamo as hj

    from charrnn.text import decompose, recompose

    syllables = [chr(c) for c in range(0xAC00, 0xD7A4)]
    assert len(syllables) == hj.NUMBER_OF_SYLLABLES == 11172
    for s in syllables:
        lead, vowel, final = hj.decompose_syllable(s)
        want = (
            chr(0x1100 + hj.LEADING_CONSONANTS.index(lead))
            + chr(0x1161 + hj.VOWELS.index(vowel))
            + (chr(0x11A7 + hj.TRAILING_CONSONANTS.index(final)) if final else "")
        )
        assert decompose(s) == want, s
        assert recompose(want) == s == hj.compose_jamo_characters(lead, vowel, final)
    assert recompose(decompose("".join(syllables))) == "".join(syllables)
