"""``blkfleet report``: one self-contained HTML file; rendered in headless Chromium, every plot is in the DOM and the
screenshot is not blank."""

import copy
import json
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from blkfleet.cli import main
from blkfleet.trace import TraceRecord, TraceWriter
from helpers.browser import CHROMIUM_FLAGS, chromium
from helpers.synth_results import make_doc, validate, write_doc

Q_READ = 0x00190001
Q_WRITE = 0x001A0001
PLOTS = ("iops_over_time", "mb_s_over_time", "latency_over_time", "in_flight_over_time", "lateness_over_time",
         "latency_cdf", "lateness_histogram", "lba_heatmap", "lba_heatmap_replay", "trend_iops", "trend_mb_s",
         "trend_latency_p50", "trend_latency_p99", "trend_lateness_p99")
NEED_CAPTURES = {"lba_heatmap", "lba_heatmap_replay"}


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


def write_io_log(path, n=3000, reads_every=3):
    """A per-IO log of one iteration: an IO per ms, every ``reads_every``-th a write (slower), lateness rising."""
    from blkfleet.results.iolog import IOLogWriter

    log = IOLogWriter(str(path), [("loop1", "/dev/loop7")], 10**9, 1_700_000_000 * 10**9)
    ops = [1 if k % reads_every == 0 else 0 for k in range(n)]
    log.write_block(1, 0, 10**9, [[k * 1_000_000 for k in range(n)], [5000 + 10 * k for k in range(n)],
                                  [100_000 + 10 * k + 200_000 * op for k, op in enumerate(ops)], [4096] * n,
                                  [4096 * k for k in range(n)], [4096] * n, [0] * n, ops])
    log.close()
    return str(path)


def plot_of(html, plot):
    return re.search(rf'<svg[^>]*id="plot-{plot}".*?</svg>', html, re.S).group(0)


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


def full_report(tmp_path, out):
    db, _files = populated_store(tmp_path)
    orig, replay, n = captures(tmp_path)
    log = write_io_log(tmp_path / "io.log")
    assert main(["report", "--db", db, "--baseline", "nightly", "--original", orig, "--replay-capture", replay,
                 "--io-log", log, "-o", str(out)]) == 0
    return db, n


