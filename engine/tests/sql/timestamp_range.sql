-- A lower bound on _timestamp starts each partition at the first offset at or after that time
-- (ListOffsets by time); an upper bound is applied to the rows.
-- topic: events partitions=2
[p=0 ts=1700000000000] {"e": "p0-first"}
[p=0 ts=1700000060000] {"e": "p0-second"}
[p=0 ts=1700000120000] {"e": "p0-third"}
[p=1 ts=1700000030000] {"e": "p1-first"}
[p=1 ts=1700000090000] {"e": "p1-second"}

-- statement:
SELECT _partition, _offset, e FROM events WHERE _timestamp >= TIMESTAMP '2023-11-14T22:14:20Z'
-- expect: rows
+------------+---------+-----------+
| _partition | _offset | e         |
+------------+---------+-----------+
| 0          | 1       | p0-second |
| 0          | 2       | p0-third  |
| 1          | 1       | p1-second |
+------------+---------+-----------+

-- plan: ranges=[0:1..3, 1:1..2]

-- statement:
SELECT e FROM events WHERE _timestamp > '2023-11-14T22:13:40Z' AND _timestamp < '2023-11-14T22:15:00Z'
-- expect: rows
+-----------+
| e         |
+-----------+
| p0-second |
| p1-first  |
| p1-second |
+-----------+

-- plan: ranges=[0:1..3, 1:0..2]
