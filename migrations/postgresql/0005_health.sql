-- 0005: the health of the GPU instances, shared by the nodes.
--
-- One row per instance ("upstream/host:port", as system/stats names it):
-- the verdict of health probes and task requests (fails and passes in a
-- row), or, in an upstream without health checks, the refused connections
-- in a row and the end of the rest that max_fails= brought (down_until).
-- Each interval one node takes the probe of an instance that is due (a
-- lease: probe_owner, probe_until), probes it and writes the verdict; every
-- node reads every row.  "version" grows with each verdict, so that a node
-- never applies an older row over a newer one.

CREATE TABLE instance_health (
    instance      text COLLATE "C" PRIMARY KEY,
    version       bigint NOT NULL DEFAULT 0,
    healthy       boolean NOT NULL DEFAULT true,
    fails         integer NOT NULL DEFAULT 0,    -- in a row
    passes        integer NOT NULL DEFAULT 0,    -- in a row
    down_until    bigint NOT NULL DEFAULT 0,     -- ms since the epoch
    last_check    bigint NOT NULL DEFAULT 0,     -- the last probe's end
    next_check    bigint NOT NULL DEFAULT 0,     -- the next probe is due
    probe_owner   text,                          -- NODE/pid, probing now
    probe_until   bigint NOT NULL DEFAULT 0      -- that lease's expiry
);
