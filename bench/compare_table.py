"""Prints the table of bench/compare.sh from its JSON results."""

import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    disk = load(sys.argv[1])
    runs = [load(p) for p in sys.argv[2:]]
    chronik = runs[0]
    rows = [("", *[r["name"] for r in runs])]

    def row(label, get, fmt="{:.0f}"):
        rows.append((label, *[fmt.format(get(r)) for r in runs]))

    row("produce rec/s (1 KiB, acks=all)", lambda r: r["produce"]["records_per_sec"])
    row("produce MB/s", lambda r: r["produce"]["mb_per_sec"], "{:.1f}")
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
    print(f"disk: {disk['fsyncs_per_sec']:.0f} fsyncs/s, {disk['seq_write_fsync_mb_per_sec']:.1f} MB/s with an fsync per MiB")
    produce = chronik["produce"]["records_per_sec"]
    for other in runs[1:]:
        print(f"{other['name']} / chronik produce: {other['produce']['records_per_sec'] / produce:.2f}x")
    print(f"chronik produce MB/s / disk MB/s: {chronik['produce']['mb_per_sec'] / disk['seq_write_fsync_mb_per_sec']:.2f}")
    print(f"chronik consume / produce (wait 10 ms): {chronik['consume_10']['records_per_sec'] / produce:.2f}")


if __name__ == "__main__":
    main()
