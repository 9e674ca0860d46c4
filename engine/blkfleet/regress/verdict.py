"""Regression verdicts: candidate runs against a named baseline, per host and device and metric.

Samples. For every (run, device) the samples of a metric are the device's per-iteration figures
(``devices[DEV].per_iteration``; documents without them: the run's ``per_iteration`` when the run replayed that one
device only, else one sample per run, the device's figures over all iterations).
Interrupted runs are left out (their last iteration is partial). Baseline and candidate samples are the union
over their runs: several runs of several iterations each.

Test. Default: Welch's t-test on the samples. Each sample is itself a statistic over thousands of IOs (an
iteration's IOPS, or its latency p99), which is close to normally distributed (central limit theorem; sample
quantiles are asymptotically normal too), so a t-test is appropriate even for latency; Welch's form does not
assume equal variances (a degraded device is often noisier as well). And it has power with the few samples a
nightly run gives (3 iterations against 10-15 baseline iterations), where Mann-Whitney's rank test cannot reach
p < 0.05 at all with 3 against 3 samples. ``--test mann-whitney`` (normal approximation, tie and continuity
corrections) suits many samples with outliers; its effect size is the change of the medians, not the means. A
comparison whose test cannot reach ``alpha`` even for completely separated samples is "insufficient".

Verdict per metric (``change`` = candidate centre vs baseline centre, in percent of the baseline centre):
- ``insufficient``: fewer than ``min_samples`` samples on a side (default 3), or no figures;
- ``regression``: the change is in the bad direction (lower IOPS or MB/s, higher latency or lateness), larger than
  the tolerance (relative, and the absolute floor where one is set), and significant (p < alpha);
- ``improvement``: the same in the good direction;
- ``pass``: otherwise (a change within tolerance, or not significant).

Default tolerances (``DEFAULT_TOLERANCES``), justified:
- IOPS and MB/s, 5 %: in timed mode the replay's IOPS is set by the trace and barely moves (run-to-run noise well
  under 1 % on a quiet device); a device that can no longer keep up loses several percent at once. In no-stall
  mode IOPS is the device's throughput, whose noise on a quiet device is 1-3 %: 5 % is above it.
- latency p50 and p99, 10 %: per-iteration latency percentiles vary more than throughput (a few percent at p50,
  more at p99 through caches and background work); 10 % is the smallest change worth a ticket.
- lateness p99, 20 % and at least 50 µs: lateness is the replayer's own scheduling delay, dominated by CPU
  scheduling noise and small in absolute terms (tens of µs), so a relative threshold alone would flag noise;
  the 50 µs floor is 1/20 of the default late threshold (1 ms).
"""

import math

from ..codes import INSUFFICIENT_SAMPLES as EXIT_INSUFFICIENT
from ..codes import REGRESSION as EXIT_REGRESSION
from ..codes import SUCCESS as EXIT_PASS
from ..errors import BlkfleetError
from ..numtext import number
from ..stats import mean, median, variance
from .significance import TESTS, mann_whitney

FORMAT = "blkfleet-regress/1"


class Metric:
    def __init__(self, name, label, unit, path, higher_is_better, tolerance_pct, abs_tolerance=0.0):
        self.name = name
        self.label = label
        self.unit = unit
        self.path = path
        self.higher_is_better = higher_is_better
        self.tolerance_pct = tolerance_pct
        self.abs_tolerance = abs_tolerance

    def value(self, figures):
        v = figures
        for key in self.path:
            if not isinstance(v, dict):
                return None
            v = v.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


METRICS = {m.name: m for m in (
    Metric("iops", "IOPS", "IO/s", ("iops",), True, 5.0),
    Metric("mb_s", "MB/s", "MB/s", ("mb_s",), True, 5.0),
    Metric("latency_p50", "latency p50", "µs", ("latency_us", "p50"), False, 10.0),
    Metric("latency_p99", "latency p99", "µs", ("latency_us", "p99"), False, 10.0),
    Metric("lateness_p99", "lateness p99", "µs", ("lateness_us", "p99"), False, 20.0, 50.0),
)}
DEFAULT_TOLERANCES = {name: m.tolerance_pct for name, m in METRICS.items()}
DEFAULT_ABS_TOLERANCES = {name: m.abs_tolerance for name, m in METRICS.items()}


