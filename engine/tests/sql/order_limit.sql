-- ORDER BY with LIMIT keeps the order of the rows.
-- topic: scores partitions=2
[p=0] {"player": "ann", "score": 31}
[p=1] {"player": "bob", "score": 47}
[p=0] {"player": "cy", "score": 12}
[p=1] {"player": "dee", "score": 58}
[p=0] {"player": "eve", "score": 47}

-- statement:
SELECT player, score FROM scores ORDER BY score DESC, player LIMIT 3
-- expect: rows in order
+--------+-------+
| player | score |
+--------+-------+
| dee    | 58    |
| bob    | 47    |
| eve    | 47    |
+--------+-------+

-- statement:
SELECT status, count(*) FROM (SELECT score % 2 AS status FROM scores) GROUP BY status ORDER BY 2 DESC
-- expect: rows in order
+--------+----------+
| status | count(*) |
+--------+----------+
| 1      | 3        |
| 0      | 2        |
+--------+----------+
