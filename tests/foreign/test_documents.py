"""import, transform, export and stats answer ``--json -`` with one protocol document, valid against
protocol.schema.json and their result schemas (with jsonschema and the engine's own checker); a failure is one
document too, with its one-line message; ``report --stats`` gets the workload section."""

import json
from pathlib import Path

from helpers.protocol import run

DATA = Path(__file__).resolve().parents[1] / "data"
MSR = DATA / "foreign" / "msr_src1_2.csv"


def test_documents_of_every_command(tmp_path):
    doc, _ = run("import", "msr", MSR, "-D", tmp_path / "imp")
    assert doc["command"] == "import msr" and doc["result"]["ios"] == 5
    assert doc["result"]["origin"]["command"] == "import"
    doc, _ = run("import", "csv", DATA / "foreign" / "mapped.csv", "-D", tmp_path / "csv", "--columns",
                 "time=0,device=1,op=2,offset=3,size=4", "--delimiter", ";", "--time-unit", "ms", "--ops",
                 "rd=read,wr=write,flush=flush", "--skip-lines", "1")
    assert doc["command"] == "import csv" and doc["result"]["ios"] == 4
    doc, _ = run("transform", tmp_path / "imp", "-D", tmp_path / "tr", "--wrap", "512M", "--rename", "src1_2=a")
    assert doc["command"] == "transform" and doc["result"]["counts"]["wrapped"] == 1
    doc, _ = run("stats", tmp_path / "tr")
    assert doc["command"] == "stats" and set(doc["result"]["devices"]) == {"a", "src1_1"}
    assert doc["result"]["origin"]["command"] == "transform"
    doc, _ = run("stats", DATA / "randmix")
    assert doc["result"]["devices"]["loop1"]["completions"]["matched"] == 2000
    (tmp_path / "stats.json").write_text(json.dumps(doc["result"]))
    doc, _ = run("stats", "--format", "tencent", DATA / "foreign" / "tencent_2018-10-01-01.csv")
    assert doc["result"]["source"] == {"kind": "foreign", "inputs": ["tencent_2018-10-01-01.csv"],
                                       "format": "tencent"}
    doc, _ = run("export", "fio-iolog", tmp_path / "tr", "-o", tmp_path / "x.iolog")
    assert doc["command"] == "export fio-iolog" and doc["result"]["ios"] == 5
    doc, _ = run("export", "fio-job", DATA / "randmix", "-o", tmp_path / "x.fio")
    assert doc["command"] == "export fio-job" and doc["result"]["jobs"] == 4
    doc, _ = run("report", "-o", tmp_path / "r.html", "--stats", tmp_path / "stats.json", "--db", tmp_path / "no.db")
    html = (tmp_path / "r.html").read_text()
    assert doc["exit_code"] == 0 and 'id="workload"' in html and 'data-plot="workload_iops_loop1"' in html


def test_a_failure_is_one_document(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("128166372000000000,h,0,Read,1,2\n")
    doc, proc = run("import", "msr", bad, "-D", tmp_path / "o")
    assert doc["exit_code"] == proc.returncode == 2 and doc["result"] is None
    assert doc["error"] == {"code": "invalid_input", "message": f"{bad}: line 1: 6 fields, expected 7",
                            "path": str(bad), "line": 1}
    assert proc.stderr == f"blkfleet: {bad}: line 1: 6 fields, expected 7\n"
    doc, proc = run("stats", tmp_path / "nothing-here")
    assert doc["error"]["code"] == "invalid_input" and proc.returncode == 2


def test_report_refuses_a_stats_document_it_cannot_show(tmp_path):
    """report --stats took any JSON: a document whose fields had other types or values than stats writes (devices
    a list, a timeline's counts text, a bucket of 0 s, a working set of -1 bytes) ended in a traceback."""
    doc, _ = run("stats", DATA / "randmix")
    good = doc["result"]
    dev = ["devices", "loop1"]
    for path, value in ([["devices"], []], [[*dev, "timeline", "ios", "read"], "x"],
                        [[*dev, "timeline", "bucket_s"], 0], [[*dev, "working_set", "bytes"], -1],
                        [[*dev, "hot_extents", "touched"], None], [[*dev, "all", "seek", "mean_sectors"], "x"],
                        [[*dev, "completions", "in_flight", "max"], 0.5]):
        bad = json.loads(json.dumps(good))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (tmp_path / "stats.json").write_text(json.dumps(bad))
        doc, proc = run("report", "-o", tmp_path / "r.html", "--stats", tmp_path / "stats.json", "--db",
                        tmp_path / "no.db")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (path, proc.stderr)
        assert proc.stderr.startswith(f"blkfleet: {tmp_path / 'stats.json'}: not a blkfleet stats document: $.")
        assert len(proc.stderr.splitlines()) == 1
