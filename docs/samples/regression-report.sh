#!/usr/bin/env bash
# Makes docs/samples/regression-report.html from a real run on this machine (Debian 12, root, from the checkout,
# after `. ./bootstrap.sh && make_venv`): two loop devices on tmpfs; a 6 s fio workload (random 4 KiB, 70 %
# reads, a rate stepping from 1,000 to 3,000 IOPS) captured on the first, recorded, and replayed onto the second
# (writes as reads): three runs of 3 iterations make the baseline, a fourth is the candidate the verdict judges,
# and a fifth, of one iteration, is captured and writes its per-IO log: the report shows that one against the
# original capture (fidelity, timelines, LBA maps) and the baseline. Everything it made is removed at exit.
#   docs/samples/regression-report.sh [OUTPUT]     (default docs/samples/regression-report.html)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$(realpath -m "${1:-docs/samples/regression-report.html}")"
bf=("$PWD/.venv/bin/python" -m blkfleet)
work="$(mktemp -d /dev/shm/blkfleet-sample-XXXXXX)"
src="" dst=""
cleanup() {
    for dir in "$work/orig" "$work/replaycap"; do
        [ ! -e "$dir/capture.json" ] || "${bf[@]}" capture stop -D "$dir" >/dev/null 2>&1 || true
    done
    for dev in "$src" "$dst"; do [ -z "$dev" ] || losetup -d "$dev" || true; done
    rm -rf "$work"
}
trap cleanup EXIT
truncate -s 256M "$work/src.img" "$work/dst.img"
src="$(losetup --find --show "$work/src.img")"
dst="$(losetup --find --show "$work/dst.img")"
s="$(basename "$src")" d="$(basename "$dst")"

"${bf[@]}" capture start -d "$s" -D "$work/orig" >/dev/null
fio --output=/dev/null --filename="$src" --direct=1 --ioengine=libaio --iodepth=8 --bs=4k --rw=randrw \
    --rwmixread=70 --randrepeat=1 --name=low --runtime=3 --time_based --rate_iops=700,300 \
    --name=high --stonewall --runtime=3 --time_based --rate_iops=2100,900
"${bf[@]}" capture stop -D "$work/orig" >/dev/null
mkdir "$work/replay"
"${bf[@]}" record -d "$work/orig" -D "$work/replay" "$s" >/dev/null
echo "$s $d" > "$work/map"

db="$work/store.sqlite"
for run in 1 2 3 4; do
    "${bf[@]}" replay -d "$work/replay" -M "$work/map" -I 3 --json "$work/r$run.json" "$s" 2>/dev/null
    "${bf[@]}" results add --db "$db" "$work/r$run.json"
done
"${bf[@]}" results baseline set nightly --db "$db" --run 1 2 3
"${bf[@]}" capture start -d "$d" -D "$work/replaycap" >/dev/null
"${bf[@]}" replay -d "$work/replay" -M "$work/map" --json "$work/captured.json" --io-log "$work/io.log" "$s" \
    2>/dev/null
"${bf[@]}" capture stop -D "$work/replaycap" >/dev/null
cd "$work"  # the report names the replay it shows as given: captured.json
"${bf[@]}" report --db "$db" --baseline nightly --results captured.json --original orig --replay-capture replaycap \
    --io-log io.log -o "$out"
