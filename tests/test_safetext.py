"""Text a model supplies is cleaned of everything that could act on a terminal: escape sequences whole,
C0 and C1 controls, DEL, bidirectional overrides; what a person should read is left as it was."""
from __future__ import annotations

import collections
import time

import pytest
from hypothesis import given, settings, strategies as st

from calcml.debug.safetext import clean, clean_obj

C0 = {chr(c) for c in range(0x20)} - {"\t", "\n"}
C1 = {chr(c) for c in range(0x80, 0xA0)}
BIDI = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}
FORBIDDEN = C0 | C1 | BIDI | {"\x7f"}


@pytest.mark.parametrize("text, expected", [
    # OSC: window title, hyperlinks, clipboard, colours; ended by BEL or by ST (ESC \ or U+009C)
    ("\x1b]0;pwned\x07", ""), ("before\x1b]0;pwned\x07after", "beforeafter"),
    ("\x1b]2;title\x1b\\after", "after"), ("\x1b]0;title\x9cafter", "after"),
    ("\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"),
    ("\x1b]52;c;cm0gLXJmIH4=\x07", ""), ("\x1b]4;1;rgb:ff/00/00\x07x", "x"),
    ("\x9d0;pwned\x07after", "after"), ("\x9d0;pwned\x9cafter", "after"),
    ("\x1b]0;never ended", ""), ("\x1b]0;title\x1b[31mred", "red"),      # another ESC ends the string
    ("\x1b]0;ti\x18tle", "tle"),                                          # so does CAN
    # CSI: clear the screen, move the cursor, colours, modes, reports
    ("\x1b[2J", ""), ("\x1b[H\x1b[2Jok", "ok"), ("\x1b[10;20Hat", "at"), ("\x1b[3A\x1b[2K", ""),
    ("\x1b[31;1mred\x1b[0m plain", "red plain"), ("\x1b[38;2;255;0;0mrgb\x1b[m", "rgb"),
    ("\x1b[?1049h\x1b[?25l", ""), ("\x1b[6n", ""), ("\x1b[>0c", ""), ("\x1b[1 q", ""),
    ("\x1b[!p", ""), ("\x1b[", ""), ("\x1b[12;3", ""), ("a\x1b[1;2", "a"),
    ("\x9b2J", ""), ("\x9b2Jx", "x"), ("\x9b31mred", "red"), ("\x9b", ""),
    # bracketed paste: a fake paste of a command
    ("\x1b[200~rm -rf ~\n\x1b[201~", "rm -rf ~\n"), ("\x1b[200~", ""), ("\x1b[201~", ""),
    # DCS, SOS, PM, APC: strings ended by ST
    ("\x1bPq#0;2;0;0;0#0~~@@\x1b\\after", "after"), ("\x1bP$q m\x1b\\", ""), ("\x90$qm\x9cx", "x"),
    ("\x1bXsos\x1b\\x", "x"), ("\x1b^pm\x1b\\x", "x"), ("\x1b_apc\x1b\\x", "x"), ("\x98sos\x9c", ""),
    ("\x9e pm \x9c", ""), ("\x9f apc \x9c", ""), ("\x1bPunended", ""),
    # two-character sequences: reset, save/restore the cursor, character sets, line size
    ("\x1bc", ""), ("\x1b7save\x1b8", "save"), ("\x1b(B", ""), ("\x1b(0qqq\x1b(B", "qqq"), ("\x1b#8", ""),
    ("\x1b=\x1b>", ""), ("\x1bD\x1bM\x1bE", ""), ("\x1b\\", ""), ("\x1bN", ""),
    # a lone or unterminated ESC, ESC before something that is not a sequence
    ("\x1b", ""), ("end\x1b", "end"), ("\x1b\x1b[2J", ""), ("\x1b\nnext", "\nnext"), ("\x1bé", "é"),
    ("\x1b(", "("), ("a\x1b\x1b\x1b!", "a!"), ("a\x1b\x1bb", "a"),     # ESC b is a sequence
    # other C0 controls, DEL, C1
    ("bell\x07", "bell"), ("ab\x08\x08cd", "abcd"), ("n\x00u\x00l", "nul"), ("\x0bv\x0cf", "vf"),
    ("\x0e\x0fshift", "shift"), ("\x18\x1a\x1c\x1d\x1e\x1f", ""), ("del\x7f", "del"),
    ("c1" + "".join(chr(c) for c in range(0x80, 0xA0)), "c1"), ("\x85next", "next"),
    ("".join(chr(c) for c in range(0x80, 0x90)) + "c1", "c1"),
    # carriage returns: \r\n is a newline, a lone \r (progress printed over itself) becomes one
    ("a\r\nb", "a\nb"), ("10%\r20%\r30%", "10%\n20%\n30%"), ("line\r", "line\n"), ("\r\r\n", "\n\n"),
    ("\r\n\r\n", "\n\n"),
    # bidirectional embeddings, overrides and isolates
    ("\u202eevil\u202c", "evil"), ("access = \u2066admin\u2069", "access = admin"),
    ("".join(sorted(BIDI)) + "x", "x"), ("a\u202ab\u202bc\u202dd", "abcd"),
])
def test_cleans(text, expected):
    assert clean(text) == expected
    assert clean(expected) == expected


