"""Kafka benchmark peer: Python confluent-kafka (librdkafka) producing pre-generated sensor
readings, with the same librdkafka settings as the fleetload worker it is compared with.

    kafka_peer.py --bootstrap 127.0.0.1:9092 --topic bench --count 3000000 \
        --set acks=all --set linger.ms=5 ... --result out.json

Readings are generated before the clock starts (a pool of up to --pool distinct lines, cycled
to reach --count), so the measured CPU time is librdkafka's and the Python calls around it
only: produce() per message and one delivery callback per message, which is how acknowledged
messages are counted. The result JSON holds the messages acknowledged and failed and the
process's CPU time (user + sys) from the first produce() to the end of flush().
"""

import argparse
import json
import random
import resource
import sys
import time
import uuid

from confluent_kafka import KafkaException, Producer


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def readings(n, keys):
    """n sensor readings as (key, value) bytes, shaped like fleetload's default payload."""
    sensors = [f"{uuid.uuid4()}_{k}".encode() for k in range(1, keys + 1)]
    now = round(time.time() * 1000)
    out = []
    for _ in range(n):
        key = random.choice(sensors)
        centi = random.randint(1000, 18000)
        if centi > 16000:
            status = "ERROR"
        elif centi > 14000 or random.random() < 0.2:
            status = random.choice(("WARNING", "ERROR"))
        else:
            status = "OK"
        value = b'{"sensorId":"%s","temperature":%d.%02d,"status":"%s","timestamp":%d}' % (
            key,
            centi // 100,
            centi % 100,
            status.encode(),
            now,
        )
        out.append((key, value))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--pool", type=int, default=200_000)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--set", action="append", default=[], metavar="PROP=VALUE")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    p.add_argument("--result", required=True)
    args = p.parse_args()

    config = {"bootstrap.servers": args.bootstrap}
    for item in args.set:
        k, _, v = item.partition("=")
        config[k] = v
    pool = readings(min(args.count, args.pool), args.keys)
    counts = {"acknowledged": 0, "failed": 0}

    def delivered(err, _msg):
        if err is None:
            counts["acknowledged"] += 1
        else:
            counts["failed"] += 1

    producer = Producer(config)
    # Warm up the connection and metadata outside the measured window, as the worker's
    # preflight does.
    producer.list_topics(args.topic, timeout=10)

    deadline = time.monotonic() + args.timeout
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    produce = producer.produce
    topic = args.topic
    n = len(pool)
    sent = 0
    while sent < args.count and time.monotonic() < deadline:
        key, value = pool[sent % n]
        try:
            produce(topic, value, key, on_delivery=delivered)
            sent += 1
        except BufferError:
            # The local queue is full: serve delivery reports until there is room.
            producer.poll(0.001)
            continue
        if sent % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(max(0.0, deadline - time.monotonic()))
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    result = dict(
        counts,
        sent=sent,
        unflushed=remaining,
        cpu_seconds=round(cpu, 3),
        wall_seconds=round(wall, 3),
    )
    with open(args.result, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))
    return 0 if remaining == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"kafka_peer: {e}", file=sys.stderr)
        sys.exit(1)
