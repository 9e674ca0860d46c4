"""Man pages and bash/zsh completion of ``blkfleet``, generated from its argument parser, so they never disagree
with ``--help``. The package build runs ``write_all`` (setup.py) and installs the files under the prefix:
``share/man/man1/blkfleet.1`` and ``blkfleet-COMMAND.1``, ``share/bash-completion/completions/blkfleet`` and
``share/zsh/site-functions/_blkfleet``. ``python -m blkfleet.clidocs DIR`` writes the same tree into DIR.

Completion: the generated script holds the parser's tree as shell ``case`` tables (subcommands, options, options
that take a value, their choices); its driver walks the words typed so far down that tree, then offers the
subcommands, the options, an option's choices, or file names. bash and zsh share the tables (their ``case`` and
function syntax is common); each has its own small driver.
"""

import argparse
import os
import re
import sys

from . import __version__
from .cli import build_parser, subcommands
from .files import atomic_write

MAN_DIR = "share/man/man1"
BASH_DIR = "share/bash-completion/completions"
ZSH_DIR = "share/zsh/site-functions"


def tree(parser=None, words=()):
    """(words, parser, help) of the top command and of every command under it, parents first."""
    parser = parser or build_parser()
    out = [(words, parser, parser.description or "")]
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps.update({a.dest: a.help or "" for a in action._choices_actions})
    for name, child in subcommands(parser):
        rest = tree(child, words + (name,))
        rest[0] = (rest[0][0], child, helps.get(name, ""))
        out += rest
    return out


def _options(parser):
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]


def _help(parser, action):
    return parser._get_formatter()._expand_help(action) if action.help else ""


# -- man pages ----------------------------------------------------------------------------------------------


def _roff(text):
    """Plain text as roff: backslashes and hyphens escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def _usage(parser):
    return re.sub(r"^usage: ", "", parser.format_usage().strip())


def _option_items(parser):
    lines = []
    for action in _options(parser):
        metavar = ""
        if action.nargs != 0:
            metavar = parser._get_formatter()._format_args(action, action.dest.upper())
        names = ", ".join(f"\\fB{_roff(o)}\\fR" + (f" \\fI{_roff(metavar)}\\fR" if metavar else "")
                          for o in action.option_strings)
        lines += [".TP", names, _roff(" ".join(_help(parser, action).split()))]
    return lines


def _positional_items(parser):
    lines = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        lines += [".TP", f"\\fI{_roff(action.metavar or action.dest)}\\fR", _roff(" ".join(
            _help(parser, action).split()))]
    return lines


def _section(parser, title=".SH"):
    lines = [f"{title} SYNOPSIS" if title == ".SH" else title, ".nf", _roff(_usage(parser)), ".fi"]
    if parser.description:
        lines += [".PP", _roff(" ".join(parser.description.split()))]
    positional = _positional_items(parser)
    if positional:
        lines += [".PP", "Arguments:", ".RS"] + positional + [".RE"]
    lines += [".PP", "Options:", ".RS"] + _option_items(parser) + [".RE"]
    return lines


def manpage(words, parser, summary, children=()):
    """The man page of the command ``words`` (``()``: blkfleet itself), its subcommands as subsections."""
    name = "-".join(("blkfleet",) + words)
    head = [f'.TH {name.upper()} 1 "" "blkfleet {__version__}" "blkfleet manual"', ".SH NAME",
            f"{_roff(name)} \\- {_roff(summary or 'block-IO capture, conversion and faithful replay')}"]
    body = _section(parser)
    for sub_words, sub_parser, sub_summary in children if words else ():
        body += [f".SH {_roff(' '.join(sub_words).upper())}", _roff(sub_summary)] if sub_summary else [
            f".SH {_roff(' '.join(sub_words).upper())}"]
        body += _section(sub_parser, ".SS Synopsis")
    if not words:
        body += [".SH COMMANDS", ".RS"]
        for sub_words, _, sub_summary in children:
            body += [".TP", f"\\fBblkfleet {_roff(sub_words[0])}\\fR (\\fBblkfleet\\-{_roff(sub_words[0])}\\fR(1))",
                     _roff(sub_summary)]
        body += [".RE"]
    body += [".SH EXIT STATUS", _roff(" ".join((parser.epilog or "").split()))]
    see = ["blkfleet(1)"] if words else [f"blkfleet-{w[0]}(1)" for w, _, _ in children]
    body += [".SH SEE ALSO", _roff(", ".join(see))]
    return "\n".join(head + body) + "\n"


def manpages(parser=None):
    """{file name: text}: blkfleet.1 and one page per command (its subcommands included)."""
    commands = tree(parser)
    top = commands[0]
    firsts = [c for c in commands if len(c[0]) == 1]
    pages = {"blkfleet.1": manpage((), top[1], "", firsts)}
    for words, sub, summary in firsts:
        children = [c for c in commands if len(c[0]) > 1 and c[0][0] == words[0] and not subcommands_of(c[1])]
        pages[f"blkfleet-{words[0]}.1"] = manpage(words, sub, summary, children)
    return pages


def subcommands_of(parser):
    return list(subcommands(parser))


# -- shell completion -----------------------------------------------------------------------------------------


def _word(text):
    if not re.fullmatch(r"[A-Za-z0-9_.,:=+/@%-]+", text):
        raise ValueError(f"cannot complete {text!r}: not a plain word")
    return text


def _case(function, rows):
    """A shell function printing the words of its arguments' row; the same text in bash and zsh."""
    lines = [f"{function}() {{", '    case "$*" in']
    for key, words in rows:
        if words:
            lines.append(f'        "{" ".join(map(_word, key))}") echo "{" ".join(map(_word, words))}" ;;')
    lines += ["    esac", "}"]
    return "\n".join(lines)


