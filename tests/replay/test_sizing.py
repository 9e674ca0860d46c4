"""The worker count: from CPUs less one up to every CPU when the trace's peak rate needs it, never more workers
than streams, -c as given, -N at the start; what was decided is recorded."""

from types import SimpleNamespace

import pytest

from blkfleet.replay import sizing
from blkfleet.replay.feed import genesis_of, open_sources
from blkfleet.replayfile import native
from blkfleet.replayfile.ops import READ


def streams(directory, iops, cpus=2, seconds=1.0, burst=None):
    """``cpus`` native files of reads at ``iops`` each; ``burst``: (at s, IOs) packed into 10 ms on CPU 0."""
    step = int(1e9 / iops)
    for cpu in range(cpus):
        w = native.NativeWriter(directory / f"sda.replay.{cpu}")
        times = [1_000_000_000 + k * step for k in range(int(iops * seconds))]
        if burst and cpu == 0:
            at, n = burst
            times = sorted(times + [1_000_000_000 + int(at * 1e9) + k * (10_000_000 // n) for k in range(n)])
        for a in range(0, len(times), 64):
            part = times[a:a + 64]
            w.add_bunch(part[0], [(8 * k, 4096, t - part[0], READ, 0, 1) for k, t in enumerate(part)])
        w.close()
    sources = open_sources(str(directory), ["sda"])
    g = genesis_of(sources)
    sizing.read_ahead(sources, g, 1.0)
    return sources, g


def opts(**kw):
    return SimpleNamespace(**{"cpus": 0, "no_stall": False, "acc": 1.0, **kw})


def test_one_worker_while_it_keeps_up(tmp_path):
    sources, g = streams(tmp_path, 2000)
    n, info = sizing.choose(sources, 2, g, opts(), cost_ns=10_000)
    assert n == 1 and info["workers"] == 1 and info["chosen_by"] == "rule" and info["start"] == 1
    assert 3900 <= info["peak_iops"] <= 4100 and info["peak_load"] < sizing.LOAD


def test_more_workers_than_cpus_less_one_when_one_cannot_keep_up(tmp_path):
    sources, g = streams(tmp_path, 40000)  # 80 k IOPS in all, at 20 us per IO: 1.6 CPUs
    n, info = sizing.choose(sources, 2, g, opts(), cost_ns=20_000)
    assert n == 2 and info["peak_load"] <= sizing.LOAD
    n, info = sizing.choose(sources, 2, g, opts(), cost_ns=10_000)  # 0.8 of a CPU: one keeps up
    assert n == 1 and info["peak_load"] == pytest.approx(0.8, rel=0.05)
    n, _info = sizing.choose(sources, 8, g, opts(), cost_ns=10_000)
    assert n == 2  # CPUs less one, but never more workers than streams


def test_the_peak_window_counts_not_the_mean(tmp_path):
    sources, g = streams(tmp_path, 1000, burst=(0.5, 8000))  # 8,000 IOs within 10 ms: 80 k IOPS per 100 ms
    n, info = sizing.choose(sources, 2, g, opts(), cost_ns=20_000)  # a mean of 2 k IOPS would need 0.04
    assert n == 2 and info["peak_iops"] >= 80_000  # the most there is: its load stays above the limit


def test_c_and_no_stall(tmp_path):
    sources, g = streams(tmp_path, 40000)
    assert sizing.choose(sources, 2, g, opts(cpus=1), cost_ns=10_000)[0] == 1
    n, info = sizing.choose(sources, 2, g, opts(no_stall=True), cost_ns=None)
    assert n == 1 and info["chosen_by"] == "-N"


def test_window_size_follows_the_peak_rate():
    assert sizing.window_ios(None) == sizing.window_ios(1000) == 65536
    assert sizing.window_ios(100_000) == 131072 and sizing.window_ios(200_000) == 262144
    assert sizing.window_ios(10 ** 7) == sizing.WINDOW_IOS_HIGH