def samples(doc, device, metric):
    """(values, source) of one metric for one device of a results document (see the module docstring)."""
    devices = doc.get("devices") or {}
    if device not in devices:
        return [], "missing"
    iterations = devices[device].get("per_iteration")
    if not iterations and len(devices) == 1:
        iterations = doc.get("per_iteration")
    if iterations:
        values = [metric.value(it) for it in iterations if it.get("ios", 1)]
        return [v for v in values if v is not None], "per-iteration"
    v = metric.value(devices[device])
    return ([v] if v is not None else []), "per-run"


def _describe(xs):
    if not xs:
        return {"n": 0, "mean": None, "sd": None, "median": None, "cv_pct": None, "min": None, "max": None}
    m = mean(xs)
    sd = math.sqrt(variance(xs))
    return {"n": len(xs), "mean": m, "sd": sd, "median": median(xs),
            "cv_pct": (sd / abs(m) * 100) if m else None, "min": min(xs), "max": max(xs)}


def compare_metric(metric, base, cand, test="welch", alpha=0.05, min_samples=3, tolerance_pct=None,
                   abs_tolerance=None):
    """The verdict dict of one metric: baseline samples ``base`` against candidate samples ``cand``."""
    tol = metric.tolerance_pct if tolerance_pct is None else tolerance_pct
    abs_tol = metric.abs_tolerance if abs_tolerance is None else abs_tolerance
    out = {"metric": metric.name, "label": metric.label, "unit": metric.unit,
           "better": "higher" if metric.higher_is_better else "lower",
           "baseline": _describe(base), "candidate": _describe(cand), "tolerance_pct": tol,
           "abs_tolerance": abs_tol, "test": test, "statistic": None, "df": None, "p": None, "change": None,
           "change_pct": None, "significant": None, "verdict": "insufficient", "reason": None}
    need = max(min_samples, 2 if test == "welch" else 1)
    if len(base) < need or len(cand) < need:
        out["reason"] = f"too few samples ({len(base)} baseline, {len(cand)} candidate; at least {need} each)"
        return out
    if test == "mann-whitney":
        best = mann_whitney(list(range(len(base))), list(range(len(base), len(base) + len(cand)))).p
        if best >= alpha:
            out["reason"] = (f"Mann-Whitney cannot reach p < {alpha} with {len(base)} and {len(cand)} samples "
                             f"(best possible p {best:.3g}): more samples, or --test welch")
            return out
        centre_b, centre_c = median(base), median(cand)
    else:
        centre_b, centre_c = mean(base), mean(cand)
    result = TESTS[test](base, cand)
    diff = centre_c - centre_b
    change_pct = diff / abs(centre_b) * 100 if centre_b else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    significant = result.p < alpha
    bad = diff < 0 if metric.higher_is_better else diff > 0
    beyond = abs(change_pct) > tol and abs(diff) > abs_tol
    out.update(statistic=result.statistic, df=result.df, p=result.p, change=diff,
               change_pct=change_pct if math.isfinite(change_pct) else None, significant=significant)
    if beyond and significant:
        out["verdict"] = "regression" if bad else "improvement"
        out["reason"] = (f"{'worse' if bad else 'better'} by {abs(change_pct):.1f} % (> {tol:g} %), "
                         f"p = {result.p:.3g} < {alpha:g}")
    else:
        out["verdict"] = "pass"
        why = []
        if not beyond:
            why.append(f"change {change_pct:+.1f} % within tolerance {tol:g} %"
                       + (f" / {abs_tol:g} {metric.unit}" if abs_tol else ""))
        if not significant:
            why.append(f"not significant (p = {result.p:.3g} >= {alpha:g})")
        out["reason"] = "; ".join(why)
    return out


def _group_rows(rows):
    """Rows by (host, device, replay mode): runs of different modes are different workloads."""
    groups = {}
    for r in rows:
        groups.setdefault((r["host"], r["device"], r.get("mode", "timed")), []).append(r)
    return groups


