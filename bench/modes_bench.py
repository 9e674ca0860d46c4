#!/usr/bin/env python3
"""Replay modes against ground truth: does a replay onto another device do what the application did there?

For each workload (a synchronous fio job with think time; PostgreSQL's pgbench on ext4), on a device made of two
loop devices, the upper one (traced, direct IO) over the lower one (over a tmpfs file):

1. run it on the slow device (the lower loop device throttled to ``--slow-iops`` reads and as many writes per
   second by the cgroup v1 blkio controller, for every cgroup) and on the fast one (the same, unthrottled),
   capturing each with ``blkfleet capture``'s events mode (Q and C) and recording it (``blkfleet record``: native
   version 2, with dependencies). The throttle sits below the traced device on purpose: throttled in the traced
   device's own queue, an IO is held before its Q event (blk-throttle comes before the block_bio_queue
   tracepoint), and the capture would show the device's slowness as the application's think time;
2. replay the slow capture onto the fast device and the fast capture onto the slow one (a second such device,
   throttled or not), in each mode: timed, ``-N``, load and dependency, capturing every replay the same way;
3. compare each replay's capture with the capture of the workload itself on that device (the truth): run time
   (first Q to last C), mean IOPS, IOPS per 100 ms (median, p90), Q2C latency (p50, p99) and IOs in flight at
   each Q (mean, p90), and each one's error against the truth; every figure is the median of ``--rounds``
   rounds (the machine's noise moves single runs by tens of per cent);
4. for each dependency replay, split its error three ways: ``--model`` replays the recorded graph with an engine
   that costs nothing and the truth's latencies, per operation and size (the rule's own error); ``model_own_s``
   does the same with the latencies the replay itself met (what the device did differently under the engine;
   shown onto the fast device only: drawn at random, the slow device's throttle queueing would land on every
   chain); the rest, up to the replay's run time, is what the engine added per link (``reaction``);
5. measure the engine's own cost per IO at full speed in each mode (``engine_cost``).

    sudo python3 bench/modes_bench.py [--workloads fio,pgbench] [--rounds 3] [--slow-iops 500] [--cost-ios N]
                                      [--json FILE] [--markdown]

Needs root, fio, losetup, and for pgbench the Debian packages postgresql (initdb, pg_ctl, pgbench as user
postgres) and e2fsprogs.
"""

import argparse
import bisect
import contextlib
import glob
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time

from common import ROOT, captured, workdir

sys.path.insert(0, os.path.join(ROOT, "tests"))

from blkfleet.percpu import find_per_cpu  # noqa: E402
from blkfleet.replayfile import open_replay  # noqa: E402
from blkfleet.replayfile.ops import classify  # noqa: E402
from blkfleet.results.iolog import IOLog  # noqa: E402
from blkfleet.trace.actions import is_complete, is_queue  # noqa: E402
from blkfleet.trace.matching import Matcher  # noqa: E402
from blkfleet.trace.reader import TraceReader  # noqa: E402
from helpers.blkio import BLKIO, skip_reason  # noqa: E402

MODES = {"timed": ["--mode", "timed"], "-N": ["--mode", "timed", "-N"], "load": ["--mode", "load"],
         "dependency": ["--mode", "dependency"]}
BUCKET_NS = 100_000_000
PG_BIN = "/usr/lib/postgresql/15/bin"
DISK = 512 << 20


@contextlib.contextmanager
def stacked(work, name):
    """A slow-or-fast device: (upper loop device, lower loop device), detached afterwards."""
    devices = []
    try:
        backing = os.path.join(work, f"{name}.img")
        with open(backing, "wb") as f:
            f.truncate(DISK)
        for args in (["-f", backing], ["--direct-io=on", "-f", None]):
            if args[-1] is None:
                args[-1] = devices[-1]
            devices.append(subprocess.run(["losetup", "--show", *args], capture_output=True, text=True,
                                          check=True).stdout.strip())
        yield devices[1], devices[0]
    finally:
        for dev in reversed(devices):
            subprocess.run(["losetup", "-d", dev], capture_output=True)


@contextlib.contextmanager
def slow(lower, iops):
    """The lower device throttled to ``iops`` reads and writes per second (root cgroup: every task's IO)."""
    st = os.stat(lower)
    spec = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    files = [os.path.join(BLKIO, f"blkio.throttle.{kind}_iops_device") for kind in ("read", "write")]
    try:
        for path in files:
            with open(path, "w") as f:
                f.write(f"{spec} {iops}\n")
        yield
    finally:
        for path in files:
            with open(path, "w") as f:
                f.write(f"{spec} 0\n")


