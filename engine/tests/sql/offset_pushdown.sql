-- A range on _offset is read from the log at those offsets only (see the plan's ranges).
-- topic: log
{"n": 0}
{"n": 1}
{"n": 2}
{"n": 3}
{"n": 4}
{"n": 5}

-- statement:
SELECT _offset, n FROM log WHERE _offset >= 2 AND _offset < 4
-- expect: rows
+---------+---+
| _offset | n |
+---------+---+
| 2       | 2 |
| 3       | 3 |
+---------+---+

-- plan: ranges=[0:2..4]

-- statement:
SELECT n FROM log WHERE _offset BETWEEN 4 AND 100
-- expect: rows
+---+
| n |
+---+
| 4 |
| 5 |
+---+

-- plan: ranges=[0:4..6]

-- statement:
SELECT n FROM log WHERE _offset > 10
-- expect: rows
+---+
| n |
+---+
+---+

-- plan: ranges=[]
