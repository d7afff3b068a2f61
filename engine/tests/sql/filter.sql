-- A WHERE clause on value columns, across two partitions.
-- topic: access partitions=2
[p=0] {"status": 200, "path": "/"}
[p=1] {"status": 503, "path": "/api"}
[p=0] {"status": 500, "path": "/login"}
[p=1] {"status": 302, "path": "/old"}

-- statement:
SELECT path, status FROM access WHERE status >= 500
-- expect: rows
+--------+--------+
| path   | status |
+--------+--------+
| /api   | 503    |
| /login | 500    |
+--------+--------+

-- statement:
SELECT count(*) AS n FROM access WHERE path LIKE '/l%' OR status = 302
-- expect: rows
+---+
| n |
+---+
| 2 |
+---+