def select_candidates(store, baseline_rows, run_ids=None, last=None, host=None, device=None):
    """Candidate (run, device) rows: ``run_ids``, or the ``last`` N (default 1) rows of each baseline (host,
    device) stored after the baseline's newest run there. A run older than the baseline (``baseline set --last``
    leaves out the first runs) is a candidate only when named: judging the past against a later baseline answers
    no question anyone asked."""
    if run_ids is not None:
        rows = store.rows(run_ids=run_ids, host=host, device=device)
        known = {r["run_id"] for r in store.rows(run_ids=run_ids)}
        missing = [str(i) for i in run_ids if int(i) not in known]
        if missing:
            raise BlkfleetError(f"no run {', '.join(missing)} in {store.path}", code="not_found")
        return rows
    last = 1 if last is None else last
    if last < 1:
        raise BlkfleetError("--last must be at least 1")
    out = []
    for (h, d, m), members in _group_rows(baseline_rows).items():
        if (host and h != host) or (device and device != d):
            continue
        newest = max(_order(r) for r in members)
        rows = [r for r in store.rows(host=h, device=d, mode=m) if r["device"] == d and _order(r) > newest]
        out += rows[-last:]
    return out


def _order(row):
    """The store's order of runs (``Store.rows``: oldest first)."""
    return (row["started"] or "", row["run_id"])


def evaluate(store, baseline, run_ids=None, last=None, metrics=None, tolerances=None, abs_tolerances=None,
             test="welch", alpha=0.05, min_samples=3, host=None, device=None):
    """The regression result (a JSON-ready dict) of candidate runs against baseline ``baseline``."""
    if test not in TESTS:
        raise BlkfleetError(f"unknown test {test!r} (expected one of {', '.join(TESTS)})")
    if not 0 < alpha < 1:
        raise BlkfleetError(f"alpha must be within (0, 1), not {alpha}")
    names = list(metrics or METRICS)
    unknown = [m for m in names + list(tolerances or {}) + list(abs_tolerances or {}) if m not in METRICS]
    if unknown:
        raise BlkfleetError(f"unknown metric {unknown[0]!r} (expected one of {', '.join(METRICS)})")
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    abs_tolerances = {**DEFAULT_ABS_TOLERANCES, **(abs_tolerances or {})}
    base_rows = [r for r in store.baseline(baseline)
                 if (not host or r["host"] == host) and (not device or device in (r["device"], r["target"]))]
    cand_rows = select_candidates(store, base_rows, run_ids, last, host, device)
    warnings = []
    if not cand_rows:
        warnings.append("no candidate runs (none stored after the baseline's, or none match)")
    docs = {}

    def doc_of(run_id):
        if run_id not in docs:
            docs[run_id] = store.get(run_id).doc
        return docs[run_id]

    def usable(rows, what):
        kept = []
        for r in rows:
            if doc_of(r["run_id"]).get("interrupted"):
                warnings.append(f"{what} run {r['run_id']} ({r['host']} {r['device']}) was interrupted: left out")
            else:
                kept.append(r)
        return kept

    base_groups = _group_rows(usable(base_rows, "baseline"))
    cand_groups = _group_rows(usable(cand_rows, "candidate"))
    overlap = {(r["run_id"], r["device"]) for g in base_groups.values() for r in g} & {
        (r["run_id"], r["device"]) for g in cand_groups.values() for r in g}
    if overlap:
        warnings.append("runs both in the baseline and among the candidates: "
                        + ", ".join(f"{i}:{d}" for i, d in sorted(overlap)))
    groups = []
    for key in sorted(cand_groups):
        h, d, mode = key
        crows, brows = cand_groups[key], base_groups.get(key, [])
        group = {"host": h, "device": d, "mode": mode, "targets": sorted({r["target"] or "" for r in crows}),
                 "baseline_runs": [r["run_id"] for r in brows], "candidate_runs": [r["run_id"] for r in crows],
                 "sample_source": None, "metrics": []}
        if not brows:
            others = sorted(m for (bh, bd, m) in base_groups if (bh, bd) == (h, d))
            warnings.append(f"{h} {d}: not in baseline {baseline!r}" + (
                f" in mode {mode} (the baseline's runs were replayed in {', '.join(others)}; modes are not compared)"
                if others else ""))
        sources = set()
        bdoc = doc_of(brows[0]["run_id"]) if brows else None
        for r in crows if bdoc is not None else ():
            cdoc = doc_of(r["run_id"])
            for field in ("acc_factor", "input"):
                if bdoc.get(field) != cdoc.get(field):
                    warnings.append(f"{h} {d}: candidate run {r['run_id']} differs from the baseline in {field} "
                                    f"({cdoc.get(field)!r} vs {bdoc.get(field)!r}): not the same workload?")
        for name in names:
            metric = METRICS[name]
            base, cand = [], []
            for rows, into in ((brows, base), (crows, cand)):
                for r in rows:
                    values, source = samples(doc_of(r["run_id"]), r["device"], metric)
                    into += values
                    sources.add(source)
            group["metrics"].append(compare_metric(metric, base, cand, test, alpha, min_samples,
                                                   tolerances[name], abs_tolerances[name]))
        group["sample_source"] = "+".join(sorted(sources - {"missing"})) or None
        groups.append(group)

    counts = {v: 0 for v in ("regression", "insufficient", "improvement", "pass")}
    for g in groups:
        for m in g["metrics"]:
            counts[m["verdict"]] += 1
    if counts["regression"]:
        verdict, code = "regression", EXIT_REGRESSION
    elif counts["insufficient"] or not groups:
        verdict, code = "insufficient", EXIT_INSUFFICIENT
    elif counts["improvement"]:
        verdict, code = "improvement", EXIT_PASS
    else:
        verdict, code = "pass", EXIT_PASS
    return {"format": FORMAT, "baseline": baseline, "test": test, "alpha": alpha, "min_samples": min_samples,
            "metrics": names, "tolerances_pct": {n: tolerances[n] for n in names},
            "abs_tolerances": {n: abs_tolerances[n] for n in names}, "verdict": verdict, "exit_code": code,
            "counts": counts, "groups": groups, "warnings": warnings}


