"""Read one CoNLL or WikiAnn file into sentences: the first step of the data flow.

The rules are those of `../shared/data/README.md`:

- a blank (or whitespace-only) line ends a sentence; `-DOCSTART-` lines are skipped and end a sentence too
  (the Dutch files put a sentence right after `-DOCSTART- -DOCSTART- O` with no blank line);
- columns are split on tabs or spaces; the token is the first column and the tag the last;
- WikiAnn files (tab-separated, first token like `en:Paris`) carry a language prefix, cut up to the first `:`;
- the bytes are read as UTF-8, else as ISO-8859-1 (the German CoNLL-2003 dev and test files);
- tags are always repaired from IOB1 to BIO: an `I-X` at a sentence start, after `O` or after another type
  is `B-X`.

Tag policy: a tag is `O`, `B-X` or `I-X`, where X is any entity type made of letters, digits and `_`
starting with a letter (so a file of another corpus can still be counted by `pram data check`). Anything else
(`B_PER`, `X-PER`, `b-per`, `0`, IOBES `S-PER`) is rejected with its `file:line`. Whether X is a type of the
corpus (PER/ORG/LOC/MISC for CoNLL) is checked where the corpus is known, in `pram.data.corpora`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pram.errors import UserError, at

DOCSTART = "-DOCSTART-"
TAG = re.compile(r"O|[BI]-[A-Za-z][A-Za-z0-9_]*")
# A WikiAnn language prefix: `en:`, `zh-yue:`, `simple:`...
WIKIANN_PREFIX = re.compile(r"[a-z]+(?:-[a-z]+)*:.")
# Control characters never found in a text corpus (tab, newline, \v, \f and \r excepted): the sign of a binary
# file, which ISO-8859-1 would otherwise "decode" without complaint.
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    """BIO tags, already repaired from IOB1."""
    line: int
    """1-based line of the first token; token i is on line `line + i`."""


def repair_bio(tags: list[str] | tuple[str, ...]) -> list[str]:
    """IOB1 to BIO: an I-X that does not continue an entity of type X starts one, so it becomes B-X."""
    repaired, previous = [], "O"
    for tag in tags:
        fixed = "B-" + tag[2:] if tag.startswith("I-") and previous[2:] != tag[2:] else tag  # previous: O or other type
        repaired.append(fixed)
        previous = fixed
    return repaired


def count_entities(tags: list[str] | tuple[str, ...]) -> int:
    """Entities in one sentence's tags, counted after the BIO repair (so IOB1 input counts right)."""
    return sum(tag.startswith("B-") for tag in repair_bio(tags))


def read_file(path: str | Path) -> list[Sentence]:
    """All sentences of one CoNLL (`token ... tag`) or WikiAnn (`xx:token<TAB>tag`) file, with BIO tags.

    Raises UserError (naming the file, and the line where there is one) for a missing, unreadable, empty
    or binary file, a token line without a tag, and a malformed tag.
    """
    path = Path(path)
    text = decode_text(path, read_bytes(path))
    sentences = _parse(path, text)
    if not sentences:
        raise UserError(f"{at(path)}: no sentences (only blank or -DOCSTART- lines): "
                        "give a file with one `token ... tag` line per token")
    return sentences


def read_bytes(path: Path) -> bytes:
    """A file's bytes; a missing, folder or unreadable path is one UserError line."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{at(path)}: no such file: check the path") from None
    except IsADirectoryError:
        raise UserError(f"{at(path)}: is a folder, not a file: give one corpus file") from None
    except PermissionError:
        raise UserError(f"{at(path)}: cannot be read (permission denied): fix its permissions") from None
    except OSError as e:
        raise UserError(f"{at(path)}: cannot be read ({e.strerror}): check the file") from None


CORPUS_FILE = "a CoNLL (.txt) or WikiAnn (.tsv) corpus file"


def decode_text(path: Path, raw: bytes, wanted: str = CORPUS_FILE) -> str:
    """UTF-8 (a BOM is dropped), else ISO-8859-1 (CoNLL-2003 German); refuses empty and binary files (a control
    character other than tab and newlines, NUL included), naming the line. `wanted` says what to give instead."""
    if not raw.strip():
        raise UserError(f"{at(path)}: empty file: give {wanted}")
    if _utf16(raw):
        raise UserError(f"{at(path)}: UTF-16 text, which pram does not read (it reads UTF-8 and ISO-8859-1): "
                        f"convert it, e.g. iconv -f utf-16 -t utf-8 {path} > {path}.utf8")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")  # never fails: any byte is a character, hence the control check below
    bad = CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise UserError(f"{at(path, line)}: binary content (byte {ord(bad.group()):#04x}), not text: give {wanted}")
    return text


def _utf16(raw: bytes) -> bool:
    """UTF-16: a byte-order mark, or text in which every other byte of the start is NUL."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = raw[:400]
    return len(head) >= 8 and all(b == 0 for b in head[1::2]) != all(b == 0 for b in head[0::2])


def _columns(line: str) -> list[str]:
    return [c for c in line.replace("\t", " ").split(" ") if c]


def _short(text: str, limit: int = 40) -> str:
    """repr() keeps a message on one line whatever the file holds; long values are cut."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse(path: Path, text: str) -> list[Sentence]:
    # split("\n"), not splitlines(): the latter also breaks on \x85, \u2028... which are characters of tokens.
    lines = text.split("\n")
    prefixed = _is_wikiann(lines)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def close() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(repair_bio(tags)), start))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            close()
            continue
        columns = _columns(line.rstrip("\r"))
        if columns[0] == DOCSTART:
            close()
            continue
        if len(columns) < 2:
            raise UserError(f"{at(path, number)}: no tag on this line ({_short(columns[0])}): each token "
                            "line needs the token first and its tag last, separated by spaces or a tab")
        token, tag = columns[0], columns[-1]
        if prefixed:
            token = token.partition(":")[2]
            if not token:
                raise UserError(f"{at(path, number)}: no token after the language prefix "
                                f"({_short(columns[0])}): WikiAnn lines are `xx:token<TAB>tag`")
        if not TAG.fullmatch(tag):
            raise UserError(f"{at(path, number)}: unknown tag {_short(tag)}: tags must be O, B-TYPE or "
                            "I-TYPE (e.g. B-PER, I-LOC)")
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    close()
    return sentences


def _is_wikiann(lines: list[str]) -> bool:
    """WikiAnn files are tab-separated and prefix each token with its language (`en:`); CoNLL uses spaces."""
    for line in lines:
        if line.strip() and not line.startswith(DOCSTART):
            return "\t" in line and WIKIANN_PREFIX.match(line) is not None
    return False
