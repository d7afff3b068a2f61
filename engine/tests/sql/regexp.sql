-- regexp_extract pulls a capture group out of text; DataFusion's regexp_like filters.
-- topic: weblog
10.0.0.1 GET /index.html 200
10.0.0.2 POST /api/login 401
10.0.0.1 GET /api/items 200
garbage

-- statement:
SELECT regexp_extract(line, '^(\S+) (\S+) (\S+) (\d+)$', 1) AS ip, regexp_extract(line, '^(\S+) (\S+) (\S+) (\d+)$', 3) AS path FROM weblog
-- expect: rows
+----------+-------------+
| ip       | path        |
+----------+-------------+
| 10.0.0.1 | /index.html |
| 10.0.0.2 | /api/login  |
| 10.0.0.1 | /api/items  |
|          |             |
+----------+-------------+

-- statement:
SELECT regexp_extract(line, '^\S+', 0) AS ip, count(*) AS n FROM weblog WHERE regexp_like(line, ' /api/') GROUP BY 1
-- expect: rows
+----------+---+
| ip       | n |
+----------+---+
| 10.0.0.2 | 1 |
| 10.0.0.1 | 1 |
+----------+---+

-- statement:
SELECT regexp_extract(line, '(a', 1) FROM weblog
-- expect: error not a valid regex
