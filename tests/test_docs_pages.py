"""The examples of the documentation run and print what the pages say they print.

Every ```pycon block of README.md and of the pages under docs/ is a doctest; the blocks of
one page run in order in one namespace, as a reader would type them.  Machine-dependent
figures (samples per second) are written as ``...`` in the pages (doctest's ELLIPSIS).
"""
import doctest
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]) \
    if (ROOT / "docs").is_dir() else []
PAGES = [p for p in PAGES if "_build" not in p.parts and "```pycon" in p.read_text("utf-8")]

_FENCE = re.compile(r"^(?P<indent>[ ]*)```pycon[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$",
                    re.S | re.M)


def pycon_blocks(text):
    """The ```pycon blocks of a Markdown text, each dedented by its fence's indentation
    (a block inside a list item is indented), as (line number, source)."""
    blocks = []
    for m in _FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "\n".join(line[indent:] for line in m.group("body").split("\n"))
        blocks.append((text.count("\n", 0, m.start()) + 2, body))
    return blocks


def test_the_fence_reader_finds_indented_blocks_and_stops_at_their_fence():
    text = "x\n```pycon\n>>> 1 + 1\n2\n```\n* item\n\n  ```pycon\n  >>> 2\n  2\n  ```\nz\n"
    assert pycon_blocks(text) == [(3, ">>> 1 + 1\n2\n"), (9, ">>> 2\n2\n")]


@pytest.mark.skipif(not PAGES, reason="the documentation is not beside the tests "
                                      "(an installed package without its sources)")
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save files write them here
    blocks = pycon_blocks(page.read_text(encoding="utf-8"))
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.REPORT_NDIFF)
    globs = {"__name__": "__main__"}
    failures = []
    for lineno, source in blocks:
        test = parser.get_doctest(source, globs, f"{page.name}:{lineno}", str(page), lineno)
        out = []
        result = runner.run(test, out=out.append, clear_globs=False)
        if result.failed:
            failures.append("".join(out))
        globs = test.globs  # DocTest runs on a copy: the next block goes on from this one's
    assert not failures, "\n".join(failures)