@pytest.mark.parametrize("text", [
    "", "plain ascii text 0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "tab\tand\nnewline\n",
    "é è ü ß ñ", "中文 日本語 한국어", "🎉 🔥 👍🏽 👨‍👩‍👧 🏳️‍🌈", "∂L/∂w ‖∇L‖ ∇² λ_max η ≤ 2/λ σ(x) ∞ ≈ ∑",
    "Ελληνικά: αβγδε", "עברית العربية",            # right-to-left text itself is fine
    "\u200b\u200c\u200d\ufeff",                      # zero-width characters are not terminal controls
    "\u00a0nbsp\u2028\u2029", "x" * 100_000, "[31mnot an escape", "\\x1b[2J spelled out",
])
def test_leaves_text_a_person_reads_as_it_was(text):
    assert clean(text) == text


@pytest.mark.parametrize("text, expected", [
    ("a\tb\nc", "a b c"), ("a\r\nb", "a b"), ("10%\r20%", "10% 20%"), ("\x1b[2Jx\n", "x "),
    ("∇\t‖", "∇ ‖"), ("no controls", "no controls"),
])
def test_one_line(text, expected):
    assert clean(text, keep_newlines=False) == expected


def test_clean_text_is_fast():
    lines = ["step 1200  loss 0.03412  ‖∇‖ 1.2e-3  lr 0.01", "epoch 3/10\n", "x" * 200]
    start = time.perf_counter()
    for _ in range(10_000):
        for line in lines:
            clean(line)
    assert time.perf_counter() - start < 0.5     # 30,000 lines; about 0.01 s


def test_clean_text_is_returned_as_it_is():
    text = "loss 0.5 ∇ 3\n"
    assert clean(text) is text


def test_clean_obj():
    Point = collections.namedtuple("Point", "x label")
    value = {"name\x1b]0;pwned\x07": ["v\x07", ("t\x9b2J", Point(1.5, "p\x00")), {"k\u202e": b"\x1b[2J"}],
             3: None, "n": 2.5, "ok": True, ("tu\x1b[1m", 1): "key"}
    assert clean_obj(value) == {"name": ["v", ("t", Point(1.5, "p")), {"k": b"\x1b[2J"}], 3: None, "n": 2.5,
                                "ok": True, ("tu", 1): "key"}
    assert isinstance(clean_obj(value)["name"][1][1], Point)
    assert clean_obj("a\x1b[2Jb") == "ab" and clean_obj(5) == 5 and clean_obj(None) is None
    marker = object()
    assert clean_obj([marker])[0] is marker                 # other values are left as they are
    assert clean_obj({"a": "x\ny"}, keep_newlines=False) == {"a": "x y"}


def test_clean_obj_deep_shared_and_cyclic():
    deep = inner = []
    for _ in range(50_000):                                 # deeper than recursion would allow
        inner.append([])
        inner = inner[0]
    inner.append("\x1b[2Jbottom")
    out = clean_obj(deep)
    for _ in range(50_000):
        out = out[0]
    assert out == ["bottom"]
    shared = ["\x07s"]
    out = clean_obj([shared, shared])
    assert out == [["s"], ["s"]] and out[0] is out[1]
    cyclic = ["\x07c"]
    cyclic.append(cyclic)
    out = clean_obj(cyclic)
    assert out[0] == "c" and out[1] is out
    d = {"k\x07": "v"}
    d["self"] = d
    out = clean_obj(d)
    assert out["k"] == "v" and out["self"] is out


# -- properties -------------------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from([
    "\x1b", "\x1b[", "\x1b]", "\x1bP", "\x1bX", "\x1b^", "\x1b_", "\x1b\\", "\x07", "\x9b", "\x9c", "\x9d",
    "\x90", "\r", "\n", "\t", "\r\n", "\x00", "\x7f", "\x08", "\x18", "2J", "0;title", "31m", ";", "?25l",
    "200~", "(B", "é", "∇", "‖", "中", "🎉", "\u202e", "\u2066", "\u200d", " ", "a", "["])
TEXTS = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=3)), max_size=30).map("".join))


@settings(max_examples=400, deadline=None)
@given(text=TEXTS, keep_newlines=st.booleans())
def test_output_has_nothing_that_acts_on_a_terminal_and_cleaning_twice_changes_nothing(text, keep_newlines):
    out = clean(text, keep_newlines)
    assert not FORBIDDEN & set(out)
    if not keep_newlines:
        assert "\n" not in out and "\t" not in out
    assert clean(out, keep_newlines) == out
    assert len(out) <= len(text) + text.count("\r")


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_ascii_is_unchanged(text):
    assert clean(text) == text and clean(text, keep_newlines=False) == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_characters=sorted(FORBIDDEN | {"\r"}))))
def test_text_without_controls_is_unchanged(text):
    assert clean(text) == text


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


JSONISH = st.recursive(
    st.one_of(TEXTS, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans()),
    lambda children: st.one_of(st.lists(children, max_size=4), st.tuples(children, children),
                               st.dictionaries(TEXTS, children, max_size=4)),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(value=JSONISH)
def test_clean_obj_cleans_every_string(value):
    out = clean_obj(value)
    for s in _strings(out):
        assert not FORBIDDEN & set(s) and clean(s) == s
    assert clean_obj(out) == out
