"""Man pages and shell completion generated from the argument parser (blkfleet.clidocs): every command and option
is in them, the pages render without groff warnings, and the real bash and zsh complete commands, options, an
option's choices and file names."""

import os
import shutil
import subprocess

import pytest

from blkfleet import clidocs
from blkfleet.cli import build_parser


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("clidocs")
    written = clidocs.write_all(str(root))
    return root, written


def test_one_page_per_command_with_every_option(generated):
    root, written = generated
    pages = {os.path.basename(p) for p in written[clidocs.MAN_DIR]}
    commands = [w for w, _, _ in clidocs.tree() if len(w) == 1]
    assert pages == {"blkfleet.1"} | {f"blkfleet-{w[0]}.1" for w in commands}
    for words, parser, _ in clidocs.tree():
        page = (root / clidocs.MAN_DIR / (f"blkfleet-{words[0]}.1" if words else "blkfleet.1")).read_text()
        text = page.replace("\\-", "-")
        for action in parser._actions:
            for option in action.option_strings:
                assert f"\\fB{option}\\fR" in text, (words, option)
        assert "exit codes: 0 success" in text


@pytest.mark.skipif(not shutil.which("groff"), reason="groff is not installed (Debian groff-base)")
def test_pages_render_without_warnings(generated):
    root, written = generated
    for path in written[clidocs.MAN_DIR]:
        run = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], capture_output=True, text=True)
        assert run.returncode == 0 and run.stderr == "", (path, run.stderr)
    record = os.path.join(root, clidocs.MAN_DIR, "blkfleet-record.1")
    out = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", record], capture_output=True, text=True,
                         check=True).stdout
    assert "blkfleet-record - convert DEV.blktrace" in " ".join(out.split()).replace("\u2010", "-")


CASES = [
    (["blkfleet", "cap"], {"capture"}),
    (["blkfleet", "capture", "st"], {"start", "stop", "status"}),
    (["blkfleet", "capture", "start", "--backend", ""], {"auto", "blktrace", "ftrace"}),
    (["blkfleet", "capture", "start", "-D", "/tmp", "--mo"], {"--mode"}),
    (["blkfleet", "results", "baseline", ""], {"set", "list"}),
    (["blkfleet", "regress", "--te"], {"--test"}),
]


def bash_complete(script, words):
    quoted = " ".join("'" + w + "'" for w in words)
    program = (f". {script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n_blkfleet\n"
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    run = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return set(run.stdout.split())


@pytest.mark.parametrize("words, expected", CASES)
def test_bash_completes(generated, words, expected):
    root, _ = generated
    assert bash_complete(root / clidocs.BASH_DIR / "blkfleet", words) == expected


def test_bash_completes_file_names_where_a_path_goes(generated, tmp_path):
    root, _ = generated
    (tmp_path / "trace-dir").mkdir()
    got = bash_complete(root / clidocs.BASH_DIR / "blkfleet", ["blkfleet", "record", "-d", str(tmp_path / "trace-")])
    assert got == {str(tmp_path / "trace-dir")}


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed (Debian zsh)")
@pytest.mark.parametrize("words, expected", CASES + [(["blkfleet", "record", "-d", ""], {"FILES"})])
def test_zsh_completes(generated, words, expected):
    """zsh's own completion widgets need a terminal: compadd and _files are stood in for by functions that print
    what they were given (zsh filters the candidates by the typed prefix itself)."""
    root, _ = generated
    quoted = " ".join("'" + w + "'" for w in words)
    program = ("compadd() { [[ $1 == -- ]] && shift; print -rl -- \"$@\" }\n_files() { print -r -- FILES }\n"
               f"source {root / clidocs.ZSH_DIR / '_blkfleet'} >/dev/null\n"
               f"words=({quoted}); CURRENT=${{#words}}; PREFIX=${{words[CURRENT]}}\n_blkfleet\n")
    run = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    got = set(run.stdout.split())
    prefix = words[-1]
    assert {w for w in got if w.startswith(prefix)} == expected


def test_completion_tables_follow_the_parser():
    """A command added to the parser is in the completion without anyone editing a script."""
    script = clidocs.bash_completion(build_parser())
    for words, parser, _ in clidocs.tree():
        for action in parser._actions:
            for option in action.option_strings:
                assert f" {option} " in script.replace('"', " "), (words, option)
