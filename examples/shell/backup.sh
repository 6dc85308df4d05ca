#!/bin/sh
# A shell job for `schedctl worker run`: one backup record per day, fenced.
#
# The shell worker runs this once per firing with SCHEDD_JOB, SCHEDD_RUN_ID,
# SCHEDD_SCHEDULED_AT (RFC 3339 UTC), SCHEDD_ATTEMPT, SCHEDD_FENCE, SCHEDD_PAYLOAD in the
# environment. Exit 0 = success; anything else fails the attempt (and may be retried).
#
# The write is fenced in SQLite: the fence is compare-and-set in `schedd_fences` in the same
# transaction as the effect, so an attempt whose fence is older than one that already wrote
# fails (exit 1, "stale fence") and changes nothing. Needs the sqlite3 command line tool.
set -eu

db=${BACKUP_DB:-backups.db}
day=$(printf '%s' "$SCHEDD_SCHEDULED_AT" | cut -c1-10)
case "$SCHEDD_FENCE" in ''|*[!0-9]*) echo "SCHEDD_FENCE is not a number" >&2; exit 2 ;; esac

echo "backup of $day: run $SCHEDD_RUN_ID attempt $SCHEDD_ATTEMPT fence $SCHEDD_FENCE"
# ... the real work (pg_dump, rsync, ...) goes here ...

# changes() is 0 when a newer fence is recorded: the CHECK fails, .bail ends sqlite3 with exit
# code 1 and the open transaction is rolled back, so neither the fence nor the record is written.
if ! sqlite3 -bail "$db" >/dev/null 2>&1 <<SQL
CREATE TABLE IF NOT EXISTS schedd_fences(resource TEXT PRIMARY KEY, fence INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS backups(day TEXT PRIMARY KEY, run_id TEXT, fence INTEGER);
CREATE TEMP TABLE fence_ok(n INTEGER CHECK (n > 0));
BEGIN IMMEDIATE;
INSERT INTO schedd_fences(resource, fence) VALUES ('backup:$day', $SCHEDD_FENCE)
  ON CONFLICT(resource) DO UPDATE SET fence = excluded.fence
  WHERE schedd_fences.fence <= excluded.fence;
INSERT INTO fence_ok VALUES (changes());
INSERT OR REPLACE INTO backups(day, run_id, fence) VALUES ('$day', '$SCHEDD_RUN_ID', $SCHEDD_FENCE);
COMMIT;
SQL
then
    echo "stale fence $SCHEDD_FENCE for backup:$day: a newer attempt already wrote; nothing changed" >&2
    exit 1
fi
echo "recorded backup of $day with fence $SCHEDD_FENCE"
