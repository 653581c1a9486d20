"""The HTML pages (visualize.html, sampler.html) and the three helpers that fill them.

Layer 0: `visualize` (charrnn.analysis) and `export --format web` (charrnn.export) both
fill a template here, and neither imports the other.
"""

import json
import re
from importlib import resources

_UNSAFE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def script_json(data: object) -> str:
    """JSON that is safe inside <script type="application/json">: no '</script>', no
    HTML-significant characters, no U+2028/9 (JavaScript line breaks), no lone
    surrogates (not encodable as UTF-8) -- all as \\u escapes, which JSON.parse undoes."""
    s = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)


def template(name: str) -> str:
    return resources.files("charrnn.web").joinpath(name).read_text("utf-8")


def fill(page: str, **parts: str) -> str:
    """Replace the ``/*NAME*/`` markers in one pass (so inserted text is never searched
    for markers); the values are inserted verbatim and must already be safe."""
    missing = [k for k in parts if f"/*{k}*/" not in page]
    if missing:
        raise AssertionError(f"template has no marker for {missing}")
    return re.sub(r"/\*([A-Z_]+)\*/", lambda m: parts.get(m.group(1), m.group()), page)