def test_report_is_self_contained_and_has_every_plot(tmp_path):
    out = tmp_path / "out" / "report.html"
    _db, n = full_report(tmp_path, out)
    html = out.read_text()
    for plot in PLOTS:
        assert f'id="plot-{plot}"' in html and f'data-plot="{plot}"' in html
    # nothing fetched from anywhere: one inline script, no source or link attribute, no external URL other than
    # the SVG namespace, and a Content Security Policy that forbids any request
    assert html.count("<script") == 1 and "<script>" in html
    assert not re.search(r"<link|@import|<img|<iframe|\ssrc=|\shref=|url\((?!#)", html)
    assert set(re.findall(r"https?://[^\s\"')]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in html
    assert 'id="fidelity"' in html and f"<td>{n}</td>" in html and "matched IOs" in html
    assert 'id="verdict"' in html and "REGRESSION" in html  # run 6 and 7 have 20 % less IOPS
    assert 'data-empty="true"' not in html
    assert 'data-band="baseline hostA loop1: mean ± 2 sd"' in html
    for plot in ("lba_heatmap", "lba_heatmap_replay"):  # the heat maps have cells, each with its tooltip
        svg = plot_of(html, plot)
        assert int(re.search(r'data-cells="(\d+)"', svg).group(1)) > 100
        assert re.search(r"<title>[\d.]+–[\d.]+ s, [\d.]+–[\d.]+ MiB: \d+ IOs</title>", svg)
    assert re.search(r'data-frame="[\d. ]+"', plot_of(html, "iops_over_time"))


def test_the_two_lba_maps_share_their_scales(tmp_path):
    """A replay that ran twice as long and crowded one small region: both maps span the longer time and one LBA
    range, and one colour scale whose top is the hotter map's busiest cell, so equal colours mean equal counts."""
    orig = [(k * 1_000_000, (k * 7919 % 4096) * 8, 4096, Q_READ) for k in range(1000)]
    replay = [(k * 2_000_000, (k % 16) * 8, 4096, Q_READ) for k in range(1000)]
    out = tmp_path / "report.html"
    assert main(["report", "--original", write_capture(tmp_path / "orig", orig), "--replay-capture",
                 write_capture(tmp_path / "replaycap", replay), "-o", str(out)]) == 0
    html = out.read_text()
    maps = [plot_of(html, plot) for plot in ("lba_heatmap", "lba_heatmap_replay")]
    counts = [[int(c) for c in re.findall(r": (\d+) IOs</title>", m)] for m in maps]
    peaks = [int(re.search(r'class="colourbar" data-peak="(\d+)"', m).group(1)) for m in maps]
    assert peaks[0] == peaks[1] == max(counts[1]) > 4 * max(counts[0])
    spans = [re.findall(r"<title>[\d.]+–([\d.]+) s, ", m) for m in maps]
    assert spans[0][0] == spans[1][0] == "0.0167"  # both cut 1.998 s into 120 columns
    assert max(map(float, spans[0])) < 1.1 < 1.99 < max(map(float, spans[1]))
    assert sum(counts[0]) == sum(counts[1]) == 1000


def test_original_and_replay_lines_both_show(tmp_path):
    """The replay capture follows the original closely: the original is a pale area, the replay a dashed line over
    it (drawn after it), so neither hides the other."""
    out = tmp_path / "report.html"
    full_report(tmp_path, out)
    svg = plot_of(out.read_text(), "iops_over_time")
    orig = re.search(r'<polyline[^>]*data-series="original capture[^"]*"[^>]*>', svg).group(0)
    replay = re.search(r'<polyline[^>]*data-series="replay capture[^"]*"[^>]*>', svg).group(0)
    assert 'data-style="area"' in orig and 'data-style="dash"' in replay and "stroke-dasharray" in replay
    assert re.search(r'stroke="(#\w+)"', orig).group(1) != re.search(r'stroke="(#\w+)"', replay).group(1)
    assert svg.index(orig) < svg.index(replay) and '<polygon class="area"' in svg


def test_trend_legend_tells_series_from_band(tmp_path):
    out = tmp_path / "report.html"
    full_report(tmp_path, out)
    svg = plot_of(out.read_text(), "trend_iops")
    entries = re.findall(r'<g class="legend-entry" data-kind="(\w+)">(<\w+)', svg)
    assert ("line", "<line") in entries and ("band", "<rect") in entries


def test_verdict_table_shows_floors_and_units_as_the_markdown(tmp_path):
    out = tmp_path / "report.html"
    db, _n = full_report(tmp_path, out)
    html = out.read_text()
    md = tmp_path / "verdict.md"
    main(["regress", "--db", db, "--baseline", "nightly", "-q", "--markdown", str(md)])
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.read_text().splitlines()
            if line.startswith("| hostA")]
    assert any("µs" in r[2] for r in rows) and any(re.search(r"\d+ %, \d+ µs", r[6]) for r in rows)
    for row in rows:  # metric (with its unit) and tolerance (with its floor) as the Markdown writes them
        assert f">{row[2]}</td>" in html.replace("&#x27;", "'") and f"<td>{row[6]}</td>" in html


def test_timelines_per_op_and_percentile_latency(tmp_path):
    out = tmp_path / "report.html"
    full_report(tmp_path, out)
    html = out.read_text()
    for plot in ("mb_s_over_time", "latency_over_time", "in_flight_over_time"):
        svg = plot_of(html, plot)
        assert 'data-series="read"' in svg and 'data-series="write"' in svg and 'data-zoom="x"' in svg
    cdf = plot_of(html, "latency_cdf")
    for label in ("p50", "p90", "p99", "p99.9"):
        assert f">{label}</text>" in cdf
    # the results' histograms per op split reads from writes (every iteration: they hold more than the per-IO
    # log's first); the baseline's 5 runs are merged per op, dashed in the colour of the replay's line
    assert "Latency by percentile (results, by op)" in cdf
    assert 'data-series="replay read"' in cdf and 'data-series="replay write"' in cdf
    for op in ("read", "write"):
        line = re.search(rf'<polyline[^>]*data-series="replay {op}"[^>]*>', cdf).group(0)
        base = re.search(rf'<polyline[^>]*data-series="baseline nightly loop1 {op} \(5 runs\)" data-style="dash"[^>]*>',
                         cdf).group(0)
        assert re.search(r'stroke="(#\w+)"', line).group(1) == re.search(r'stroke="(#\w+)"', base).group(1)
    assert ">p99.99</text>" in cdf
    late = plot_of(html, "lateness_over_time")  # the per-IO log's 50 ms buckets are finer than the results'
    assert 'data-series="max"' in late and 'data-series="mean"' in late and "(per-IO log, iteration 1)" in late


def test_percentile_curve_from_histogram_rows():
    from blkfleet.report.build import _nines, percentile_curve

    rows = [(0.0, 10.0, 900), (10.0, 100.0, 90), (100.0, 1000.0, 10)]  # 1,000 IOs: up to p99.9
    xs, ys = percentile_curve(rows)
    assert abs(xs[0] - _nines(50)) < 1e-9 and abs(xs[-1] - 3) < 1e-9
    assert abs(ys[0] - 500 / 900 * 10) < 1e-9  # p50 inside the first bucket
    assert ys == sorted(ys) and abs(ys[-1] - 910) < 1e-6  # p99.9: 999th IO, 9/10 into the last bucket
    near_p90 = min(zip(xs, ys), key=lambda p: abs(p[0] - _nines(90)))
    assert abs(near_p90[1] - 10.0) < 0.5  # p90: the 900th IO, the end of the first bucket


def test_report_from_results_files_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no store under ./results
    f = write_doc(tmp_path / "one.json", make_doc(seed=3))
    assert main(["report", "--results", f, "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in html
        assert ('data-empty="true"' in plot_of(html, plot)) == (plot in NEED_CAPTURES), plot
    assert "replay submissions (results)" in html
    # without a per-IO log: the latency percentiles by op and the lateness over time from the results alone
    cdf = plot_of(html, "latency_cdf")
    assert "(results, by op)" in cdf and 'data-series="replay read"' in cdf and 'data-series="replay write"' in cdf
    late = plot_of(html, "lateness_over_time")
    assert "(results)" in late and 'data-series="max"' in late and 'data-series="mean"' in late
    assert not (tmp_path / "results").exists()  # the report creates no store
    assert main(["report", "-o", "x.html"]) == 2  # nothing to report
    assert main(["report", "--results", f, "--baseline", "b", "-o", "x.html"]) == 2  # a baseline needs a store
    assert main(["report", "--results", f, "--replay-capture", ".", "-o", "x.html"]) == 2


def test_report_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    out = tmp_path / "report.html"
    db, _n = full_report(tmp_path, out)
    profile = tmp_path / "chromium-profile"
    base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert 'data-interactive="ready"' in rendered  # the script ran, within the page's policy
    found = set(re.findall(r'<svg[^>]*data-plot="([^"]+)"', rendered))
    assert set(PLOTS) <= found, f"missing plots: {set(PLOTS) - found}"
    for plot in PLOTS:  # each plot has axes and labels in the rendered DOM
        svg = plot_of(rendered, plot)
        assert 'class="xlabel"' in svg and 'class="ylabel"' in svg and "<title>" in svg
    shot = tmp_path / "report.png"
    run = subprocess.run([*base, "--window-size=1200,9000", "--hide-scrollbars", f"--screenshot={shot}",
                          out.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1200, 9000)
    assert colours > 20, "the screenshot is blank (or nearly)"
    keep = os.environ.get("BLKFLEET_KEEP_REPORT")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(out, os.path.join(keep, "report.html"))
        shutil.copy(shot, os.path.join(keep, "report.png"))
        Path(keep, "verdict.json").write_text(json.dumps({"db": db}))


PROBE = """<script>
(function () {
  var svg = document.getElementById("plot-iops_over_time"), box = svg.getBoundingClientRect();
  var f = svg.getAttribute("data-frame").split(" ").map(Number), k = box.width / svg.viewBox.baseVal.width;
  var before = svg.querySelector("g.xticks").textContent;
  svg.zoomTo(f[0], f[0] + (f[1] - f[0]) / 4);
  var mid = {clientX: box.left + (f[0] + f[1]) / 2 * k, clientY: box.top + (f[2] + f[3]) / 2 * k, bubbles: true};
  svg.dispatchEvent(new MouseEvent("mousemove", mid));
  var tip = svg.querySelector("g.tooltip");
  document.body.setAttribute("data-probe", JSON.stringify({
    zoomed: svg.getAttribute("data-zoomed"), transform: svg.querySelector("g.data").getAttribute("transform"),
    ticks_before: before, ticks_after: svg.querySelector("g.xticks").textContent,
    tip: tip.getAttribute("visibility"), lines: [].map.call(tip.querySelectorAll("text"), function (t) {
      return t.textContent; })}));
})();
</script>"""


def test_zoom_and_tooltips_work_in_chromium(tmp_path):
    """The report's script in Chromium: zooming the IOPS timeline to its first quarter scales the series and
    redraws the ticks; a pointer over the plot shows every series' value."""
    browser = chromium()
    out = tmp_path / "report.html"
    full_report(tmp_path, out)
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--window-size=1200,2000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, "the probe did not run"
    got = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert got["zoomed"] == "true" and "scale(4" in got["transform"]
    assert got["ticks_before"] != got["ticks_after"]
    assert got["tip"] == "visible"
    names = [line.split(":")[0] for line in got["lines"][1:]]
    assert any(n.startswith("original capture") for n in names) and any(n.startswith("replay capture")
                                                                        for n in names)
    assert all(re.search(r": [\d.]+k? at x [\d.]+", line) for line in got["lines"][1:])


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
        assert 'data-empty="true"' not in plot_of(html, plot)


def test_report_with_a_per_io_log(tmp_path, monkeypatch):
    """--io-log adds the log's submissions to the IOPS plot, splits the latency percentiles by op and gives the
    lateness over time."""
    monkeypatch.chdir(tmp_path)
    f = write_doc(tmp_path / "one.json", make_doc(seed=5, per_op=False))
    log = write_io_log(tmp_path / "io.log")
    assert main(["report", "--results", f, "--io-log", log, "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "replay submissions (per-IO log, iteration 1)" in html and "Latency by percentile (per-IO log" in html
    assert 'data-empty="true"' not in plot_of(html, "lateness_over_time")


def test_report_of_a_version_2_document_without_figures_per_op(tmp_path, monkeypatch):
    """A version 2 document written before the histograms per op and the timeline's lateness: valid, stored,
    and reported with the latency percentiles per device (all ops); the lateness over time says what gives it.
    A baseline of such runs is overlaid on a new run's curves per device, all ops."""
    monkeypatch.chdir(tmp_path)
    old = make_doc(seed=6, per_op=False)
    validate(old)
    assert "by_op" not in old["distributions"] and "lateness_mean_us" not in old["distributions"]["timeline"][
        "series"][0]
    f = write_doc(tmp_path / "old.json", old)
    assert main(["results", "check", f]) == 0
    assert main(["report", "--results", f, "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    cdf = plot_of(html, "latency_cdf")
    assert "(results: all ops per device)" in cdf and 'data-series="replay loop1"' in cdf
    late = plot_of(html, "lateness_over_time")
    assert 'data-empty="true"' in late and "blkfleet replay --io-log FILE" in late
    db = str(tmp_path / "db.sqlite")
    files = [write_doc(tmp_path / f"r{i}.json", make_doc(seed=i, per_op=i == 3,
                                                         started=f"2026-05-{i + 1:02d}T02:00:00+00:00"))
             for i in range(4)]
    assert main(["results", "add", "--db", db, *files]) == 0
    assert main(["results", "baseline", "set", "old", "--db", db, "--run", "1", "2", "3"]) == 0
    assert main(["report", "--db", db, "--baseline", "old", "--results", files[3], "-o", "b.html"]) == 0
    cdf = plot_of((tmp_path / "b.html").read_text(), "latency_cdf")
    assert 'data-series="replay read"' in cdf and 'data-series="replay write"' in cdf
    assert re.search(r'data-series="baseline old loop1 \(3 runs, all ops\)" data-style="dash"', cdf)


def test_latency_percentiles_per_device_and_op(tmp_path):
    """With two devices, a line per device and op, each in its own colour, and the baseline's dashed line per
    device and op in the colour of the replay's."""
    from blkfleet.report.build import latency_cdf_plot

    def two_devices(doc):
        doc = copy.deepcopy(doc)
        doc["devices"]["loop2"] = copy.deepcopy(doc["devices"]["loop1"])
        dist = doc["distributions"]["devices"]
        dist["loop2"] = copy.deepcopy(dist["loop1"])
        del dist["loop2"]["by_op"]["write"]  # loop2 only read
        return doc

    focus = two_devices(make_doc(seed=7))
    validate(focus)
    cdf = latency_cdf_plot(focus, baseline_docs=[two_devices(make_doc(seed=s)) for s in (8, 9)],
                           baseline_name="nightly")
    colours = {}
    for name in ("loop1 read", "loop1 write", "loop2 read"):
        line = re.search(rf'<polyline[^>]*data-series="replay {name}"[^>]*>', cdf).group(0)
        base = re.search(rf'<polyline[^>]*data-series="baseline nightly {name} \(2 runs\)" data-style="dash"[^>]*>',
                         cdf).group(0)
        colours[name] = re.search(r'stroke="(#\w+)"', line).group(1)
        assert re.search(r'stroke="(#\w+)"', base).group(1) == colours[name]
    assert len(set(colours.values())) == 3 and "loop2 write" not in cdf
