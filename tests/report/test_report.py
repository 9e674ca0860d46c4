"""``blkfleet report``: one self-contained HTML file; rendered in headless Chromium, every plot is in the DOM and the
screenshot is not blank."""

import json
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from blkfleet.cli import main
from blkfleet.trace import TraceRecord, TraceWriter
from helpers.synth_results import make_doc, write_doc

Q_READ = 0x00190001
Q_WRITE = 0x001A0001
PLOTS = ("iops_over_time", "latency_cdf", "lateness_histogram", "lba_heatmap", "trend_iops", "trend_mb_s",
         "trend_latency_p50", "trend_latency_p99", "trend_lateness_p99")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--disable-default-apps", "--mute-audio")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium)")


def write_capture(directory, ios, device="loop1"):
    directory.mkdir(parents=True, exist_ok=True)
    with TraceWriter(directory / f"{device}.blktrace.0") as w:
        for t, sector, nbytes, action in ios:
            w.write(TraceRecord(t, sector, nbytes, action, 4242, 0x700001, 0))
    return str(directory)


def captures(tmp_path):
    """An original capture (2 s, a rate ramp, a hot region plus random IO) and a replay capture of it with jitter."""
    rng = random.Random(11)
    ios, t = [], 0
    while t < 2_000_000_000:
        t += int(rng.expovariate(2000 + 3000 * t / 2e9) * 1e9)
        hot = rng.random() < 0.4
        sector = (rng.randrange(1 << 14) if hot else rng.randrange(1 << 17)) * 8
        ios.append((t, sector, 4096, Q_WRITE if rng.random() < 0.3 else Q_READ))
    replay = [(t + 5_000_000 + int(abs(rng.gauss(0, 30_000))), s, n, Q_READ) for t, s, n, _a in ios]
    replay.sort()
    return write_capture(tmp_path / "orig", ios), write_capture(tmp_path / "replaycap", replay), len(ios)


def populated_store(tmp_path):
    db = str(tmp_path / "results" / "blkfleet.sqlite")
    files = [write_doc(tmp_path / f"r{i}.json", make_doc(seed=i, started=f"2026-05-{i + 1:02d}T02:00:00+00:00",
                                                         iops=10000.0 if i < 6 else 8000.0)) for i in range(7)]
    assert main(["results", "add", "--db", db, *files]) == 0
    assert main(["results", "baseline", "set", "nightly", "--db", db, "--run", *map(str, range(1, 6))]) == 0
    return db, files


def png_size_and_colours(path):
    """(width, height, number of distinct colours in a sample of rows) of an 8-bit RGB(A) PNG, stdlib only."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ctype = header[:4]
    assert depth == 8 and ctype in (2, 6)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 7 == 0:
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 3))
        prev = line
    return width, height, len(colours)


def test_report_is_self_contained_and_has_every_plot(tmp_path):
    db, files = populated_store(tmp_path)
    orig, replay, n = captures(tmp_path)
    out = tmp_path / "out" / "report.html"
    assert main(["report", "--db", db, "--baseline", "nightly", "--original", orig, "--replay-capture", replay,
                 "-o", str(out)]) == 0
    html = out.read_text()
    for plot in PLOTS:
        assert f'id="plot-{plot}"' in html and f'data-plot="{plot}"' in html
    # nothing fetched from anywhere: no external URL other than the SVG namespace, no script, no link, no import
    assert not re.search(r"<script|<link|@import|<img|<iframe", html)
    assert set(re.findall(r"https?://[^\s\"')]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert 'id="fidelity"' in html and f"<td>{n}</td>" in html and "matched IOs" in html
    assert 'id="verdict"' in html and "REGRESSION" in html  # run 6 and 7 have 20 % less IOPS
    assert 'data-empty="true"' not in html
    assert 'data-band="baseline hostA loop1: mean ± 2 sd"' in html
    assert int(re.search(r'data-cells="(\d+)"', html).group(1)) > 100  # the heat map has cells


def test_report_from_results_files_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no store under ./results
    f = write_doc(tmp_path / "one.json", make_doc(seed=3))
    assert main(["report", "--results", f, "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in html
    assert "replay submissions (results)" in html
    assert not (tmp_path / "results").exists()  # the report creates no store
    assert main(["report", "-o", "x.html"]) == 2  # nothing to report
    assert main(["report", "--results", f, "--baseline", "b", "-o", "x.html"]) == 2  # a baseline needs a store
    assert main(["report", "--results", f, "--replay-capture", ".", "-o", "x.html"]) == 2


def test_report_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    db, _files = populated_store(tmp_path)
    orig, replay, _n = captures(tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", "--db", db, "--baseline", "nightly", "--original", orig, "--replay-capture", replay,
                 "-o", str(out)]) == 0
    profile = tmp_path / "chromium-profile"
    base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    found = set(re.findall(r'<svg[^>]*data-plot="([^"]+)"', rendered))
    assert set(PLOTS) <= found, f"missing plots: {set(PLOTS) - found}"
    for plot in PLOTS:  # each plot has axes and labels in the rendered DOM
        svg = re.search(rf'<svg[^>]*id="plot-{plot}".*?</svg>', rendered, re.S).group(0)
        assert 'class="xlabel"' in svg and 'class="ylabel"' in svg and "<title>" in svg
    shot = tmp_path / "report.png"
    run = subprocess.run([*base, "--window-size=1200,5200", "--hide-scrollbars", f"--screenshot={shot}",
                          out.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1200, 5200)
    assert colours > 20, "the screenshot is blank (or nearly)"
    keep = os.environ.get("BLKFLEET_KEEP_REPORT")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(out, os.path.join(keep, "report.html"))
        shutil.copy(shot, os.path.join(keep, "report.png"))
        Path(keep, "verdict.json").write_text(json.dumps({"db": db}))


def test_report_of_a_version_1_document(tmp_path, monkeypatch):
    """Results written by the first version of the format (1-2-5 histograms, one timeline) still give every plot."""
    monkeypatch.chdir(tmp_path)
    f = write_doc(tmp_path / "old.json", make_doc(seed=4, version=1))
    assert main(["report", "--results", f, "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in html
    assert "replay submissions (results)" in html
    for plot in ("latency_cdf", "lateness_histogram"):
        svg = re.search(rf'<svg[^>]*id="plot-{plot}".*?</svg>', html, re.S).group(0)
        assert 'data-empty="true"' not in svg


def test_report_with_a_per_io_log(tmp_path, monkeypatch):
    """--io-log adds the log's submissions to the IOPS plot and draws the latency CDF from it."""
    from blkfleet.results.iolog import IOLogWriter

    monkeypatch.chdir(tmp_path)
    f = write_doc(tmp_path / "one.json", make_doc(seed=5))
    log = IOLogWriter(str(tmp_path / "io.log"), [("loop1", "/dev/loop7")], 10**9, 1_700_000_000 * 10**9)
    n = 3000
    submits = [k * 1_000_000 for k in range(n)]
    log.write_block(1, 0, 10**9, [submits, [5000] * n, [100_000 + 10 * k for k in range(n)], [4096] * n,
                                  [4096 * k for k in range(n)], [4096] * n, [0] * n, [0] * n])
    log.close()
    assert main(["report", "--results", f, "--io-log", str(tmp_path / "io.log"), "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "replay submissions (per-IO log, iteration 1)" in html and "Latency CDF (per-IO log" in html
