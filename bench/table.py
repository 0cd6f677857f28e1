"""Turns bench/run.sh's results.jsonl into the benchmark table (Markdown).

Rates are pooled over the rounds (total events / total CPU-seconds of each side), and the
range of the per-round ratios is shown next to the pooled ratio, so a noisy round is visible.
"""

import argparse
import csv
import json
import os


def per_cpu(rows):
    count = sum(r["count"] for r in rows)
    cpu = sum(r["cpu"] for r in rows)
    return count / cpu if cpu > 0 else 0.0


def fmt_rate(v):
    return f"{v:,.0f} /CPU-s"


def verdict(ok):
    return "met" if ok else "**not met**"


def rate_accuracy(row):
    """(worst full-second deviation, total deviation, acknowledged share) of a paced run."""
    summary_path = row["summary"]
    with open(summary_path) as f:
        s = json.load(f)
    target, secs = row["rate"], row["seconds"]
    with open(os.path.join(os.path.dirname(summary_path), "timeseries.csv")) as f:
        rows = list(csv.DictReader(f))
    worst = 0.0
    for r in rows:
        second = int(r["second"])
        # Full seconds of the run only: the last row may hold the tail of a partial second.
        if second >= secs:
            continue
        worst = max(worst, abs(float(r["attempted"]) - target) / target)
    attempted = s["counts"]["attempted"]
    total = (attempted - target * secs) / (target * secs)
    return worst, total, s["counts"]["acknowledged"] / max(attempted, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--machine", default="")
    p.add_argument("--rounds", default="")
    p.add_argument("--seconds", default="")
    p.add_argument("--kafka-props", default="")
    a = p.parse_args()
    with open(a.results) as f:
        results = [json.loads(line) for line in f if line.strip()]

    out = [
        "| what | fleetload | peer in the same run | ratio (range over rounds) | target | |",
        "|---|---|---|---|---|---|",
    ]
    for what, label, floor, min_ratio, peer_name in [
        (
            "kinesis",
            "Kinesis: records acknowledged per worker CPU-second (batch 500, sensor payload)",
            1_000_000,
            20.0,
            "Locust + boto3 put_records",
        ),
        (
            "kinesis-agg",
            "Kinesis with KPL aggregation (`FLEETLOAD_KINESIS_AGGREGATE=on`): user records "
            "acknowledged per worker CPU-second (batch 500, sensor payload)",
            None,
            1.0,
            "the same worker without aggregation",
        ),
        (
            "kafka",
            "Kafka: messages acknowledged per worker CPU-second (sensor payload)",
            None,
            1.0,
            "Python confluent-kafka, same messages",
        ),
        (
            "kafka-lz4",
            "Kafka, `compression.type=lz4`: messages acknowledged per worker CPU-second",
            None,
            1.0,
            "Python confluent-kafka, same messages, lz4",
        ),
        (
            "kafka-zstd",
            "Kafka, `compression.type=zstd`: messages acknowledged per worker CPU-second",
            None,
            1.0,
            "Python confluent-kafka, same messages, zstd",
        ),
    ]:
        ours = [r for r in results if r["what"] == what and r["who"] == "fleetload"]
        peer = [r for r in results if r["what"] == what and r["who"] == "peer"]
        if not ours or not peer:
            continue
        o, q = per_cpu(ours), per_cpu(peer)
        ratio = o / q if q else float("inf")
        rounds = [
            per_cpu([x]) / per_cpu([y]) for x, y in zip(ours, peer) if per_cpu([y]) > 0
        ]
        spread = f"{min(rounds):.2f}–{max(rounds):.2f}" if rounds else ""
        target = []
        ok = ratio >= min_ratio
        if floor:
            target.append(f"≥ {floor:,} /CPU-s")
            ok = ok and o >= floor
        target.append(f"≥ {min_ratio:g}× peer")
        out.append(
            f"| {label} | {fmt_rate(o)} | {peer_name}: {fmt_rate(q)} | **{ratio:.2f}×** ({spread}) "
            f"| {' and '.join(target)} | {verdict(ok)} |"
        )

    ours = [r for r in results if r["what"] == "null"]
    if ours:
        o = per_cpu(ours)
        spread = ", ".join(f"{per_cpu([r]) / 1e6:.2f}M" for r in ours)
        out.append(
            f"| generator alone (`null` target), events per CPU-second | {fmt_rate(o)} (rounds: {spread}) "
            f"| — | — | ≥ 5,000,000 /CPU-s | {verdict(o >= 5_000_000)} |"
        )

    rss_row = None
    for r in (r for r in results if r["what"] == "rate"):
        worst, total, acked = rate_accuracy(r)
        ok = worst <= 0.05 and abs(total) <= 0.01
        out.append(
            f"| rate accuracy at {r['rate']:,} events/s to Kafka ({r['seconds']} s) "
            f"| worst second {worst * 100:.2f} %, total {total * 100:+.3f} %, "
            f"{acked * 100:.2f} % acknowledged, {r['cpu']:.2f} CPU-s | — | — "
            f"| every second ±5 %, total ±1 % | {verdict(ok)} |"
        )
        if r["rate"] == 100_000:
            rss_row = r
    if rss_row:
        mib = rss_row["rss_kib"] / 1024
        out.append(
            f"| worker peak RSS at 100,000 events/s to Kafka | {mib:.1f} MiB | — | — "
            f"| ≤ 64 MiB | {verdict(mib <= 64)} |"
        )

    for r in (r for r in results if r["what"] == "merge"):
        out.append(
            f"| launcher: merge 1,000 task reports (300 s each) | {r['seconds']:.2f} s | — | — "
            f"| ≤ 2 s | {verdict(r['seconds'] <= 2)} |"
        )

    notes = []
    agg = [
        r
        for r in results
        if r["what"] == "kinesis-agg" and r["who"] == "fleetload" and r.get("kinesis_records")
    ]
    if agg:
        users = sum(r["count"] for r in agg)
        records = sum(r["kinesis_records"] for r in agg)
        calls = sum(r.get("put_records_calls", 0) for r in agg)
        notes.append(
            f"With aggregation, {users / records:,.0f} user records per Kinesis record and "
            f"{users / max(calls, 1):,.0f} per PutRecords call."
        )
    if a.machine:
        notes.append(f"Machine: {a.machine}.")
    if a.rounds:
        notes.append(
            f"{a.rounds} alternating rounds of {a.seconds} s per pair; CPU = user + sys of the "
            "generating process."
        )
    if a.kafka_props:
        notes.append(f"librdkafka settings of both Kafka producers: `{a.kafka_props}`.")
    print("\n".join(out))
    if notes:
        print()
        print(" ".join(notes))


if __name__ == "__main__":
    main()
