-- A topic of plain text reads as lines: one `line` column.
-- topic: syslog
kernel: eth0 up
sshd: accepted key for ann
sshd: failed password for root
cron: job done

-- statement:
SELECT line FROM syslog WHERE line LIKE 'sshd:%'
-- expect: rows
+--------------------------------+
| line                           |
+--------------------------------+
| sshd: accepted key for ann     |
| sshd: failed password for root |
+--------------------------------+

-- statement:
SELECT split_part(line, ':', 1) AS program, count(*) AS n FROM syslog GROUP BY 1
-- expect: rows
+---------+---+
| program | n |
+---------+---+
| kernel  | 1 |
| sshd    | 2 |
| cron    | 1 |
+---------+---+
