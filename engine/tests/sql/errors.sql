-- Errors name what is wrong and, when the parser or planner knows it, where.
-- topic: access
{"status": 200}

-- statement:
SELECT status
FROM access WHERE
-- expect: error at line 2, column

-- statement:
SELECT stats FROM access
-- expect: error at line 1, column 8

-- statement:
SELECT * FROM no_such_topic
-- expect: error no_such_topic

-- statement:
CREATE TABLE t (a INT)
-- expect: error not supported
