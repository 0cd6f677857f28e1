"""The seed approach fleetload replaces, as a benchmark peer: Locust users calling boto3
`put_records` with batches of sensor readings.

Each user owns a boto3 Kinesis client and, in a loop with no wait, builds BATCH_SIZE readings
shaped like fleetload's default payload
(`{"sensorId":"<uuid>_<n>","temperature":147.24,"status":"OK","timestamp":1675686126310}`),
JSON-encodes each one and sends them in one PutRecords call. A record counts as acknowledged
only when Kinesis answered it without an error code (records minus `FailedRecordCount`), which
the original sample did not check.

Run headless in one process; bench/run.sh sets:
  AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  (the loopback endpoint)
  BENCH_STREAM        stream name
  BENCH_BATCH_SIZE    records per PutRecords (default 500)
  BENCH_RESULT        where to write the result JSON at the end of the test

The result holds the records acknowledged and failed, and the process's CPU time (user + sys)
between the start and the end of the test, i.e. without Python's import and start-up time.
"""

import json
import os
import random
import resource
import time
import uuid

import boto3
from botocore.config import Config
from locust import User, constant, events, task

STREAM = os.environ.get("BENCH_STREAM", "fleetload")
BATCH_SIZE = min(int(os.environ.get("BENCH_BATCH_SIZE", "500")), 500)
RESULT = os.environ.get("BENCH_RESULT")

totals = {"requests": 0, "acknowledged": 0, "failed": 0, "errors": 0}
window = {}


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@events.test_start.add_listener
def on_test_start(environment, **_kwargs):
    window["cpu"] = cpu_seconds()
    window["wall"] = time.monotonic()


@events.test_stop.add_listener
def on_test_stop(environment, **_kwargs):
    cpu = cpu_seconds() - window.get("cpu", 0.0)
    wall = time.monotonic() - window.get("wall", time.monotonic())
    result = dict(totals, cpu_seconds=round(cpu, 3), wall_seconds=round(wall, 3))
    if RESULT:
        with open(RESULT, "w") as f:
            json.dump(result, f)


def sensor_reading(sensor_id, n):
    """One reading, as the seed sample builds it: temperature uniform in 10-180 with two
    decimals; ERROR above 160, WARNING or ERROR above 140 or with 20 % chance, else OK."""
    temperature = round(10 + random.random() * 170, 2)
    if temperature > 160:
        status = "ERROR"
    elif temperature > 140 or random.random() < 0.2:
        status = random.choice(("WARNING", "ERROR"))
    else:
        status = "OK"
    return {
        "sensorId": f"{sensor_id}_{n}",
        "temperature": temperature,
        "status": status,
        "timestamp": round(time.time() * 1000),
    }


class SensorUser(User):
    """Sends one PutRecords of BATCH_SIZE readings after another, as fast as it is answered."""

    wait_time = constant(0)

    def on_start(self):
        self.sensor_id = str(uuid.uuid4())
        # boto3's own retries off, as in fleetload's client: every answer is counted once.
        self.kinesis = boto3.client(
            "kinesis",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    @task
    def put_sensor_readings(self):
        records = []
        for i in range(BATCH_SIZE):
            reading = sensor_reading(self.sensor_id, i)
            records.append(
                {"Data": json.dumps(reading), "PartitionKey": reading["sensorId"]}
            )
        start = time.perf_counter()
        exception = None
        failed = len(records)
        try:
            response = self.kinesis.put_records(StreamName=STREAM, Records=records)
            failed = response.get("FailedRecordCount", 0)
        except Exception as e:  # counted, as Locust would show it
            exception = e
            totals["errors"] += 1
        totals["requests"] += 1
        totals["acknowledged"] += len(records) - failed
        totals["failed"] += failed
        # One Locust request event per PutRecords (the sample fired one per record, which
        # costs the peer more; one per call is the kinder comparison).
        events.request.fire(
            request_type="PutRecords",
            name="Kinesis",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )
