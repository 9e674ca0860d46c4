"""What every ``blkfleet`` command shares: one error prefix with a usage hint, ``-V``, its exit codes in its help,
``--json`` on the listings, a progress line on a terminal only, one spelling per unit."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from blkfleet import __version__, codes
from blkfleet.cli import build_parser, main, subcommands
from helpers import REPO
from helpers.terminal import run_on_terminal

RANDMIX = os.path.join(REPO, "tests", "data", "randmix")
MSR = os.path.join(REPO, "tests", "data", "foreign", "msr_src1_2.csv")


def commands(parser=None, path=()):
    """(words, parser) of the top command and of every command and subcommand under it."""
    parser = parser or build_parser()
    yield path, parser
    for name, child in subcommands(parser):
        yield from commands(child, path + (name,))


ALL = list(commands())


@pytest.mark.parametrize("argv, message", [
    (["replay", "-x", "0", "sda"], "argument -x/--acc-factor: must be a number > 0, not '0' "
                                   "(see 'blkfleet replay --help')"),
    (["results", "list", "--bogus"], "unrecognized arguments: --bogus (see 'blkfleet results list --help')"),
    (["capture", "start", "-d", "sda"], "required: -D/--output-dir (see 'blkfleet capture start --help')"),
    (["results", "baseline"], "required: ACTION (see 'blkfleet results baseline --help')"),
    ([], "required: COMMAND (see 'blkfleet --help')"),
])
def test_one_error_prefix_and_a_usage_hint(capsys, argv, message):
    """It was ``blkfleet: blkfleet replay: argument ...``: the prefix twice, and no word on where to look."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("blkfleet: ") and message in err, err
    assert "blkfleet: blkfleet" not in err


@pytest.mark.parametrize("words", [w for w, _ in ALL], ids=lambda w: " ".join(w) or "blkfleet")
def test_every_command_answers_version(capsys, words):
    with pytest.raises(SystemExit) as e:
        build_parser(list(words)).parse_args([*words, "-V"])
    assert e.value.code == 0 and capsys.readouterr().out == f"blkfleet {__version__}\n"


@pytest.mark.parametrize("words, parser", ALL, ids=lambda w: " ".join(w) if isinstance(w, tuple) else "")
def test_every_help_lists_its_exit_codes(words, parser):
    text = " ".join(parser.format_help().split())
    listed = re.search(r"exit codes: (.*?); with --json -", text)
    assert listed, text[-300:]
    exits = {int(n) for n in re.findall(r"(\d+) [a-z]", listed.group(1))}
    assert {codes.SUCCESS, codes.BAD_INPUT} <= exits <= set(codes.EXITS)
    for code in exits:
        assert f"{code} {codes.EXITS[code]}" in listed.group(1)


def test_capture_stop_help_names_its_drop_exit_code():
    text = " ".join(dict(ALL)[("capture", "stop")].format_help().split())
    assert "1 events dropped" in text


@pytest.mark.parametrize("words", [("results", "list"), ("results", "baseline", "list")])
def test_listings_answer_json_to_a_file_and_stdout(tmp_path, capsys, words):
    db = str(tmp_path / "store.sqlite")
    from helpers.synth_results import make_doc, write_doc
    path = write_doc(tmp_path / "run.json", make_doc(seed=1))
    assert main(["results", "add", str(path), "--db", db]) == 0
    assert main(["results", "baseline", "set", "b", "--last", "1", "--db", db]) == 0
    capsys.readouterr()
    out = tmp_path / "listing.json"
    assert main([*words, "--db", db, "--json", str(out)]) == 0
    listing = json.loads(out.read_text())
    assert main([*words, "--db", db, "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] is None and doc["result"] == listing and len(listing) == 1


def test_every_command_answers_json(capsys):
    """``--json FILE|-`` on every command that does something (``results export`` was the last without)."""
    for words, parser in ALL:
        if not list(subcommands(parser)) and words:
            assert "--json" in parser._option_string_actions, words


def test_results_export_answers_json(tmp_path, capsys):
    db = str(tmp_path / "store.sqlite")
    from helpers.synth_results import make_doc, write_doc
    assert main(["results", "add", write_doc(tmp_path / "run.json", make_doc(seed=1)), "--db", db]) == 0
    capsys.readouterr()
    out = tmp_path / "export.csv"
    assert main(["results", "export", "--format", "csv", "-o", str(out), "--db", db, "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"] == {"format": "csv", "output": str(out), "runs": 1, "rows": 1}
    assert out.read_text().startswith("run,host,device")
    assert main(["results", "export", "--db", db, "--json", "-"]) == 2  # the export and the answer on stdout
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "invalid_input"


def test_units_are_spelled_one_way():
    """Sizes are binary (KiB, MiB: what the options take), rates decimal (MB/s, as fio and the results JSON):
    no bare KB or MB in any help text."""
    for words, parser in ALL:
        text = parser.format_help()
        assert not re.search(r"\b(KB|MB|GB)\b(?!/s)", text), (words, text)


def blkfleet_argv(*args):
    return [sys.executable, "-m", "blkfleet", *args]


def progress_cases(tmp_path):
    replay = tmp_path / "replay"
    replay.mkdir()
    imported = tmp_path / "imported"
    return {
        "record": ["record", "-d", RANDMIX, "-D", str(replay), "-F"],
        "compare": ["compare", RANDMIX, RANDMIX],
        "stats": ["stats", RANDMIX],
        "import msr": ["import", "msr", "-D", str(imported), MSR],
    }


@pytest.mark.parametrize("command", ["record", "compare", "stats", "import msr"])
def test_progress_on_a_terminal_only(tmp_path, command):
    args = progress_cases(tmp_path)[command]
    rc, terminal, _ = run_on_terminal(blkfleet_argv(*args), tmp_path)
    assert rc == 0, terminal
    line = rf"\r\x1b\[Kblkfleet {command}: [0-9.]+ MiB of [0-9.]+ MiB read \(\d+ %\), [0-9.]+ s"
    assert re.search(line, terminal), terminal
    assert not re.search(line + r"[^\r]", terminal)  # erased before the command's own lines
    assert "\r\033[K" in terminal  # the line is erased at the end
    shutil.rmtree(tmp_path / "replay")
    shutil.rmtree(tmp_path / "imported", ignore_errors=True)
    args = progress_cases(tmp_path)[command]
    run = subprocess.run(blkfleet_argv(*args), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and " MiB read" not in run.stderr


def test_quiet_has_no_progress_on_a_terminal(tmp_path):
    (tmp_path / "replay").mkdir()
    rc, terminal, _ = run_on_terminal(blkfleet_argv("record", "-q", "-d", RANDMIX, "-D", str(tmp_path / "replay"),
                                                    "-F"), tmp_path)
    assert rc == 0 and terminal == "", terminal