def _tables(parser=None):
    commands, options, valued, choices = [], [], [], []
    for words, sub, _ in tree(parser):
        commands.append((words, [name for name, _ in subcommands(sub)]))
        opts = _options(sub)
        options.append((words, [o for a in opts for o in a.option_strings]))
        valued.append((words, [o for a in opts if a.nargs != 0 for o in a.option_strings]))
        for action in opts:
            if action.nargs != 0 and action.choices:
                for o in action.option_strings:
                    choices.append((words + (o,), [str(c) for c in action.choices]))
    return "\n\n".join([_case("_blkfleet_commands", commands), _case("_blkfleet_options", options),
                        _case("_blkfleet_valued", valued), _case("_blkfleet_choices", choices)])


_WALK = """\
# Walks the words before the cursor down the command tree: sets _blkfleet_at (the command's words) and
# _blkfleet_after (the option whose value is being typed, or empty).
_blkfleet_walk() {
    local word skip=""
    _blkfleet_at=""
    for word in "$@"; do
        if [ -n "$skip" ]; then
            skip=""
            continue
        fi
        case " $(_blkfleet_valued $_blkfleet_at) " in
            *" $word "*) skip=1; continue ;;
        esac
        case " $(_blkfleet_commands $_blkfleet_at) " in
            *" $word "*) _blkfleet_at="${_blkfleet_at:+$_blkfleet_at }$word" ;;
        esac
    done
    _blkfleet_after=""
    [ -n "$skip" ] && _blkfleet_after="$word"
    return 0
}
"""

_BASH = """\
_blkfleet() {
    local cur=${COMP_WORDS[COMP_CWORD]} list
    _blkfleet_walk "${COMP_WORDS[@]:1:COMP_CWORD-1}"
    if [ -n "$_blkfleet_after" ]; then
        list=$(_blkfleet_choices $_blkfleet_at $_blkfleet_after)
    elif [ "${cur#-}" != "$cur" ]; then
        list=$(_blkfleet_options $_blkfleet_at)
    else
        list=$(_blkfleet_commands $_blkfleet_at)
    fi
    if [ -n "$list" ]; then
        COMPREPLY=($(compgen -W "$list" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _blkfleet blkfleet
"""

_ZSH = """\
_blkfleet() {
    local list
    _blkfleet_walk "${(@)words[2,CURRENT-1]}"
    if [[ -n $_blkfleet_after ]]; then
        list=$(_blkfleet_choices ${=_blkfleet_at} $_blkfleet_after)
    elif [[ $PREFIX == -* ]]; then
        list=$(_blkfleet_options ${=_blkfleet_at})
    else
        list=$(_blkfleet_commands ${=_blkfleet_at})
    fi
    if [[ -n $list ]]; then
        compadd -- ${=list}
    else
        _files
    fi
}
"""


def bash_completion(parser=None):
    return (f"# bash completion of blkfleet {__version__}, generated from its argument parser (blkfleet.clidocs)\n\n"
            + _tables(parser) + "\n\n" + _WALK + "\n" + _BASH)


def zsh_completion(parser=None):
    return (f"#compdef blkfleet\n# zsh completion of blkfleet {__version__}, generated from its argument parser "
            "(blkfleet.clidocs)\n\n" + _tables(parser) + "\n\n" + _WALK.replace(
                '$(_blkfleet_valued $_blkfleet_at)', '$(_blkfleet_valued ${=_blkfleet_at})').replace(
                '$(_blkfleet_commands $_blkfleet_at)', '$(_blkfleet_commands ${=_blkfleet_at})')
            + "\n" + _ZSH + '\n_blkfleet "$@"\n')


def write_all(root):
    """Write the man pages and completions under ``root`` (MAN_DIR, BASH_DIR, ZSH_DIR); returns
    ``{directory relative to the prefix: [paths written]}``. Each file is a new one renamed into place
    (``files.atomic_write``): a link planted at its path is replaced, never written through."""
    parser = build_parser()
    files = {os.path.join(MAN_DIR, name): text for name, text in manpages(parser).items()}
    files[os.path.join(BASH_DIR, "blkfleet")] = bash_completion(parser)
    files[os.path.join(ZSH_DIR, "_blkfleet")] = zsh_completion(parser)
    written = {}
    for relative, text in sorted(files.items()):
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, text)
        written.setdefault(os.path.dirname(relative), []).append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m blkfleet.clidocs DIR")
    for directory, paths in write_all(sys.argv[1]).items():
        print(f"{directory}: {len(paths)} files")
