"""Text in: encoding detection, chunked decoding, newline normalisation.

Everything here works on chunks of a few MB, so a big corpus is never held in memory.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import BinaryIO

from charrnn.atomic import StrPath
from charrnn.errors import CharrnnError

CHUNK_BYTES = 1 << 22  # read 4 MiB at a time: big enough for NumPy, small enough for RAM
SAMPLE_BYTES = 1 << 16  # what chardet looks at
LOW_CONFIDENCE = 0.5  # below this a detected encoding gets a visible warning
NEWLINES = ("lf", "keep")
ERRORS = ("strict", "replace")

# chardet names a subset when the leading sample fits it; decode with the superset so
# later bytes (a CP949-only syllable like '똠', any UTF-8 after an ASCII start) still work.
_SUPERSETS = {"ascii": "utf-8", "euc_kr": "cp949", "gb2312": "gb18030"}
_WIDE = ("utf-16", "utf-32")  # codecs in which NUL bytes are normal

# The plain-ASCII fast path (detect_encoding): chardet costs about 0.25 ms a file whatever its
# size, most of the time of `prepare` on a tree of small source files.  It calls a sample
# "ascii" with confidence 1.0 when every byte is tab, LF, CR or printable ASCII, unless an
# earlier stage of its pipeline claims the bytes first; the fast path answers only when none
# can, and asks chardet otherwise (tests/test_prepare.py checks both answers agree).
_ASCII_TEXT = bytes([0x09, 0x0A, 0x0D, *range(0x20, 0x7F)])
# A UTF-7 shift: '+' and at least 3 base64 characters (one UTF-16 unit); HZ's is '~{'.
_UTF7_SHIFT = re.compile(rb"\+[A-Za-z0-9+/]{3}")
# A charset declaration: an XML declaration or HTML meta tag near the start, or a PEP 263
# coding cookie in the first two lines.
_MARKUP = re.compile(rb"<\?xml|<meta", re.IGNORECASE)
DECLARATION_BYTES = 4096
# Signatures of binary formats made of text bytes only (the others fail the ASCII test): a
# text starting so is called binary.
_SIGNATURE = re.compile(
    rb"GIF8|8BPS|qoif|BM|ID3|MThd|OggS|fLaC|BZh|%PDF|ARROW1|PAR1|dex\n|MZ|"
    rb"wOF|OTTO|RIFF|FORM"
)


# --- encoding detection and decoding ------------------------------------------


def _canonical(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise CharrnnError(
            f"unknown encoding {name!r}; pass a Python codec name such as "
            "utf-8, cp949, euc-kr, utf-16 or latin-1 to --encoding"
        ) from None


def _bom(sample: bytes) -> str | None:
    for bom, enc in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if sample.startswith(bom):
            return enc
    return None


def plain_ascii(sample: bytes) -> bool:
    """True when chardet would call ``sample`` ASCII with confidence 1.0, found without it:
    only tab, LF, CR and printable ASCII, and nothing an earlier chardet stage claims (an
    escape encoding's shift, a charset declaration, a binary signature at the start)."""
    if not sample.isascii() or sample.translate(None, _ASCII_TEXT):
        return False
    if b"~{" in sample or _UTF7_SHIFT.search(sample):
        return False
    if _MARKUP.search(sample, 0, DECLARATION_BYTES) or b"coding" in b"\n".join(
        sample[:DECLARATION_BYTES].split(b"\n", 2)[:2]
    ):
        return False
    return not (_SIGNATURE.match(sample) or sample[4:8] == b"ftyp" or sample[257:262] == b"ustar")


def _chardet_sample(sample: bytes) -> bytes:
    sample = sample[:SAMPLE_BYTES]
    cut = sample.rfind(b"\n")
    if len(sample) == SAMPLE_BYTES and cut > SAMPLE_BYTES // 2 and b"\0" not in sample:
        sample = sample[: cut + 1]  # do not show chardet half a character (UTF-16 excepted)
    return sample


def detect_encoding(sample: bytes, name: str = "input", fast: bool = True) -> tuple[str, float]:
    """``(codec, confidence)`` for a file starting with ``sample``; BOMs win over chardet.
    ``fast``: answer plain ASCII (``plain_ascii``) without chardet, as chardet would.

    Raises CharrnnError for a binary file.
    """
    bom = _bom(sample)
    if bom:
        return bom, 1.0
    sample = _chardet_sample(sample)
    if fast and plain_ascii(sample):
        return _SUPERSETS["ascii"], 1.0
    import chardet  # imported here: it is only needed by prepare and evaluate

    guess = chardet.detect(sample)
    enc, conf = guess.get("encoding"), float(guess.get("confidence") or 0.0)
    if not enc:
        kind = guess.get("mime_type") or "not text"
        raise CharrnnError(
            f"{name} looks like a binary file ({kind}), not text; pass only text "
            "files (use --include to pick files from a directory)"
        )
    enc = _canonical(enc)
    enc = _SUPERSETS.get(enc, enc)
    return enc, conf


def _is_wide(enc: str) -> bool:
    return enc.startswith(_WIDE)


def _normalise_newlines(text: str, carry: str, final: bool) -> tuple[str, str]:
    """CRLF and lone CR -> LF.  A CR at the end of a chunk waits for the next one."""
    text = carry + text
    carry = ""
    if text.endswith("\r") and not final:
        text, carry = text[:-1], "\r"
    return text.replace("\r\n", "\n").replace("\r", "\n"), carry


def normalise_newlines(text: str, newlines: str = "lf") -> str:
    """A text already in memory under the newline policy ``newlines`` as prepare applies
    it to a file: "lf" turns CRLF and lone CR into LF, "keep" leaves them."""
    return text if newlines == "keep" else _normalise_newlines(text, "", True)[0]


def _open(path: StrPath) -> tuple[BinaryIO, bool]:
    if path == "-":
        return sys.stdin.buffer, False
    try:
        return open(path, "rb"), True
    except FileNotFoundError:
        raise CharrnnError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise CharrnnError(f"{path} is a directory; pass a file") from None
    except OSError as e:
        raise CharrnnError(f"cannot read {path}: {e.strerror}; check its permissions") from None


def iter_text(
    path: StrPath,
    encoding: str | None = None,
    errors: str = "strict",
    newlines: str = "lf",
    info: dict | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """Yield the decoded text of one input (a path or ``-``) in chunks.

    ``info`` (a dict, if given) receives path, bytes, sha256, encoding, confidence
    and encoding_source; bytes and sha256 are final once the generator is done.
    ``on_bytes(n)`` is called as bytes are read (for a progress bar).
    """
    if errors not in ERRORS:
        raise CharrnnError(f"errors must be one of {', '.join(ERRORS)}")
    if newlines not in NEWLINES:
        raise CharrnnError(f"newlines must be one of {', '.join(NEWLINES)}")
    name = "standard input" if path == "-" else path
    info = {} if info is None else info
    f, close = _open(path)
    try:
        # A small file's size, not 4 MiB: allocating that much for each read costs more than
        # reading a small source file.  One byte more, so a file that grew is still read on.
        size = os.fstat(f.fileno()).st_size if close else 0

        def read(pos: int) -> bytes:
            return f.read(min(CHUNK_BYTES, max(size - pos, 0) + 1) if size else CHUNK_BYTES)

        first = read(0)
        if not first:
            raise CharrnnError(f"{name} is empty; pass a file with some text in it")
        if encoding:
            enc, conf, source = _canonical(encoding), None, "override"
        else:
            enc, conf = detect_encoding(first, name)
            source = "detected"
            if conf < LOW_CONFIDENCE and on_warning:
                on_warning(
                    f"{name}: encoding guessed as {enc} with low confidence {conf:.2f}; "
                    "if the text looks wrong, pass the right --encoding"
                )
        info.update(
            path=path, bytes=0, sha256=None, encoding=enc, confidence=conf, encoding_source=source
        )
        decoder = codecs.getincrementaldecoder(enc)(errors)
        sha = hashlib.sha256()
        pos, carry, chunk = 0, "", first
        while True:
            final = not chunk
            if not final and not _is_wide(enc):
                nul = chunk.find(b"\0")
                if nul >= 0:
                    raise CharrnnError(
                        f"{name} looks like a binary file (NUL byte at offset "
                        f"{pos + nul}), not {enc} text; pass only text files "
                        "(use --include to pick files from a directory)"
                    )
            sha.update(chunk)
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError as e:
                # e.object is the decoder's pending bytes followed by this chunk
                off = pos + len(chunk) - len(e.object) + e.start
                bad = e.object[e.start : e.start + 4].hex(" ")
                raise CharrnnError(
                    f"cannot decode {name} as {enc} at byte offset {off} "
                    f"(bytes {bad}); pass the right --encoding, or --errors "
                    "replace to turn undecodable bytes into U+FFFD"
                ) from None
            pos += len(chunk)
            if on_bytes and chunk:
                on_bytes(len(chunk))
            if newlines == "lf":
                text, carry = _normalise_newlines(text, carry, final)
            if text:
                yield text
            if final:
                break
            chunk = read(pos)
        info.update(bytes=pos, sha256=sha.hexdigest())
    finally:
        if close:
            f.close()


def read_text(
    path_or_dash: StrPath,
    encoding: str | None = None,
    errors: str = "strict",
    newlines: str = "lf",
    on_warning: Callable[[str], None] | None = None,
) -> tuple[str, dict]:
    """Read a whole (small) input with the same pipeline as prepare: ``(text, info)``."""
    info = {}
    text = "".join(iter_text(path_or_dash, encoding, errors, newlines, info, on_warning))
    return text, info
