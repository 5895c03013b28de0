"""A foreign producer for the test-suite: events written by librdkafka through Python
(confluent-kafka), not by `streamlake produce`, with every compression codec.

For the i-th codec of --codecs it produces --per-codec events to partition `i % partitions`
with `compression.type=<codec>` and a long `linger.ms`, so the broker stores real multi-message
batches of that codec (with at least as many partitions as codecs, each partition holds one
codec). Events have the seed's shape, serialized as Python's `json.dumps` writes them:

    {"id": <0..4>, "ts": "<ISO-8601 UTC, microseconds, +00:00>", "value": <uniform 0..100,
     3 decimals>, "source": "sim-producer"}

After flushing, every delivery must have succeeded; then it prints one JSON line on stdout,
counted from the delivery reports:

    {"codecs": {"gzip": N, ...}, "partitions": {"0": N, ...}, "total": N}

Any failed or missing delivery: a message on stderr and exit 1 (exit 2 for bad arguments).

Usage:
    python tests/py/foreign_produce.py --brokers HOST:PORT --topic T --per-codec N
        [--codecs gzip,snappy,lz4,zstd] [--config FILE] [--seed S] [--timeout SECONDS]

--config FILE reads librdkafka properties (`key=value` lines, `#` comments), e.g. the
`client-sasl-ssl.properties` or `client-mtls.properties` that scripts/kafka.sh writes to
<state>/secure/; the brokers, codec and batching settings of this script take precedence.
"""

import argparse
import json
import random
import sys
from datetime import datetime, timezone

from confluent_kafka import KafkaException, Producer

CODECS = ("gzip", "snappy", "lz4", "zstd")
IDS = 5


def fail(message):
    print(f"foreign_produce: error: {message}", file=sys.stderr)
    sys.exit(1)


def read_properties(path):
    conf = {}
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        fail(f"cannot read --config {path}: {e}")
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            fail(f"{path}:{number}: expected key=value")
        conf[key.strip()] = value.strip()
    return conf


def event(rng):
    return json.dumps(
        {
            "id": rng.randrange(IDS),
            "ts": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "value": round(rng.uniform(0, 100), 3),
            "source": "sim-producer",
        }
    )


def partition_count(conf, topic, timeout):
    probe = Producer(conf)
    try:
        meta = probe.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException as e:
        fail(f"cannot fetch the metadata of topic {topic} from {conf['bootstrap.servers']}: {e}")
    if meta is None or meta.error is not None:
        reason = meta.error.str() if meta is not None else "not in the metadata"
        fail(f"topic {topic} is not usable on {conf['bootstrap.servers']}: {reason}")
    if not meta.partitions:
        fail(f"topic {topic} has no partitions")
    return len(meta.partitions)


def produce_codec(conf, topic, codec, partition, count, rng, timeout):
    """Produces `count` events with one codec and returns the per-partition delivery counts."""
    delivered, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered[msg.partition()] = delivered.get(msg.partition(), 0) + 1

    producer = Producer(
        dict(
            conf,
            **{
                "compression.type": codec,
                # Long enough that a whole run of events lands in few, large batches.
                "linger.ms": 200,
                "batch.num.messages": 10000,
                "batch.size": 1048576,
                "acks": "all",
            },
        )
    )
    for _ in range(count):
        payload = event(rng)
        while True:
            try:
                producer.produce(topic, value=payload.encode(), partition=partition, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let it drain
        producer.poll(0)
    remaining = producer.flush(timeout)
    if errors:
        fail(
            f"{len(errors)} of {count} {codec} events to {topic} partition {partition} were not "
            f"delivered; first error: {errors[0].name()}: {errors[0].str()}"
        )
    if remaining or sum(delivered.values()) != count:
        fail(
            f"{codec}: {sum(delivered.values())} of {count} events to {topic} partition {partition} "
            f"confirmed after {timeout} s ({remaining} still queued)"
        )
    return delivered


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", required=True, help="bootstrap servers, HOST:PORT[,...]")
    parser.add_argument("--topic", required=True, help="existing topic")
    parser.add_argument("--per-codec", type=int, required=True, metavar="N", help="events per codec")
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated, default %(default)s")
    parser.add_argument("--config", metavar="FILE", help="librdkafka properties, e.g. for a secured listener")
    parser.add_argument("--seed", type=int, help="random seed of ids and values")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per flush and metadata call")
    args = parser.parse_args()

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in CODECS + ("none",)]
    if not codecs or unknown:
        parser.error(f"--codecs: unknown codec(s) {unknown or '(none given)'}; choose from {', '.join(CODECS)}, none")
    if len(set(codecs)) != len(codecs):
        parser.error("--codecs: a codec is listed twice")
    if args.per_codec < 0:
        parser.error("--per-codec must be >= 0")

    conf = read_properties(args.config) if args.config else {}
    conf["bootstrap.servers"] = args.brokers
    rng = random.Random(args.seed)

    partitions = partition_count(conf, args.topic, args.timeout)
    per_codec, per_partition = {}, {}
    for i, codec in enumerate(codecs):
        delivered = produce_codec(conf, args.topic, codec, i % partitions, args.per_codec, rng, args.timeout)
        per_codec[codec] = sum(delivered.values())
        for p, n in delivered.items():
            per_partition[str(p)] = per_partition.get(str(p), 0) + n
    print(
        json.dumps(
            {
                "codecs": per_codec,
                "partitions": dict(sorted(per_partition.items(), key=lambda kv: int(kv[0]))),
                "total": sum(per_codec.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
