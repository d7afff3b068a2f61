-- json_get, json_get_int and json_get_float read fields of JSON held in a text column.
-- topic: raw format=lines
{"user": {"id": 7, "name": "ann"}, "tags": ["a", "b"], "price": "9.5"}
{"user": {"id": 8}, "tags": [], "price": 3}
not json at all

-- statement:
SELECT json_get(line, 'user.name') AS name, json_get_int(line, 'user.id') AS id, json_get(line, 'tags.1') AS tag, json_get_float(line, 'price') AS price, json_get(line, 'user') AS user FROM raw
-- expect: rows
+------+----+-----+-------+-----------------------+
| name | id | tag | price | user                  |
+------+----+-----+-------+-----------------------+
| ann  | 7  | b   | 9.5   | {"id":7,"name":"ann"} |
|      | 8  |     | 3.0   | {"id":8}              |
|      |    |     |       |                       |
+------+----+-----+-------+-----------------------+

-- statement:
SELECT sum(json_get_int(line, '$.user.id')) AS total FROM raw
-- expect: rows
+-------+
| total |
+-------+
| 15    |
+-------+
