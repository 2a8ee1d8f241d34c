"""CPU timeline of a benchmark run (scripts/bench.sh --timeline FILE).

  timeline.py sample OUT        every 50 ms, append to OUT the time, the CPU ticks
                                used so far by each group of processes (below) and
                                the machine's idle ticks, until killed
  timeline.py report SAMPLES MARKS
                                for each run in MARKS (lines "<name> <start> <end>",
                                epoch seconds), the cores each group used and the
                                cores left idle, averaged over 0.25 s

Processes are grouped by name, machine-wide: run it on a machine where the
benchmark's servers are the only PostgreSQL and nats-server.
"""

import os
import sys
import time

GROUPS = {
    "nats-server": "nats",
    "postgres": "pg",
    "postmaster": "pg",
    "pgoutput-stream": "daemon",
    "pg_recvlogical": "client",
    "bench_nats": "client",
}
COLUMNS = ["nats", "pg", "daemon", "client"]
BUCKET = 0.25


def ticks_by_group():
    used = dict.fromkeys(COLUMNS, 0)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        group = GROUPS.get(name)
        if group:
            fields = stat[stat.rindex(")") + 2 :].split()
            # utime, stime, and those of ended children (the postmaster's
            # backends that ended stay counted).
            used[group] += sum(int(t) for t in fields[11:15])
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    return used, int(cpu[4]) + int(cpu[5])


def sample(out):
    with open(out, "a") as f:
        while True:
            used, idle = ticks_by_group()
            f.write(f"{time.time():.3f} {' '.join(str(used[c]) for c in COLUMNS)} {idle}\n")
            f.flush()
            time.sleep(0.05)


def report(samples_path, marks_path):
    hz = os.sysconf("SC_CLK_TCK")
    samples = []
    with open(samples_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == len(COLUMNS) + 2:
                samples.append([float(parts[0])] + [int(p) for p in parts[1:]])
    with open(marks_path) as f:
        marks = [line.split() for line in f if line.strip()]
    for name, start, end in marks:
        start, end = float(start), float(end)
        inside = [s for s in samples if start - 0.05 <= s[0] <= end + 0.05]
        print(f"\n({name}) {end - start:.2f} s: cores used per {BUCKET} s")
        print("    t  " + "".join(f"{c:>8}" for c in COLUMNS) + "    idle")
        buckets = {}
        for before, after in zip(inside, inside[1:]):
            seconds = after[0] - before[0]
            if seconds <= 0:
                continue
            # A client that ended between two samples takes its ticks with
            # it: the group's count drops; such an interval says nothing.
            deltas = [(a - b) / hz / seconds for a, b in zip(after[1:], before[1:])]
            if min(deltas) < 0:
                continue
            key = max(0, int((before[0] - start) // BUCKET))
            buckets.setdefault(key, []).append(deltas)
        for key in sorted(buckets):
            rows = buckets[key]
            means = [sum(r[i] for r in rows) / len(rows) for i in range(len(COLUMNS) + 1)]
            print(f"{key * BUCKET:5.2f}  " + "".join(f"{m:8.2f}" for m in means))


if __name__ == "__main__":
    if sys.argv[1:2] == ["sample"] and len(sys.argv) == 3:
        sample(sys.argv[2])
    elif sys.argv[1:2] == ["report"] and len(sys.argv) == 4:
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
