-- 0004: instance slots shared by every node.
--
-- A run holds one of its instance's max_conns slots from its claim to
-- its outcome: "slot" names the instance ("upstream/host:port") the
-- claim leased for it, and a slot is taken while its task is RUNNING.
-- The lease is the task's own: it ends whenever the task leaves RUNNING
-- (outcome stored, canceled, given back, taken back after its lease
-- expired or its node stopped beating), so a dead node's slots come back
-- with its runs.  Claims count the slots under an advisory lock.

ALTER TABLE tasks ADD COLUMN slot text;   -- the instance whose slot it holds

-- the slots taken now, by instance
CREATE INDEX tasks_slots ON tasks (slot) WHERE status = 'RUNNING';
