-- SHOW TOPICS lists topics with their partition counts; DESCRIBE lists a table's columns.
-- topic: access partitions=3
{"status": 200, "path": "/", "ms": 1.5}
-- topic: syslog
hello

-- statement:
SHOW TOPICS
-- expect: rows
+--------+------------+
| topic  | partitions |
+--------+------------+
| access | 3          |
| syslog | 1          |
+--------+------------+

-- statement:
DESCRIBE access
-- expect: rows
+-------------+---------------------------------------------------+-------------+--------+
| column_name | data_type                                         | is_nullable | format |
+-------------+---------------------------------------------------+-------------+--------+
| ms          | Float64                                           | YES         | json   |
| path        | Utf8                                              | YES         | json   |
| status      | Int64                                             | YES         | json   |
| _partition  | Int32                                             | NO          | json   |
| _offset     | Int64                                             | NO          | json   |
| _timestamp  | Timestamp(ms, "UTC")                              | NO          | json   |
| _key        | Utf8                                              | YES         | json   |
| _headers    | List(Struct("key": non-null Utf8, "value": Utf8)) | NO          | json   |
+-------------+---------------------------------------------------+-------------+--------+
