-- Predicates on _partition pick the partitions read (=, IN, ranges).
-- topic: clicks partitions=3
[p=0] {"page": "a"}
[p=0] {"page": "b"}
[p=1] {"page": "c"}
[p=2] {"page": "d"}
[p=2] {"page": "e"}

-- statement:
SELECT _partition, page FROM clicks WHERE _partition IN (0, 2)
-- expect: rows
+------------+------+
| _partition | page |
+------------+------+
| 0          | a    |
| 0          | b    |
| 2          | d    |
| 2          | e    |
+------------+------+

-- plan: ranges=[0:0..2, 2:0..2]

-- statement:
SELECT page FROM clicks WHERE _partition = 1
-- expect: rows
+------+
| page |
+------+
| c    |
+------+

-- plan: ranges=[1:0..1]

-- statement:
SELECT page FROM clicks WHERE _partition >= 1 AND _offset >= 1
-- expect: rows
+------+
| page |
+------+
| e    |
+------+

-- plan: ranges=[2:1..2]
