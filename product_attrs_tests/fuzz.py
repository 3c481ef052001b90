"""Hypothesis strategies that reach the interesting space of a text reader, and an independent line count.

`st.binary()` alone almost never yields a file whose header passes, so most examples here are a valid
file with some lines mutated: a field replaced by (or spiked with) a hostile piece, fields dropped or
repeated, random text. Example counts come from the profiles in ``conftest.py``.
"""

from __future__ import annotations

import io

from hypothesis import strategies as st

LONG = "x" * 140_000  # over the csv module's 128 KiB field limit
HOSTILE = [
    "\x00",
    "²",
    "١٢٣",
    "٠",
    "99999999999999999999",
    "9" * 30,
    "0",
    "-1",
    "1_0",
    "1.0",
    "1e999",
    "NaN",
    "inf",
    '"',
    '""',
    '"a,b"',
    ",",
    ",,",
    "\r",
    "\n",
    "\r\n",
    "\u2028",
    "\x85",
    "\x1c",
    "\ufeff",
    "\ufffd",
    " ",
    "",
    "..",
    "../x",
    "/",
    "/etc/passwd",
    LONG,
    f'"{LONG}"',
]
piece = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=12),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True),
)


@st.composite
def mutated_line(draw: st.DrawFn, good: str) -> str:
    """``good`` with 1-3 of: a field replaced, a piece inserted into a field, a field dropped or repeated."""
    fields = good.split(",")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(fields) - 1))
        kind = draw(st.sampled_from(["replace", "insert", "drop", "repeat"]))
        if kind == "replace":
            fields[i] = draw(piece)
        elif kind == "insert":
            at = draw(st.integers(0, len(fields[i])))
            fields[i] = fields[i][:at] + draw(piece) + fields[i][at:]
        elif kind == "drop" and len(fields) > 1:
            del fields[i]
        else:
            fields.insert(i, fields[i])
    return ",".join(fields)


def lines_of(good: list[str]) -> st.SearchStrategy[list[str]]:
    """Up to 8 lines: good ones, mutated ones, blank ones and random text."""
    one = st.one_of(
        st.sampled_from(good),
        st.sampled_from(good).flatmap(mutated_line),
        st.sampled_from(["", "   ", "\t"]),
        st.text(max_size=30),
    )
    return st.lists(one, max_size=8)


def join(lines: list[str], end: str) -> str:
    return "".join(line + end for line in lines)


line_end = st.sampled_from(["\n", "\r\n", "\r"])
#: Byte-level damage to a file: bytes that are not UTF-8, a BOM, a NUL, a cut.
damage = st.sampled_from([b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x00", b"\xe2\x80\xa8", b""])


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(damage) + data[at:]
    return data


def physical_lines(data: bytes, encoding: str = "utf-8") -> list[str]:
    """The lines of a file as text with universal newlines (an implementation apart from the readers')."""
    text = io.StringIO(data.decode(encoding, errors="replace"), newline=None).read()
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines
