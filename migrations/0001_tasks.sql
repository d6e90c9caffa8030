-- 0001: the tasks table and the indexes its queries need.
--
-- The module applies this itself at start; an operator can also run
--     sqlite3 tasks.db < migrations/0001_tasks.sql
-- The schema version is kept in PRAGMA user_version.

BEGIN;

CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,      -- UUIDv7, lowercase: time-ordered
    kind          TEXT NOT NULL,         -- image | speech
    status        TEXT NOT NULL,         -- QUEUED RUNNING DONE FAILED CANCELED
    user          TEXT,                  -- owner, NULL when anonymous
    priority      INTEGER NOT NULL,      -- 0..9, higher runs first
    params        TEXT NOT NULL,         -- validated input, JSON
    file          TEXT,                  -- uploaded input under files=
    created_at    INTEGER NOT NULL,      -- milliseconds since the epoch
    started_at    INTEGER,
    finished_at   INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    backend       TEXT,                  -- upstream/host:port
    result        TEXT,                  -- JSON when DONE
    error         TEXT,                  -- JSON when FAILED
    lease_owner   TEXT,                  -- who runs it: node/pid
    lease_expires INTEGER,               -- when the lease may be taken back
    not_before    INTEGER                -- retry backoff
) WITHOUT ROWID;

-- the queue: next task of a kind, higher priority first, then oldest
CREATE INDEX tasks_queue ON tasks (kind, priority DESC, created_at, id)
    WHERE status = 'QUEUED';

-- listings, newest first (ids are time-ordered), per owner
CREATE INDEX tasks_user ON tasks (user, id);

-- leases to take back after a crash
CREATE INDEX tasks_running ON tasks (lease_expires)
    WHERE status = 'RUNNING';

-- retention
CREATE INDEX tasks_finished ON tasks (finished_at)
    WHERE finished_at IS NOT NULL;

PRAGMA user_version = 1;

COMMIT;
