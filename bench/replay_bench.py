#!/usr/bin/env python3
"""Replay fidelity and speed, side by side in one run: blkfleet vs the C btreplay vs fio's replay.

As root. Each workload is captured for real (fio on a tmpfs-backed loop device, ftrace blk tracer), converted
(blkfleet native; Debian btrecord for btreplay; blkparse -d for fio), replayed onto a second loop device while
that device is traced, and each replay capture is compared with the original by ``blkfleet compare``
(issue-time error, inter-arrival error, IOPS per 100 ms error, span ratio). Then the as-fast-as-possible
rate (blkfleet -N vs fio on the same device) and blkfleet's CPU time per IO.

    sudo python3 bench/replay_bench.py [--seconds 5] [--json FILE]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from common import captured, gnu_time, loop_devices, workdir

BTRECORD = shutil.which("btrecord") or "/usr/sbin/btrecord"
BTREPLAY = shutil.which("btreplay") or "/usr/sbin/btreplay"
DISK = 256 << 20
EXTRA_DEPTHS = os.environ.get("BENCH_DEPTHS", "").split()

WORKLOADS = {
    "random-40k": ["--rw=randread", "--bs=4k", "--iodepth=16", "--rate_iops=40000"],
    "bursty": ["--rw=randread", "--bs=4k", "--iodepth=32", "--thinktime=20000", "--thinktime_blocks=2000"],
}
MORE_WORKLOADS = {  # --workloads all
    "mixed-2jobs": ["--rw=randrw", "--rwmixread=70", "--bsrange=4k-64k", "--iodepth=8", "--numjobs=2",
                    "--rate_iops=8000"],
    "sequential-1m": ["--rw=read", "--bs=1m", "--iodepth=4", "--rate_iops=1500"],
    "sparse-qd1": ["--rw=randread", "--bs=4k", "--iodepth=1", "--rate_iops=300"],
    "full-speed-qd32": ["--rw=randread", "--bs=4k", "--iodepth=32"],
}


def fio(device, seconds, extra):
    cmd = ["fio", "--name=w", f"--filename={device}", "--direct=1", "--ioengine=libaio", "--time_based",
           f"--runtime={seconds}", "--randrepeat=1", "--norandommap", "--output-format=json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    jobs = json.loads(out[out.index("{"):])["jobs"]
    return (sum(j["read"]["total_ios"] + j["write"]["total_ios"] for j in jobs),
            sum(j["read"]["iops"] + j["write"]["iops"] for j in jobs))


def blkfleet(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "blkfleet", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def compare(orig, replay_dir, orig_dev, replay_dev, reads_for_writes=True):
    args = ["compare", orig, replay_dir, "--device", orig_dev, "--replay-device", replay_dev, "--json", "-"]
    run = blkfleet(*args, *(["--reads-for-writes"] if reads_for_writes else []))
    if run.returncode:
        return {"error": run.stderr.strip()}
    return json.loads(run.stdout)["result"]


def replay_blkfleet(src, dev_a, dev_b, work, tag, extra=(), engine=None):
    """``engine``: the ``engine`` directory of another blkfleet to run instead of this one (a baseline)."""
    env = {**os.environ, "PYTHONPATH": engine} if engine else None
    mapfile = os.path.join(work, "map")
    with open(mapfile, "w") as f:
        f.write(f"{os.path.basename(dev_a)} {dev_b}\n")
    res = os.path.join(work, f"{tag}.json")
    cap = os.path.join(work, f"cap-{tag}")
    with captured([dev_b], cap):
        proc, wall, cpu, _rss = gnu_time([sys.executable, "-m", "blkfleet", "replay", "-d", src, "-M", mapfile,
                                          "--json", res, *extra, os.path.basename(dev_a)], env=env)
    if proc.returncode:
        raise SystemExit(f"blkfleet replay failed: {proc.stderr.strip()}")
    with open(res) as f:
        doc = json.load(f)
    return cap, {"wall_s": wall, "cpu_s": cpu, "ios": doc["total"]["ios"], "results": doc["total"]}


def replay_btreplay(c_dir, dev_b, work, timeout):
    """The C btreplay on btrecord's files renamed for the target; hard timeout with SIGKILL (it can hang)."""
    name = os.path.basename(dev_b)
    src = os.path.join(work, "btreplay-in")
    os.makedirs(src)
    for f in sorted(os.listdir(c_dir)):
        shutil.copy(os.path.join(c_dir, f), os.path.join(src, f.replace(f.split(".")[0], name, 1)))
    cap = os.path.join(work, "cap-btreplay")
    hung = False
    with captured([dev_b], cap):
        proc = subprocess.Popen([BTREPLAY, "-d", src, name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            hung = True
    return cap, {"hung_killed": hung, "exit": proc.returncode}


def replay_fio(orig_cap, dev_a, dev_b, work):
    os.makedirs(work, exist_ok=True)
    merged = os.path.join(work, "merged.bin")
    subprocess.run(["blkparse", "-q", "-i", os.path.basename(dev_a), "-D", orig_cap, "-d", merged, "-o", "/dev/null"],
                   check=True)
    cap = os.path.join(work, "cap-fio")
    with captured([dev_b], cap):
        proc, wall, cpu, _rss = gnu_time(["fio", "--name=replay", f"--read_iolog={merged}",
                                          f"--replay_redirect={dev_b}", "--direct=1", "--ioengine=libaio",
                                          "--output-format=json"], stdout=subprocess.DEVNULL)
    return cap, {"wall_s": wall, "exit": proc.returncode}


def figures(cmp):
    if "error" in cmp:
        return {"error": cmp["error"]}
    keys = {
        "issue_p50_us": ("issue_time_error_us", "p50"), "issue_p99_us": ("issue_time_error_us", "p99"),
        "iat_p50_us": ("inter_arrival_error_us", "p50"), "iat_p99_us": ("inter_arrival_error_us", "p99"),
    }
    out = {k: cmp.get(a, {}).get(b) for k, (a, b) in keys.items()}
    around = cmp.get("issue_time_error_around_offset_us") or {}
    out["offset_us"] = cmp.get("issue_time_offset_us")
    out["around_offset_p99_us"] = around.get("p99")
    out["iops_error_pct"] = cmp.get("iops", {}).get("mape_pct")
    out["span_ratio"] = cmp.get("span_ratio")
    out["matched"] = cmp.get("matched")
    out["original"] = cmp.get("original", {}).get("ios")
    return out


def run_workload(name, extra, seconds, work, dev_a, dev_b, cpus):
    orig = os.path.join(work, f"{name}-orig")
    with captured([dev_a], orig):
        ios, iops = fio(dev_a, seconds, extra)
    a = os.path.basename(dev_a)
    native = os.path.join(work, f"{name}-native")
    c_files = os.path.join(work, f"{name}-c")
    os.makedirs(native)
    os.makedirs(c_files)
    assert blkfleet("record", "-q", "-d", orig, "-D", native, a).returncode == 0
    subprocess.run([BTRECORD, "-d", orig, "-D", c_files, a], check=True)
    rows = {}
    variants = [("blkfleet", ()), ("blkfleet --realtime off", ("--realtime", "off"))] + [
        (f"blkfleet depth {d}", ("--depth", d)) for d in EXTRA_DEPTHS]
    if cpus > 2:
        variants.append(("blkfleet -c 1", ("-c", "1")))
    for label, extra_args in variants:
        cap, info = replay_blkfleet(native, dev_a, dev_b, work, f"{name}-{label.replace(' ', '')}", extra_args)
        rows[label] = {**figures(compare(orig, cap, a, os.path.basename(dev_b))), "cpu_us_per_io":
                       round(info["cpu_s"] / max(info["ios"], 1) * 1e6, 2), "ios": info["ios"]}
    cap, info = replay_btreplay(c_files, dev_b, os.path.join(work, f"{name}-bt"), timeout=seconds * 3 + 20)
    rows["btreplay"] = {**figures(compare(orig, cap, a, os.path.basename(dev_b))), **info}
    cap, info = replay_fio(orig, dev_a, dev_b, os.path.join(work, f"{name}-fio"))
    rows["fio replay"] = {**figures(compare(orig, cap, a, os.path.basename(dev_b), reads_for_writes=False)), **info}
    return {"workload": name, "fio_ios": ios, "fio_iops": round(iops), "replays": rows}


def afap(work, dev_a, dev_b, seconds):
    """As fast as possible on dev_b: blkfleet -N over a random-read trace vs fio at the same depth."""
    orig = os.path.join(work, "afap-orig")
    with captured([dev_a], orig):
        fio(dev_a, seconds, ["--rw=randread", "--bs=4k", "--iodepth=32"])
    native = os.path.join(work, "afap-native")
    os.makedirs(native)
    a = os.path.basename(dev_a)
    assert blkfleet("record", "-q", "-d", orig, "-D", native, a).returncode == 0
    out = {}
    variants = (("blkfleet -N", ("-N", "--depth", "32")), ("blkfleet -N -c 1", ("-N", "--depth", "32", "-c", "1")))
    for label, extra in variants:
        mapfile = os.path.join(work, "map")
        with open(mapfile, "w") as f:
            f.write(f"{a} {dev_b}\n")
        res = os.path.join(work, "afap.json")
        proc, wall, cpu, _ = gnu_time([sys.executable, "-m", "blkfleet", "replay", "-d", native, "-M", mapfile,
                                       "--json", res, *extra, a])
        with open(res) as f:
            total = json.load(f)["total"]
        out[label] = {"iops": total["iops"], "ios": total["ios"], "cpu_us_per_io": round(cpu / total["ios"] * 1e6, 2)}
    _ios, fio_iops = fio(dev_b, seconds, ["--rw=randread", "--bs=4k", "--iodepth=32"])
    out["fio (libaio, depth 32)"] = {"iops": round(fio_iops)}
    for label in list(out):
        if label.startswith("blkfleet"):
            out[label]["ratio_to_fio"] = round(out[label]["iops"] / fio_iops, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5, help="length of each captured workload (default 5)")
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS),
                    choices=list(WORKLOADS) + list(MORE_WORKLOADS) + ["all"],
                    help="default: random-40k bursty; 'all' adds " + ", ".join(MORE_WORKLOADS))
    ap.add_argument("--json")
    ap.add_argument("--no-afap", action="store_true", help="skip the as-fast-as-possible comparison")
    args = ap.parse_args()
    catalogue = {**WORKLOADS, **MORE_WORKLOADS}
    names = list(catalogue) if "all" in args.workloads else args.workloads
    if os.geteuid():
        raise SystemExit("replay_bench.py needs root (loop devices, tracefs)")
    cpus = len(os.sched_getaffinity(0))
    report = {"cpus": cpus, "workloads": [], "afap": None}
    with workdir("blkfleet-rbench-") as work, loop_devices(work, [DISK, DISK]) as (dev_a, dev_b):
        for name in names:
            wdir = os.path.join(work, name)
            os.makedirs(wdir)
            report["workloads"].append(run_workload(name, catalogue[name], args.seconds, wdir, dev_a, dev_b, cpus))
        if not args.no_afap:
            report["afap"] = afap(work, dev_a, dev_b, args.seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    for w in report["workloads"]:
        print(f"\n{w['workload']}: {w['fio_ios']} IOs captured ({w['fio_iops']} IOPS)")
        print(f"{'replayer':<16}{'issue p50':>10}{'issue p99':>11}{'offset':>9}{'p99 @off':>9}{'IAT p50':>9}"
              f"{'IAT p99':>9}{'IOPS err %':>11}{'span':>8}{'matched':>9}")
        for label, r in w["replays"].items():
            if "error" in r:
                print(f"{label:<16} error: {r['error']}")
                continue
            r = {k: (v if v is not None else float("nan")) for k, v in r.items()}
            print(f"{label:<16}{r['issue_p50_us']:>10.0f}{r['issue_p99_us']:>11.0f}{r['offset_us']:>9.0f}"
                  f"{r['around_offset_p99_us']:>9.0f}{r['iat_p50_us']:>9.0f}"
                  f"{r['iat_p99_us']:>9.0f}{r['iops_error_pct']:>11.2f}{r['span_ratio']:>8.3f}"
                  f"{r['matched']:>9}" + (" (killed: hung)" if r.get("hung_killed") else ""))
        ours, bt = w["replays"]["blkfleet"], w["replays"]["btreplay"]
        if "error" not in ours and "error" not in bt and ours["issue_p99_us"] and ours["iops_error_pct"] is not None:
            print(f"btreplay/blkfleet: issue p99 {bt['issue_p99_us'] / ours['issue_p99_us']:.1f}x, IOPS error "
                  f"{bt['iops_error_pct'] / max(ours['iops_error_pct'], 1e-9):.1f}x; blkfleet CPU "
                  f"{ours['cpu_us_per_io']} us/IO")
    if report["afap"]:
        print("\nas fast as possible:")
    for label, r in (report["afap"] or {}).items():
        more = f"  ({r['ratio_to_fio']:.2f} x fio, {r['cpu_us_per_io']} us CPU/IO)" if "ratio_to_fio" in r else ""
        print(f"  {label:<24}{r['iops']:>10.0f} IOPS{more}")


if __name__ == "__main__":
    main()
