-- 0001: the tasks table of the PostgreSQL store, shared by every node.
--
-- The module applies this itself at start, in one transaction under an
-- advisory lock (the first node to start does it, the others wait), and
-- records the version in async_task_schema.  The columns mean what they
-- mean in migrations/0001_tasks.sql; "user" is quoted (a keyword here).
-- Ids compare as bytes (COLLATE "C"), as in SQLite: listings and their
-- cursors go by id.

CREATE TABLE tasks (
    id            text COLLATE "C" PRIMARY KEY,  -- UUIDv7: time-ordered
    kind          text NOT NULL,         -- image | speech
    status        text NOT NULL,         -- QUEUED RUNNING DONE FAILED CANCELED
    "user"        text,                  -- owner, NULL when anonymous
    priority      integer NOT NULL,      -- 0..9, higher runs first
    params        text NOT NULL,         -- validated input, JSON
    file          text,                  -- input or result under files=
    created_at    bigint NOT NULL,       -- milliseconds since the epoch
    started_at    bigint,
    finished_at   bigint,
    attempts      integer NOT NULL DEFAULT 0,
    backend       text,                  -- upstream/host:port
    result        text,                  -- JSON when DONE
    error         text,                  -- JSON when FAILED
    lease_owner   text,                  -- who runs it: node/pid:N
    lease_expires bigint,                -- when the lease may be taken back
    not_before    bigint,                -- retry backoff
    node          text                   -- the node that accepted it
);

-- the queue: next task of a kind, higher priority first, then oldest
CREATE INDEX tasks_queue ON tasks (kind, priority DESC, created_at, id)
    WHERE status = 'QUEUED';

-- listings, newest first (ids are time-ordered), per owner
CREATE INDEX tasks_user ON tasks ("user", id);

-- leases to take back after a crash
CREATE INDEX tasks_running ON tasks (lease_expires)
    WHERE status = 'RUNNING';

-- retention
CREATE INDEX tasks_finished ON tasks (finished_at)
    WHERE finished_at IS NOT NULL;
