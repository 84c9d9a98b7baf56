"""Text decoding for the extraction: charsets, HTML to text, invisible characters.

Used by :mod:`.extract` for message bodies and by :mod:`.documents` for text attachments. Every
function here is total: any bytes or markup give some text, never an exception.
"""

from __future__ import annotations

import codecs
import html.parser
import re

_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_SPACES = re.compile("[\u00a0\u2007\u202f]")


def normalise(text: str) -> str:
    """Drop zero-width characters and soft hyphens, make no-break spaces plain spaces."""
    return _SPACES.sub(" ", _INVISIBLE.sub("", text))


# Labels that mail software uses for Windows-1252 text (as the WHATWG encoding standard does).
_CP1252_LABELS = frozenset({"iso-8859-1", "iso8859-1", "iso_8859-1", "latin-1", "latin1", "l1"})
_ASCII_LABELS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968"})


_WIDE_LABELS = ("utf-16", "utf16", "utf-32", "utf32", "ucs-2", "ucs2", "unicode")


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes to text: BOM, else declared charset, else UTF-8, else Windows-1252; never raises.

    A UTF-16 byte-order mark counts only when NUL bytes follow (ASCII in UTF-16 always has
    them): ``\\xff\\xfe`` in front of UTF-8 text must not turn it into CJK garbage for the
    scanner while the recipient's client shows it in clear."""
    label = (charset or "").strip().strip('"').lower()
    wide = label.startswith(_WIDE_LABELS)
    if data.startswith(codecs.BOM_UTF8) and not wide:
        return data[3:].decode("utf-8", "replace")
    utf16_bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if utf16_bom and not wide and b"\x00" in data[2:4096]:
        return data.decode("utf-16", "replace")
    if label in _CP1252_LABELS:
        label = "cp1252"
    candidates = ("utf-8", "cp1252") if label in _ASCII_LABELS or not label else (label, "utf-8")
    for name in candidates:
        try:
            return data.decode(name)
        except (LookupError, UnicodeError, ValueError, TypeError):
            continue
    return data.decode("cp1252", "replace")


class _HTMLText(html.parser.HTMLParser):
    SKIP = frozenset({"script", "style", "template"})
    BLOCK = frozenset({
        "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
        "pre", "blockquote", "hr", "title", "section", "article", "header", "footer", "dd",
        "dt", "dl", "address", "form",
    })
    CELL = frozenset({"td", "th"})
    ATTRS = frozenset({"alt", "title", "value"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
            return
        if tag in self.BLOCK:
            self.out.append("\n")
        elif tag in self.CELL:
            self.out.append("\t")
        if not self.skip:
            self.out.extend(f" {v} " for k, v in attrs if k in self.ATTRS and v)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


_TAG = re.compile(r"<[^>]*>")
_HSPACE = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n\s*\n\s*\n+")


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document (script/style dropped). Never raises."""
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.out)
    except Exception:  # noqa: BLE001 - broken markup falls back to stripping tags
        import html as html_module

        text = html_module.unescape(_TAG.sub(" ", markup))
    text = _HSPACE.sub(" ", normalise(text))
    return _BLANKS.sub("\n\n", text).strip()
