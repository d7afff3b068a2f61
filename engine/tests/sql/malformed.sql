-- A record that does not decode is skipped and sent to the dead-letter sink; the query goes on.
-- topic: payments
{"id": 1, "amount": 10.5}
{"id": 2, "amount": 
{"id": 3, "amount": 7.25}

-- statement:
SELECT id, amount FROM payments
-- expect: rows
+----+--------+
| id | amount |
+----+--------+
| 1  | 10.5   |
| 3  | 7.25   |
+----+--------+

-- dead letters: 1
