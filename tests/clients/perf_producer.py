#!/usr/bin/env python3
"""Produce throughput with confluent-kafka (librdkafka), to measure the broker with an efficient client.

Usage: perf_producer.py BOOTSTRAP TOPIC RECORDS RECORD_BYTES ACKS
"""
import sys, time
from confluent_kafka import Producer
bootstrap, topic, n, size, acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
p = Producer({'bootstrap.servers': bootstrap, 'acks': acks, 'linger.ms': 5, 'batch.size': 1000000, 'queue.buffering.max.messages': 1000000, 'enable.idempotence': acks == 'all'})
v = b'x' * size
delivered = [0]
def cb(err, msg):
    if err is None: delivered[0] += 1
t = time.time()
for i in range(n):
    while True:
        try:
            p.produce(topic, v, callback=cb); break
        except BufferError:
            p.poll(0.01)
p.flush()
dt = time.time() - t
print(f"confluent-kafka {n} x {size} B acks={acks}: {delivered[0]/dt:.0f} records/s, {delivered[0]*size/dt/1e6:.1f} MB/s")
