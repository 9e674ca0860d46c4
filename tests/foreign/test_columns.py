"""The block-wide shape test of the importers: a block is taken whole only when every line has its fields."""

import pytest

from blkfleet.foreign.columns import uniform_lines


@pytest.mark.parametrize("text, width, sep, lines", [
    (b"1,2,3\n4,5,6\n", 3, b",", 2),
    (b"", 3, b",", 0),
    (b"1,2,3\n4,5\n6,7,8,9\n", 3, b",", None),  # the delimiters add up, the lines do not
    (b"1,2,3\n\n4,5,6\n", 3, b",", None),  # an empty line
    (b"1;2;3\n", 3, b";", 1),
    (b"1 2 3\n4 5 6\n", 3, None, 2),
    (b"1  2 3\n", 3, None, None),  # a run of blanks: for the line-by-line look
    (b"1\t2 3\n", 3, None, None),
    (b" 1 2 3\n", 3, None, None),
    (b"1 2 3 \n", 3, None, None),
    (b"1 2 3\n 4 5\n", 3, None, None),
    (b"1 2\n3 4 5 6\n", 3, None, None),
])
def test_uniform_lines(text, width, sep, lines):
    assert uniform_lines(text, width, sep) == lines
