"""Prints the table of bench/compare.sh from its JSON results."""

import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def median_produce(run):
    """The run's produce report with the median rate (one run or several)."""
    ranked = sorted(run["produce_runs"], key=lambda r: r["records_per_sec"])
    return ranked[len(ranked) // 2]


def main():
    disk = load(sys.argv[1])
    runs = [load(p) for p in sys.argv[2:]]
    for r in runs:
        r["produce"] = median_produce(r)
    chronik = runs[0]
    rows = [("", *[r["name"] for r in runs])]

    def row(label, get, fmt="{:.0f}"):
        rows.append((label, *[fmt.format(get(r)) for r in runs]))

    row("produce rec/s (1 KiB, acks=all)", lambda r: r["produce"]["records_per_sec"])
    row("produce MB/s", lambda r: r["produce"]["mb_per_sec"], "{:.1f}")
    row("produce runs (median taken)", lambda r: len(r["produce_runs"]), "{}")
    row("produce rec/s, 12 partitions, 4 producers", lambda r: r["produce_12p"]["records_per_sec"])
    row("broker CPU s during produce (node 1)", lambda r: r["produce"]["broker"]["cpu_seconds"], "{:.1f}")
    row("broker peak RSS MiB (node 1)", lambda r: r["produce"]["broker"]["peak_rss_kib"] / 1024)
    row("consume rec/s (fetch.wait.max.ms 500)", lambda r: r["consume_500"]["records_per_sec"])
    row("consume rec/s (fetch.wait.max.ms 10)", lambda r: r["consume_10"]["records_per_sec"])
    for wait in ("500", "10"):
        for q in ("p50", "p99", "p999"):
            row(f"e2e {q} ms at 5000/s (wait {wait})", lambda r, w=wait, q=q: r[f"e2e_{w}"]["latency"][f"{q}_ms"], "{:.2f}")
    width = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, width)))

    print()
    print(f"disk: {disk['fsyncs_per_sec']:.0f} fsyncs/s, {disk['seq_write_fsync_mb_per_sec']:.1f} MB/s "
          f"with an fsync per MiB, {disk['dd_fdatasync_mb_per_sec']:.1f} MB/s by dd conv=fdatasync (1 GiB)")
    by_name = {r["name"]: r for r in runs}
    for r in runs:
        if len(r["produce_runs"]) > 1:
            each = ", ".join(f"{p['records_per_sec']:.0f}" for p in r["produce_runs"])
            print(f"{r['name']} produce rec/s, each run: {each}")
    produce = chronik["produce"]["records_per_sec"]
    for other in runs[1:]:
        print(f"{other['name']} / chronik produce: {other['produce']['records_per_sec'] / produce:.2f}x")
    print()
    ratios = [("ratio", "measured", "target")]
    if "tansu-memory" in by_name:
        ratios.append(("chronik / tansu memory, produce (medians)",
                       f"{produce / by_name['tansu-memory']['produce']['records_per_sec']:.2f}", ">= 1.1, or the disk bound"))
    if "tansu-sqlite" in by_name:
        ratios.append(("chronik / tansu sqlite, produce",
                       f"{produce / by_name['tansu-sqlite']['produce']['records_per_sec']:.2f}", ">= 5"))
    ratios.append(("chronik produce MB/s / dd fdatasync MB/s",
                   f"{chronik['produce']['mb_per_sec'] / disk['dd_fdatasync_mb_per_sec']:.2f}",
                   ">= 0.9, or the tansu bound"))
    ratios.append(("12 partitions, 4 producers / 1 partition",
                   f"{chronik['produce_12p']['records_per_sec'] / produce:.2f}", ">= 1.2"))
    if "chronik-3node" in by_name:
        ratios.append(("3 nodes RF 3 / single node, produce (median of runs)",
                       f"{by_name['chronik-3node']['produce']['records_per_sec'] / produce:.2f}", ">= 0.45"))
    ratios.append(("chronik consume / produce (wait 10 ms)",
                   f"{chronik['consume_10']['records_per_sec'] / produce:.2f}", ">= 1.5"))
    width = [max(len(r[i]) for r in ratios) for i in range(3)]
    for r in ratios:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))

if __name__ == "__main__":
    main()
