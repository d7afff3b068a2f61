-- GROUP BY with count and sum over a topic read in parallel from three partitions.
-- topic: access partitions=3
[p=0] {"status": 200, "bytes": 100}
[p=1] {"status": 200, "bytes": 250}
[p=2] {"status": 500, "bytes": 10}
[p=0] {"status": 404, "bytes": 0}
[p=1] {"status": 500, "bytes": 20}
[p=2] {"status": 200, "bytes": 50}

-- statement:
SELECT status, count(*) AS hits, sum(bytes) AS bytes FROM access GROUP BY status
-- expect: rows
+--------+------+-------+
| status | hits | bytes |
+--------+------+-------+
| 404    | 1    | 0     |
| 500    | 2    | 30    |
| 200    | 3    | 400   |
+--------+------+-------+
