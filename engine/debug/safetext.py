"""Text from a model file made safe to show in a terminal.

What a model prints, and the names and messages it supplies, reach the screen. Written as they are,
escape sequences in them could act on the terminal: set its title, move the cursor, clear the screen,
fake a paste, or hide what follows. `clean` takes out everything that could act on a terminal and
leaves the rest of the text as it was:

- escape sequences, whole: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \\), the DCS, SOS,
  PM and APC strings (ESC P, X, ^, _ ... ESC \\), and the two-character ones (ESC 7, ESC c, ESC ( B);
  the same in their 8-bit forms (U+009B CSI, U+009D OSC, U+0090 DCS ...). A string with no end runs
  to the end of the text, as a terminal would swallow it;
- the C0 controls but tab and newline, DEL, and all of U+0080-U+009F;
- a carriage return: dropped in \\r\\n, otherwise a newline (progress printed over itself with \\r
  reads as one line per update);
- the bidirectional embedding, override and isolate characters (U+202A-U+202E, U+2066-U+2069),
  which change the order a person reads the text in.

`clean_obj` does the same for every string inside nested dicts, lists and tuples.
"""
from __future__ import annotations

import re

__all__ = ["clean", "clean_obj"]

# Anything clean acts on; when none of it is there (nearly always), the text is returned as it is.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_SEQUENCE = re.compile(
    # CSI: parameter bytes, intermediate bytes, a final byte (missing when the text ends first)
    "(?:\x1b\\[|\x9b)[0-?]*[ -/]*[@-~]?"
    # OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \\ or U+009C); CAN, SUB or another ESC
    # ends it early, and then only what came before is taken
    "|(?:\x1b[\\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x18\x1a\x1b\x9c]*(?:\x07|\x1b\\\\|\x9c)?"
    # two characters (or more, with intermediate bytes): ESC 7, ESC c, ESC ( B, ESC # 8, ESC \\
    "|\x1b[ -/]*[0-~]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SPACES = str.maketrans("\t\n", "  ")


def clean(text: str, keep_newlines: bool = True) -> str:
    """`text` without anything that could act on a terminal (see the module's notes). Tabs and
    newlines are kept, or with keep_newlines=False become spaces. Cleaning clean text changes nothing."""
    if text.isprintable():   # no controls, no format characters: the usual case
        return text
    if (_UNSAFE if keep_newlines else _UNSAFE_ONE_LINE).search(text) is None:
        return text
    text = _SEQUENCE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return text if keep_newlines else text.translate(_SPACES)


def clean_obj(value, keep_newlines: bool = True):
    """`value` with every string in it cleaned: the strings inside dicts (keys too), lists and tuples,
    however deeply nested, and `value` itself when it is a string. Other values are left as they are.
    Containers come back as new dicts, lists and tuples (a named tuple keeps its type); where two keys
    are the same once cleaned, the later one's value is kept. Shared and cyclic references are kept
    (a cycle through a tuple alone is left as it was there)."""
    if isinstance(value, str):
        return clean(value, keep_newlines)
    if not isinstance(value, (dict, list, tuple)):
        return value
    done: dict[int, object] = {}   # id of a container -> its cleaned copy (lists and dicts from the start)

    def begin(container):
        if isinstance(container, dict):
            done[id(container)] = shell = {}
            children = [x for item in container.items() for x in item]
        elif isinstance(container, list):
            done[id(container)] = shell = []
            children = list(container)
        else:
            done[id(container)] = container   # until its copy exists
            shell, children = None, list(container)
        return [container, shell, children, []]

    stack = [begin(value)]   # without recursion: nesting as deep as memory allows
    while True:
        container, shell, children, results = frame = stack[-1]
        while len(results) < len(children):
            child = children[len(results)]
            if isinstance(child, str):
                results.append(clean(child, keep_newlines))
            elif isinstance(child, (dict, list, tuple)):
                if id(child) in done:
                    results.append(done[id(child)])
                else:
                    stack.append(begin(child))
                    break
            else:
                results.append(child)
        if stack[-1] is not frame:
            continue
        stack.pop()
        if isinstance(container, dict):
            shell.update(zip(results[0::2], results[1::2]))
            made = shell
        elif isinstance(container, list):
            shell.extend(results)
            made = shell
        else:
            made = type(container)._make(results) if hasattr(type(container), "_make") else tuple(results)
            done[id(container)] = made
        if not stack:
            return made
        stack[-1][3].append(made)
