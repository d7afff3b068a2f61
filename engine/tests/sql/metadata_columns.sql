-- The Kafka metadata columns: partition, offset, timestamp (UTC ms), key (null when absent).
-- topic: orders partitions=2
[p=0 key=o-1 ts=1700000000000 hdr=trace:abc hdr=trace:def] {"amount": 10}
[p=1 key=o-2 ts=1700000001000] {"amount": 20}
[p=1 ts=1700000002500] {"amount": 30}

-- statement:
SELECT _partition, _offset, _timestamp, _key, amount FROM orders
-- expect: rows
+------------+---------+--------------------------+------+--------+
| _partition | _offset | _timestamp               | _key | amount |
+------------+---------+--------------------------+------+--------+
| 0          | 0       | 2023-11-14T22:13:20Z     | o-1  | 10     |
| 1          | 0       | 2023-11-14T22:13:21Z     | o-2  | 20     |
| 1          | 1       | 2023-11-14T22:13:22.500Z |      | 30     |
+------------+---------+--------------------------+------+--------+

-- statement:
SELECT _key, array_length(_headers) AS headers, _headers[2]['value'] AS second FROM orders WHERE _key IS NOT NULL
-- expect: rows
+------+---------+--------+
| _key | headers | second |
+------+---------+--------+
| o-1  | 2       | def    |
| o-2  | 0       |        |
+------+---------+--------+

-- statement:
SELECT _headers FROM orders WHERE _offset = 0 AND _partition = 0
-- expect: rows
+------------------------------------------------------+
| _headers                                             |
+------------------------------------------------------+
| [{key: trace, value: abc}, {key: trace, value: def}] |
+------------------------------------------------------+