def blkfleet(*args):
    run = subprocess.run([sys.executable, "-m", "blkfleet", *map(str, args)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"blkfleet {' '.join(map(str, args))}: {run.stderr.strip()}")
    return run


# ----------------------------------------------------------------------------------------------- figures


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else None


def figures(capdir, name, last=None):
    """What a capture says a device did: run time, IOPS, latency and in-flight figures (Qs with data, as btt), and
    each task's gap from the completion of its latest IO to its next Q (``gap_*``: what the dependency rule takes
    as think time, with ``--dep-scope task``; ``gap_after_*``: the p50 after an IO that took under 64 µs or over
    512 µs). ``last``: only the last so many Qs (and the events from the first
    of them on): a replay's own IOs, without the reads of the target check before its start."""
    rows = []
    for path in find_per_cpu(capdir, name, "blktrace"):
        with TraceReader(path) as reader:
            rows += [(r.time, is_complete(r.action), r.sector, r.bytes, r.pid, classify(r.action, r.bytes)[0])
                     for r in reader if r.bytes and (is_queue(r.action) or is_complete(r.action))]
    rows.sort()
    if last is not None:
        queued = [t for t, is_c, _s, _n, _p, _op in rows if not is_c]
        if len(queued) > last:
            cut = queued[len(queued) - last]
            rows = [r for r in rows if r[0] >= cut]
    matcher = Matcher()
    latencies, depths, issues, completions, sectors, tasks, kinds, gaps = [], [], [], [], [], [], [], []
    by_kind = {}  # (op, bytes.bit_length()) -> latencies
    after = {"short": [], "long": []}
    last_c = None
    waited = {}  # task -> (completion time, latency) of its latest IO, until its next Q
    for t, is_c, sector, nbytes, pid, op in rows:
        if is_c:
            done = matcher.completed(sector, nbytes)
            for k in done:
                latencies.append(t - issues[k])
                completions[k] = t
                by_kind.setdefault(kinds[k], []).append(t - issues[k])
                waited[tasks[k]] = (t, t - issues[k])
            if done:
                last_c = t
        else:
            depths.append(matcher.in_flight + 1)
            if pid in waited:
                c, latency = waited.pop(pid)
                gaps.append(t - c)
                if latency < 64_000 or latency > 512_000:
                    after["short" if latency < 64_000 else "long"].append(t - c)
            issues.append(t)
            tasks.append(pid)
            completions.append(None)
            sectors.append(sector)
            kinds.append((op, nbytes.bit_length()))
            matcher.queued(sector, nbytes, len(issues) - 1)
    first = issues[0]
    run_ns = max(last_c or 0, issues[-1]) - first
    buckets = [0] * (run_ns // BUCKET_NS + 1)
    for t in issues:
        buckets[(t - first) // BUCKET_NS] += 1
    per_s = [b * 1e9 / BUCKET_NS for b in buckets]
    return {"ios": len(issues), "run_s": run_ns / 1e9, "iops": len(issues) / (run_ns / 1e9),
            "iops_100ms_p50": pct(per_s, 50), "iops_100ms_p90": pct(per_s, 90),
            "lat_p50_us": pct(latencies, 50) / 1e3, "lat_p99_us": pct(latencies, 99) / 1e3,
            "inflight_mean": statistics.mean(depths), "inflight_p90": pct(depths, 90),
            "gap_p50_us": pct(gaps, 50) / 1e3 if gaps else None,
            "gap_mean_us": statistics.mean(gaps) / 1e3 if gaps else None,
            **{f"gap_after_{k}_p50_us": pct(v, 50) / 1e3 if v else None for k, v in after.items()},
            "unmatched": matcher.unmatched,
            "_qc": list(zip(issues, completions, sectors)), "_lat": latencies, "_lat_by": by_kind}


def recorded_ios(repdir, name):
    """IOs with data in a directory of replay files: what a replay of it (-W) queues on its target."""
    return sum(len(chunk.nbytes) - chunk.nbytes.count(0) for path in find_per_cpu(repdir, name, "replay")
               for chunk in open_replay(path).chunks())


def reaction(repdir, name, iolog, qc):
    """Per dependent IO of a dependency-mode replay, what the engine added to its link of a chain (µs; p50, p90,
    mean): its Q less its latest parent's C less its recorded think time, from the replay's capture; and
    ``engine_*``, the same by the engine's own clock (its submit less its taking the parent's completion less the
    think time), which leaves out the kernel's paths and includes the engine's offset (docs/replay.md). Each
    recorded IO is paired with the engine's log entry of its offset and size (the n-th with the n-th, in submit
    order), then with the first Q of its sector at or after that submit and the C that completed that IO (``qc``:
    (Q, C of the whole IO, sector) per Q of the replay's capture, ``figures``). Only IOs
    whose parents all carry data count (``ios``, ``engine_ios``): a flush has no Q with data to be paired with."""
    ios = []
    for path in find_per_cpu(repdir, name, "replay"):
        for chunk in open_replay(path, timing=True).chunks():
            t = chunk.timing
            ios += [(seq, n, think, [p for p, after in ps if not after], sector)
                    for seq, n, think, ps, sector in zip(t.seqs, chunk.nbytes, t.thinks, t.parents(), chunk.sectors)]
    ios.sort()
    logged = {}
    with IOLog(iolog) as log:
        for _it, _w, start, cols in log.blocks():
            for sub, lat, off, n in zip(cols["submit_ns"], cols["latency_ns"], cols["offset"], cols["nbytes"]):
                logged.setdefault((off // 512, n), []).append((start + sub, start + sub + lat))
    for entries in logged.values():
        entries.sort(reverse=True)
    queued, done = {}, {}  # sector -> Q times (in order); Q time -> the C that completed the whole IO
    for q, c, sector in qc:
        queued.setdefault(sector, []).append(q)
        done[q] = c
    replayed = {}  # seq -> (submit, taken, Q, C)
    for seq, n, _think, _ps, sector in ios:
        entries = logged.get((sector, n)) if n else None  # a flush has no Q with data to pair with
        if not entries:
            continue
        submit, taken = entries.pop()
        qs = queued.get(sector, ())
        k = bisect.bisect_left(qs, submit)
        q = qs[k] if k < len(qs) else None
        replayed[seq] = (submit, taken, q, done.get(q))
    device, engine = [], []
    for seq, _n, think, parents, _sector in ios:
        if seq not in replayed or not parents or not all(p in replayed for p in parents):
            continue
        engine.append((replayed[seq][0] - max(replayed[p][1] for p in parents) - think) / 1e3)
        done = [replayed[p][3] for p in parents]
        if replayed[seq][2] is not None and None not in done:
            device.append((replayed[seq][2] - max(done) - think) / 1e3)

    def us(values, p=None):
        if not values:  # no dependent IO whose parents all showed (a flush parent has no Q with data)
            return None
        return round(statistics.mean(values) if p is None else pct(values, p), 1)

    return {"ios": len(device), "p50": us(device, 50), "p90": us(device, 90), "mean": us(device),
            "engine_ios": len(engine), "engine_p50": us(engine, 50), "engine_mean": us(engine)}


def model_run(repdir, name, latencies, by_kind, seed=1):
    """Run time (s) of a dependency replay of ``repdir`` by an engine that costs nothing: each IO goes once its
    latest completion parent completed plus its recorded think time (without one: its recorded distance after the
    IO before it), and not before its issue parents; its latency is drawn from those of a capture of the
    destination (ns): ``by_kind``, per (op, size class: bytes' bit length), those of IOs of its kind when there
    are at least 20, else ``latencies``, all of them (a flush: no latency of its own in the capture's figures).
    Nothing queues, so this holds for a destination the replay does not saturate: what the dependency rule itself
    gives, apart from the engine."""
    ios = []
    for path in find_per_cpu(repdir, name, "replay"):
        for chunk in open_replay(path, timing=True).chunks():
            t = chunk.timing
            ios += zip(t.seqs, chunk.times, t.thinks, t.parents(), chunk.ops, chunk.nbytes)
    ios.sort()
    draw = random.Random(seed).choice
    pools = {kind: values for kind, values in by_kind.items() if len(values) >= 20}
    issued, completed = {}, {}
    before = None
    for seq, due, think, parents, op, nbytes in ios:
        done = [completed[p] for p, after in parents if not after and p in completed]
        if done:
            at = max(done) + think
        elif before is not None:
            at = issued[before[0]] + due - before[1]
        else:
            at = 0
        at = max([at] + [issued[p] for p, after in parents if after and p in issued])
        issued[seq], completed[seq] = at, at + draw(pools.get((op, nbytes.bit_length()), latencies))
        before = (seq, due)
    return (max(completed.values()) - min(issued.values())) / 1e9


def reaction_parts(iolog, capdir, name):
    """Where a dependent IO's reaction goes (µs, p50): ``submit_to_q``, from the engine's submit instant (its per-IO
    log) to the IO's Q event (the kernel's submission path); ``c_to_seen``, from a completion's C event to the
    engine's taking it (the kernel's completion path, and waking the worker); ``late``, the engine's own delay
    past the moment it decided. IOs are paired with the capture's Qs and Cs by sector, the n-th with the n-th (the
    capture's clock is CLOCK_MONOTONIC, as the log's)."""
    logged = {}
    with IOLog(iolog) as log:
        for _it, _w, start, cols in log.blocks():
            for sub, late, lat, off, n in zip(cols["submit_ns"], cols["lateness_ns"], cols["latency_ns"],
                                              cols["offset"], cols["nbytes"]):
                if n:
                    logged.setdefault(off // 512, []).append((start + sub, start + sub + lat, late))
    for ios in logged.values():
        ios.sort()
    events = []
    for path in find_per_cpu(capdir, name, "blktrace"):
        with TraceReader(path) as reader:
            events += [(r.time, is_complete(r.action), r.sector) for r in reader
                       if r.bytes and (is_queue(r.action) or is_complete(r.action))]
    events.sort()
    queued, to_q, to_seen = {}, [], []
    for t, is_c, sector in events:
        ios = logged.get(sector)
        if ios is None:
            continue
        if not is_c:
            k = len(queued.setdefault(sector, []))
            queued[sector].append(t)
            if k < len(ios):
                to_q.append(t - ios[k][0])
        else:
            k = len(queued.get(sector, ())) - 1
            if 0 <= k < len(ios):
                to_seen.append(ios[k][1] - t)
    late = [io[2] for ios in logged.values() for io in ios]
    def us(values, p):
        return round(pct(values, p) / 1e3, 1) if values else None

    return {"submit_to_q": us(to_q, 50), "c_to_seen": us(to_seen, 50), "c_to_seen_p90": us(to_seen, 90),
            "late": us(late, 50)}


METRICS = ("run_s", "iops", "iops_100ms_p50", "iops_100ms_p90", "lat_p50_us", "lat_p99_us", "inflight_mean",
           "inflight_p90")


def errors(got, truth):
    return {m: round(100 * (got[m] - truth[m]) / truth[m], 1) if truth[m] else None for m in METRICS}


# ----------------------------------------------------------------------------------------------- workloads


def run_fio(dev, args):
    cmd = ["fio", "--name=sync", f"--filename={dev}", "--direct=1", "--ioengine=psync", "--rw=randrw", "--bs=4k",
           "--numjobs=2", "--thinktime=100", f"--number_ios={args.fio_ios}", "--size=256m", "--randrepeat=0",
           "--group_reporting", "--output-format=terse"]
    subprocess.run(cmd, check=True, capture_output=True)


class Postgres:
    """A PostgreSQL cluster on ext4 on the device, initialised with pgbench's tables before the capture."""

    def __init__(self, dev, work, args):
        self.dev, self.args = dev, args
        self.mnt = os.path.join(work, "mnt")
        self.data = os.path.join(self.mnt, "pg")
        self.sock = os.path.join(work, "sock")

    def as_pg(self, *cmd):
        return ["runuser", "-u", "postgres", "--", *cmd]

    def setup(self):
        os.chmod(os.path.dirname(os.path.dirname(self.mnt)), 0o711)  # the work dir: postgres must reach its data
        os.makedirs(self.mnt, exist_ok=True)
        os.chmod(os.path.dirname(self.mnt), 0o711)
        os.makedirs(self.sock, exist_ok=True)
        shutil.chown(self.sock, "postgres", "postgres")
        subprocess.run(["mkfs.ext4", "-q", "-F", self.dev], check=True)
        subprocess.run(["mount", self.dev, self.mnt], check=True)
        os.mkdir(self.data)
        shutil.chown(self.data, "postgres", "postgres")
        subprocess.run(self.as_pg(f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust"), check=True,
                       capture_output=True)

    def start(self):
        opts = f"-k {self.sock} -p 5499 -c listen_addresses='' -c shared_buffers=16MB"
        subprocess.run(self.as_pg(f"{PG_BIN}/pg_ctl", "-D", self.data, "-o", opts, "-w", "-l",
                                  os.path.join(self.sock, "log"), "start"), check=True, capture_output=True)
        self.pgbench("-i", "-q", "-s", str(self.args.pg_scale))
        subprocess.run(["sync"], check=True)

    def pgbench(self, *args):
        subprocess.run(self.as_pg(f"{PG_BIN}/pgbench", "-h", self.sock, "-p", "5499", *args, "postgres"),
                       check=True, capture_output=True)

    def stop(self):
        subprocess.run(self.as_pg(f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"),
                       capture_output=True)
        subprocess.run(["umount", self.mnt], capture_output=True)


def capture_workload(kind, dev, work, args, tag):
    """Run the workload on ``dev``, captured; the capture dir."""
    out = os.path.join(work, f"cap-{kind}-{tag}")
    os.mkdir(out)
    if kind == "fio":
        with captured([dev], out, mode="events"):
            run_fio(dev, args)
        return out
    pg = Postgres(dev, os.path.join(work, f"pg-{tag}"), args)
    try:  # stop() also unmounts what a failed setup mounted
        pg.setup()
        pg.start()
        with captured([dev], out, mode="events"):
            pg.pgbench("-n", "-c", "4", "-t", str(args.pg_transactions))
    finally:
        pg.stop()
    return out


def record(capdir, name, options=(), suffix=""):
    rep = capdir + suffix + "-replay"
    os.mkdir(rep)
    blkfleet("record", "-q", "--timing", *options, "-d", capdir, "-D", rep, name)
    return rep


def replay(repdir, name, target, mode, work, tag):
    """Replay ``repdir`` onto ``target`` in ``mode`` (writes as writes), captured; the replay's figures."""
    out = os.path.join(work, f"rep-{tag}-{mode.strip('-')}")
    os.mkdir(out)
    mapping = os.path.join(work, f"map-{tag}")
    with open(mapping, "w") as f:
        f.write(f"{name} {target}\n")
    iolog = os.path.join(work, f"iolog-{tag}-{mode.strip('-')}") if mode == "dependency" else None
    cmd = [sys.executable, "-m", "blkfleet", "replay", "-d", repdir, "-M", mapping, "-W", *MODES[mode], name,
           *(["--io-log", iolog] if iolog else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with captured([target], out, mode="events"):
        run = subprocess.run(cmd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"replay {mode}: {run.stderr.strip()}")
    got = figures(out, os.path.basename(target), last=recorded_ios(repdir, name))
    qc, latencies, by_kind = got.pop("_qc"), got.pop("_lat"), got.pop("_lat_by")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    got["engine_cpu_us_per_io"] = round(cpu * 1e6 / got["ios"], 1)  # the whole replay command: parent and worker
    if mode == "dependency":
        got["reaction_us"] = reaction(repdir, name, iolog, qc)
        got["reaction_parts_us"] = reaction_parts(iolog, out, os.path.basename(target))
        got["model_own_s"] = round(model_run(repdir, name, latencies, by_kind), 4)
        os.unlink(iolog)
    return got


def one_round(kind, args, work, devices, tag):
    """One round: the truth on both devices, then the 4 modes in both directions; (truth, {(direction, mode):
    figures})."""
    dev, lower, scratch, lower2 = devices
    name = os.path.basename(dev)
    with slow(lower, args.slow_iops):
        slow_cap = capture_workload(kind, dev, work, args, f"slow{tag}")
    fast_cap = capture_workload(kind, dev, work, args, f"fast{tag}")
    truth = {"slow": figures(slow_cap, name), "fast": figures(fast_cap, name)}
    fast_latencies = truth["fast"]["_lat"], truth["fast"]["_lat_by"]
    for t in truth.values():
        del t["_qc"], t["_lat"], t["_lat_by"]
    rule = args.record_options.split()
    reps = {"slow": record(slow_cap, name, rule), "fast": record(fast_cap, name, rule)}
    model = {}
    if args.model:  # the rule alone, onto the fast device, as given and with parents of the same task only
        for scope, options in (("as recorded", None), ("--dep-scope task", rule + ["--dep-scope", "task"])):
            for source in ("slow", "fast"):
                rep = reps[source] if options is None else record(slow_cap if source == "slow" else fast_cap, name,
                                                                  options, suffix="-task")
                model[(scope, f"{source} -> fast")] = model_run(rep, name, *fast_latencies)
        print(f"  {kind}{tag} model " + "; ".join(f"{k[0]} {k[1]} {v:.3f} s" for k, v in model.items()), flush=True)
    got = {}
    for source, dest in (("slow", "fast"), ("fast", "slow")):
        for mode in MODES:
            with slow(lower2, args.slow_iops) if dest == "slow" else contextlib.nullcontext():
                fig = replay(reps[source], name, scratch, mode, work, f"{source}2{dest}{tag}")
            got[(f"{source} -> {dest}", mode)] = fig
            print(f"  {kind}{tag} {source} -> {dest} {mode:10s} " + " ".join(
                f"{m} {fig[m]:.4g} ({errors(fig, truth[dest])[m]:+}%)" for m in METRICS)
                + (f" reaction {fig['reaction_us']} {fig['reaction_parts_us']} model with its own latencies "
                   f"{fig['model_own_s']} s" if "reaction_us" in fig else ""),
                flush=True)
    for p in glob.glob(os.path.join(work, "*")):
        if os.path.isdir(p) and (p.endswith("-replay") or os.path.basename(p).startswith(("cap-", "rep-"))):
            shutil.rmtree(p, ignore_errors=True)
    return truth, got, model


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def median_of(figs):
    """Per metric (and reaction), the median over the rounds."""
    out = {m: statistics.median(f[m] for f in figs) for m in METRICS + ("engine_cpu_us_per_io",) if m in figs[0]}
    out.update({m: _median(f[m] for f in figs) for m in ("ios", "gap_p50_us", "gap_mean_us", "gap_after_short_p50_us",
                                                             "gap_after_long_p50_us") if m in figs[0]})
    if "reaction_us" in figs[0]:
        out["model_own_s"] = round(statistics.median(f["model_own_s"] for f in figs), 4)
        out["reaction_us"] = {k: _median(f["reaction_us"][k] for f in figs) for k in figs[0]["reaction_us"]}
        out["reaction_parts_us"] = {k: _median(f["reaction_parts_us"][k] for f in figs)
                                    for k in figs[0]["reaction_parts_us"]}
    return out


def one_workload(kind, args):
    """``args.rounds`` rounds; the truth and every replay as medians over them, errors against the median truth."""
    with workdir(f"modes-{kind}-") as work, stacked(work, "a") as (dev, lower), stacked(work, "b") as (scratch,
                                                                                                   lower2):
        rounds = [one_round(kind, args, work, (dev, lower, scratch, lower2), f"-{r + 1}") for r in range(args.rounds)]
    truth = {d: median_of([t[d] for t, _g, _m in rounds]) for d in ("slow", "fast")}
    for d in truth:
        truth[d]["run_s_range"] = [min(t[d]["run_s"] for t, _g, _m in rounds),
                                   max(t[d]["run_s"] for t, _g, _m in rounds)]
    rows = []
    for key in rounds[0][1]:
        direction, mode = key
        runs = [g[key]["run_s"] for _t, g, _m in rounds]
        med = median_of([g[key] for _t, g, _m in rounds])
        rows.append({"workload": kind, "direction": direction, "mode": mode, **med,
                     "run_s_range": [min(runs), max(runs)], "error_pct": errors(med, truth[direction.split()[-1]])})
    models = [{"rule": rule, "direction": direction, "run_s": round(statistics.median(m[(rule, direction)]
                                                                                  for _t, _g, m in rounds), 3),
               "error_pct": round(100 * (statistics.median(m[(rule, direction)] for _t, _g, m in rounds)
                                         - truth["fast"]["run_s"]) / truth["fast"]["run_s"], 1)}
              for rule, direction in rounds[0][2]]
    return truth, rows, models


def engine_cost(args):
    """Engine CPU per IO at full speed: a 4 KiB random-read capture at depth 16 (as fast as the loop device
    goes), replayed onto a second device in each mode (timed with ``-N``; load; dependency with ``-x 1000``, so
    that think times vanish): IOPS and CPU µs per IO of the whole replay command (parent and worker)."""
    with workdir("modes-cost-") as work, stacked(work, "a") as (dev, _l), stacked(work, "b") as (target, _l2):
        name = os.path.basename(dev)
        out = os.path.join(work, "cap")
        os.mkdir(out)
        with captured([dev], out, mode="events"):
            subprocess.run(["fio", "--name=fast", f"--filename={dev}", "--direct=1", "--ioengine=libaio",
                            "--iodepth=16", "--rw=randread", "--bs=4k", f"--number_ios={args.cost_ios}",
                            f"--io_size={args.cost_ios * 4}k",
                            "--size=256m", "--norandommap", "--randrepeat=0"], check=True, capture_output=True)
        rep = record(out, name)
        rows = {}
        for mode, extra in (("timed -N", ["-N"]), ("load", ["--mode", "load"]),
                            ("dependency -x 1000", ["--mode", "dependency", "-x", "1000"])):
            mapping = os.path.join(work, "map")
            with open(mapping, "w") as f:
                f.write(f"{name} {target}\n")
            res = os.path.join(work, "res.json")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            blkfleet("replay", "-d", rep, "-M", mapping, "--json", res, *extra, name)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            with open(res) as f:
                total = json.load(f)["total"]
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            rows[mode] = {"ios": total["ios"], "iops": round(total["iops"]),
                          "cpu_us_per_io": round(cpu * 1e6 / total["ios"], 2)}
            print(f"  cost {mode:20s} {rows[mode]}", flush=True)
        if args.chain_ios:
            rows["chain"] = chain_cost(args, work, dev, target)
            print(f"  cost chain {rows['chain']}", flush=True)
        return rows


def chain_cost(args, work, dev, target):
    """What one link of a chain costs: a capture of reads one at a time (fio libaio, depth 1, no think time), each
    issued once the one before completed, replayed in dependency mode onto a second device; the gap from each
    C to the next Q (µs, p50 and mean) in the application's capture and in the replay's."""
    name = os.path.basename(dev)
    app, rep_cap = os.path.join(work, "chain"), os.path.join(work, "chain-replayed")
    os.mkdir(app)
    os.mkdir(rep_cap)
    with captured([dev], app, mode="events"):
        subprocess.run(["fio", "--name=chain", f"--filename={dev}", "--direct=1", "--ioengine=libaio", "--iodepth=1",
                        "--rw=randread", "--bs=4k", f"--number_ios={args.chain_ios}", "--size=256m",
                        "--randrepeat=0"], check=True, capture_output=True)
    rep = record(app, name, ["--dep-scope", "task"])
    mapping = os.path.join(work, "map")
    with open(mapping, "w") as f:
        f.write(f"{name} {target}\n")
    with captured([target], rep_cap, mode="events"):
        blkfleet("replay", "-d", rep, "-M", mapping, "--mode", "dependency", name)
    return {"application": link_gaps(app, name), "replay": link_gaps(rep_cap, os.path.basename(target),
                                                                      last=args.chain_ios)}


def link_gaps(capdir, name, last=None):
    """The gap from each completion to the next issue (µs; p50, mean) in a capture of one IO at a time (``last``:
    only the last so many IOs)."""
    events = []
    for path in find_per_cpu(capdir, name, "blktrace"):
        with TraceReader(path) as reader:
            events += [(r.time, is_complete(r.action)) for r in reader
                       if r.bytes and (is_queue(r.action) or is_complete(r.action))]
    events.sort()
    if last is not None:
        queued = [t for t, is_c in events if not is_c]
        events = [e for e in events if e[0] >= queued[max(len(queued) - last, 0)]]
    gaps, completed = [], None
    for t, is_c in events:
        if is_c:
            completed = t
        elif completed is not None:
            gaps.append((t - completed) / 1e3)
            completed = None
    return {"p50": round(pct(gaps, 50), 1), "mean": round(statistics.mean(gaps), 1)}


def _err(value, truth):
    return round(100 * (value - truth) / truth, 1)


def _truth_text(t):
    return (f"{t['run_s']:.2f} s ({t['run_s_range'][0]:.2f}–{t['run_s_range'][1]:.2f}), {t['ios']:.0f} IOs, "
            f"{t['iops']:.0f} IOPS, latency p50 {t['lat_p50_us']:.0f} µs, in flight {t['inflight_mean']:.2f}")


def markdown(results):
    lines = []
    for kind, (truth, rows, models) in results.items():
        lines.append(
            f"\n{kind}, the truth (median of the rounds; run time range): slow {_truth_text(truth['slow'])}; fast "
            f"{_truth_text(truth['fast'])}\n\n"
            f"{kind}, each task's gap from the completion of its latest IO to its next Q (the think time the "
            f"dependency rule records): slow p50 {truth['slow']['gap_p50_us']} µs, mean {truth['slow']['gap_mean_us']}"
            f" µs; fast p50 {truth['fast']['gap_p50_us']} µs, mean {truth['fast']['gap_mean_us']} µs; p50 after an IO "
            f"under 64 µs / over 512 µs: slow {truth['slow']['gap_after_short_p50_us']} / "
            f"{truth['slow']['gap_after_long_p50_us']} µs, fast {truth['fast']['gap_after_short_p50_us']} / "
            f"{truth['fast']['gap_after_long_p50_us']} µs\n")
        lines.append("| direction | mode | run s (err %) | IOPS (err %) | IOPS/100 ms p50 / p90 (err %) | "
                     "latency p50 / p99 µs (err %) | in flight mean / p90 (err %) | engine CPU µs/IO |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in rows:
            e = r["error_pct"]
            lines.append(
                f"| {r['direction']} | {r['mode']} | {r['run_s']:.2f} ({e['run_s']:+}) | {r['iops']:.0f} "
                f"({e['iops']:+}) | {r['iops_100ms_p50']:.0f} / {r['iops_100ms_p90']:.0f} ({e['iops_100ms_p50']:+} /"
                f" {e['iops_100ms_p90']:+}) | {r['lat_p50_us']:.0f} / {r['lat_p99_us']:.0f} ({e['lat_p50_us']:+} / "
                f"{e['lat_p99_us']:+}) | {r['inflight_mean']:.2f} / {r['inflight_p90']} ({e['inflight_mean']:+} / "
                f"{e['inflight_p90']:+}) | {r['engine_cpu_us_per_io']:.1f} |")
        for r in rows:
            if "reaction_us" in r:
                lines.append(f"\n{kind} {r['direction']} dependency: the engine's reaction per dependent IO (its Q "
                             "less its latest parent's C less its think time; over "
                             f"{r['reaction_us']['ios']} IOs whose parents all carry data) p50 "
                             f"{r['reaction_us']['p50']} µs, p90 {r['reaction_us']['p90']} µs, mean "
                             f"{r['reaction_us']['mean']} µs (by the engine's own clock, its offset taken off: "
                             f"p50 {r['reaction_us']['engine_p50']} µs, mean {r['reaction_us']['engine_mean']} µs); "
                             "of which, at the median, the kernel's submission "
                             f"path {r['reaction_parts_us']['submit_to_q']} µs, its completion path and the worker's "
                             f"wake-up {r['reaction_parts_us']['c_to_seen']} µs (p90 "
                             f"{r['reaction_parts_us']['c_to_seen_p90']}), the engine's delay past its decided "
                             f"moment {r['reaction_parts_us']['late']} µs"
                             + (f". The rule with the replay's own latencies (model_run): {r['model_own_s']:.3f} s, "
                                f"{_err(r['model_own_s'], truth['fast']['run_s']):+} % against the truth"
                                if r["direction"].endswith("fast") else ""))
        if models:
            lines.append(f"\n{kind}, the dependency rule alone (model_run: an engine that costs nothing, latencies "
                         "drawn from the fast truth's IOs of the same operation and size class; median of the "
                         "rounds):\n")
            lines.append("| rule | direction | run s | error against the fast truth % |\n|---|---|---|---|")
            lines += [f"| {m['rule']} | {m['direction']} | {m['run_s']:.3f} | {m['error_pct']:+} |" for m in models]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="fio,pgbench")
    ap.add_argument("--slow-iops", type=int, default=500, help="the slow device's read and write IOPS limit")
    ap.add_argument("--fio-ios", type=int, default=2000, help="IOs per fio job (2 jobs)")
    ap.add_argument("--pg-scale", type=int, default=5)
    ap.add_argument("--pg-transactions", type=int, default=300, help="per client (4 clients)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (truth and replays), medians reported")
    ap.add_argument("--record-options", default="", metavar="OPTIONS",
                    help="blkfleet record options for the captures (the dependency rule: '--dep-window 500000')")
    ap.add_argument("--cost-ios", type=int, default=200000, help="IOs of the engine-cost capture (0: skip it)")
    ap.add_argument("--chain-ios", type=int, default=2000,
                    help="IOs of the engine-cost chain (one at a time; 0: skip it)")
    ap.add_argument("--model", action="store_true",
                    help="also what the dependency rule gives onto the fast device with an engine that costs nothing "
                    "(model_run), as recorded and with --dep-scope task")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown at the end")
    args = ap.parse_args()
    reason = skip_reason()
    if reason:
        sys.exit(f"modes_bench: {reason}")
    results = {}
    t0 = time.monotonic()
    for kind in filter(None, args.workloads.split(",")):
        print(f"{kind}:", flush=True)
        results[kind] = one_workload(kind, args)
    cost = engine_cost(args) if args.cost_ios else None
    print(f"({time.monotonic() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"workloads": {k: {"truth": t, "rows": r, "model": m} for k, (t, r, m) in results.items()},
                       "engine_cost": cost}, f, indent=1)
    if args.markdown:
        print(markdown(results))
        if cost:
            print("\n| mode | IOs | IOPS | engine CPU µs/IO |\n|---|---|---|---|")
            for mode, r in cost.items():
                if mode != "chain":
                    print(f"| {mode} | {r['ios']} | {r['iops']} | {r['cpu_us_per_io']} |")
            if "chain" not in cost:
                return
            app, rep = cost["chain"]["application"], cost["chain"]["replay"]
            print(f"\nA chain of {args.chain_ios} reads one at a time, from each completion to the next issue: the "
                  f"application (fio, libaio) p50 {app['p50']} µs, mean {app['mean']} µs; its dependency replay "
                  f"p50 {rep['p50']} µs, mean {rep['mean']} µs")


if __name__ == "__main__":
    main()
