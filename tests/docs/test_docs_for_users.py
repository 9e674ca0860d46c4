"""The docs speak to users: no notes that only make sense inside the project, every module option in the options
table of docs/ansible.md, examples that do what their names say, the capture backends named as they work."""

import glob
import os
import re

import pytest
import yaml

from helpers import REPO

COLLECTION = os.path.join(REPO, "collections", "ansible_collections", "blkfleet", "core")
MODULES = os.path.join(COLLECTION, "plugins", "modules")
USER_TEXTS = sorted(
    [os.path.join(REPO, "README.md"), os.path.join(COLLECTION, "README.md"), os.path.join(COLLECTION, "galaxy.yml")]
    + glob.glob(os.path.join(REPO, "docs", "*.md")) + glob.glob(os.path.join(MODULES, "*.py"))
    + glob.glob(os.path.join(COLLECTION, "roles", "*", "meta", "argument_specs.yml")))
INTERNAL = re.compile(r"text to merge|closing note|\bissues? (?:#|no\. ?)?\d+\b", re.IGNORECASE)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def module_doc(name, part="DOCUMENTATION"):
    text = read(os.path.join(MODULES, name + ".py"))
    start = text.index(part + " = r'''") + len(part) + 7
    return yaml.safe_load(text[start:text.index("'''", start)])


@pytest.mark.parametrize("path", USER_TEXTS, ids=lambda p: os.path.relpath(p, REPO))
def test_no_project_internal_notes(path):
    found = [(n, line.strip()) for n, line in enumerate(read(path).splitlines(), 1) if INTERNAL.search(line)]
    assert not found


def module_rows():
    rows = {}
    for line in read(os.path.join(REPO, "docs", "ansible.md")).splitlines():
        cells = line.split(" | ")
        name = re.fullmatch(r"\| `(\w+)`", cells[0])
        if name and len(cells) == 2 and os.path.exists(os.path.join(MODULES, name.group(1) + ".py")):
            rows[name.group(1)] = set(re.findall(r"`(\w+)`", cells[1]))
    return rows


def test_options_table_lists_every_module_option():
    rows = module_rows()
    assert "btreplay" in rows and "blktrace" in rows
    missing = {name: sorted(set(module_doc(name)["options"]) - listed) for name, listed in rows.items()}
    assert not {name: options for name, options in missing.items() if options}


def test_blktrace_examples_accept_drops_with_fail_on_drops():
    for task in module_doc("blktrace", "EXAMPLES"):
        args = task.get("blkfleet.core.blktrace") or {}
        if "drops" in task["name"]:
            assert args.get("fail_on_drops") is False and not args.get("force"), task
        if args.get("force"):
            assert re.search(r"discard|overwrite|afresh", task["name"]), task


def test_the_default_ftrace_capture_is_not_called_the_blk_tracer():
    """The ftrace backend's default mode traces the block_bio_queue tracepoint; the blk tracer is its raw mode."""
    texts = {"README": read(os.path.join(COLLECTION, "README.md")),
             "galaxy.yml": yaml.safe_load(read(os.path.join(COLLECTION, "galaxy.yml")))["description"],
             "blktrace": module_doc("blktrace")["short_description"]}
    wrong = re.compile(r"ftrace\W+blk\W+tracer|ftrace 'blk' tracer|blktrace relay or the kernel's ftrace", re.I)
    assert not {name: text for name, text in texts.items() if wrong.search(text)}
    assert "block_bio_queue" in texts["README"]
