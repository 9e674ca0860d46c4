"""The shared command-line value checks (blkfleet.cliargs) and the one number formatter (blkfleet.numtext),
through the real commands where they are used."""

import pytest

from blkfleet.cli import main
from blkfleet.numtext import number


@pytest.mark.parametrize("argv, message", [
    (["compare", "a", "b", "-x", "0"], "argument -x/--acc-factor: must be a number > 0, not '0'"),
    (["compare", "a", "b", "-x", "nan"], "argument -x/--acc-factor: not a finite number: 'nan'"),
    (["replay", "-x", "fast", "sda"], "argument -x/--acc-factor: not a number: 'fast'"),
    (["replay", "--run-id", "r", "--lease", "-1", "sda"], "argument --lease: must be a number > 0, not '-1'"),
    (["capture", "start", "-d", "sda", "-D", "/x", "-b", "0"], "argument -b/--buffer-size: must be an integer >= 1"),
    (["capture", "start", "-d", "sda", "-D", "/x", "-n", "2.5"], "argument -n/--buffer-count: not an integer"),
    (["capture", "stop", "-D", "/x", "--timeout", "inf"], "argument --timeout: not a finite number: 'inf'"),
    (["job", "stop", "r", "--timeout", "-1"], "argument --timeout: must be a number >= 0, not '-1'"),
    (["regress", "--baseline", "b", "--alpha", "1"], "argument --alpha: must be within (0, 1), not '1'"),
    (["regress", "--baseline", "b", "--min-samples", "0"], "argument --min-samples: must be an integer >= 1"),
    (["results", "baseline", "set", "b", "--last", "0"], "argument --last: must be an integer >= 1, not '0'"),
    (["report", "-o", "r.html", "--band-k", "-2"], "argument --band-k: must be a number > 0, not '-2'"),
    (["record", "-d", "/nonexistent-dir", "sda"], "argument -d/--input-directory: no such directory"),
    (["bundle", "create", "-d", "/nonexistent-dir", "-o", "b", "sda"], "argument -d/--input-directory: no such"),
])
def test_bad_values_are_one_line_naming_the_option(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("blkfleet: ") and message in err, err


@pytest.mark.parametrize("args, text", [
    ((None,), "-"),
    ((12,), "12"),
    ((12.345,), "12.3"),
    ((12.345, 2, " us"), "12.35 us"),
    ((None, 1, "", "–", True), "–"),
    ((1234567.8, 1, "", "-", True), "1,234,568"),
    ((98765.43, 1, "", "-", True), "98,765.4"),
    ((0.000123, 1, "", "-", True), "0.000123"),
    ((123456, 1, "", "-", True), "123,456"),
])
def test_number(args, text):
    assert number(*args) == text


@pytest.mark.parametrize("value, text", [(0, "0"), (0.25, "0.25"), (1500, "1.5k"), (2_000_000, "2M"),
                                         (-3e9, "-3G")])
def test_number_short(value, text):
    assert number(value, short=True) == text
