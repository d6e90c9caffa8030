-- 0002: node heartbeats.
--
-- Each node's worker processes write "seen" every few seconds (with the
-- reclaim of expired leases).  A node not seen for a while is dead: any
-- other node takes its runs back without waiting for their leases, which
-- a pid check could not do for a process on another host.

CREATE TABLE nodes (
    name          text COLLATE "C" PRIMARY KEY,  -- node=, the host's name
    seen          bigint NOT NULL                -- ms since the epoch
);