def _side(d):
    if not d["n"]:
        return "– (0)"
    mean_, sd = (number(d[k], missing="–", grouped=True) for k in ("mean", "sd"))
    return f"{mean_} ± {sd} ({d['n']})"


VERDICT_MARK = {"regression": "**REGRESSION**", "improvement": "improvement", "pass": "pass",
                "insufficient": "insufficient"}


def metric_label(m):
    """A metric's name in tables, with its unit where the name does not say it."""
    return m["label"] + (f" ({m['unit']})" if m["unit"] == "µs" else "")


def tolerance_text(m):
    """A metric's tolerance in tables: the relative one, and the absolute floor when there is one."""
    return f"{m['tolerance_pct']:g} %" + (f", {m['abs_tolerance']:g} {m['unit']}" if m["abs_tolerance"] else "")


def markdown(result):
    """A Markdown summary: headline and one table row per host, device and metric (for CI logs and mail)."""
    test = {"welch": "Welch's t-test", "mann-whitney": "Mann-Whitney U"}[result["test"]]
    lines = [f"## blkfleet regress: {result['verdict'].upper()}", "",
             f"Baseline `{result['baseline']}`, {test}, alpha {result['alpha']:g}, at least "
             f"{result['min_samples']} samples a side; exit code {result['exit_code']}.", ""]
    centre = "median" if result["test"] == "mann-whitney" else "mean"
    lines += [f"| host | device | metric | baseline {centre} ± sd (n) | candidate {centre} ± sd (n) | change | "
              "tolerance | p | verdict |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for g in result["groups"]:
        for m in g["metrics"]:
            b, c = dict(m["baseline"]), dict(m["candidate"])
            if centre == "median":
                b["mean"], c["mean"] = b["median"], c["median"]
            tol = tolerance_text(m)
            change = "–" if m["change_pct"] is None else f"{m['change_pct']:+.1f} %"
            p = "–" if m["p"] is None else f"{m['p']:.2g}"
            label = metric_label(m)
            lines.append(f"| {g['host']} | {g['device']} | {label} | {_side(b)} | {_side(c)} | "
                         f"{change} | {tol} | {p} | {VERDICT_MARK[m['verdict']]} |")
    if not result["groups"]:
        lines.append("| – | – | – | – | – | – | – | – | insufficient |")
    counts = result["counts"]
    lines += ["", ", ".join(f"{v} {counts[v]}" for v in ("regression", "improvement", "pass", "insufficient"))
              + "."]
    for g in result["groups"]:
        lines.append(f"- {g['host']} {g['device']}: baseline runs {', '.join(map(str, g['baseline_runs'])) or '–'}; "
                     f"candidate runs {', '.join(map(str, g['candidate_runs']))}; samples {g['sample_source']}")
    for w in result["warnings"]:
        lines.append(f"- warning: {w}")
    return "\n".join(lines) + "\n"
