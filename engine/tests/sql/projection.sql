-- Selecting JSON fields of a topic nobody declared: the columns are inferred from a sample.
-- topic: access
{"status": 200, "path": "/", "bytes": 512}
{"status": 404, "path": "/missing", "bytes": 0}
{"status": 500, "path": "/api", "bytes": 128}

-- statement:
SELECT path, status FROM access
-- expect: rows
+----------+--------+
| path     | status |
+----------+--------+
| /        | 200    |
| /missing | 404    |
| /api     | 500    |
+----------+--------+
