-- A CSV topic declared with its columns.
-- topic: sales format=csv schema=region:Utf8,amount:Int64,note:Utf8
north,120,first
south,80,
north,30,"with, comma"

-- statement:
SELECT region, sum(amount) AS total, count(note) AS notes FROM sales GROUP BY region
-- expect: rows
+--------+-------+-------+
| region | total | notes |
+--------+-------+-------+
| north  | 150   | 2     |
| south  | 80    | 0     |
+--------+-------+-------+

-- statement:
SELECT note FROM sales WHERE amount < 100
-- expect: rows
+-------------+
| note        |
+-------------+
|             |
| with, comma |
+-------------+
