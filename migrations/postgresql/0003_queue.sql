-- 0003: the depth of the queue per kind and priority, for `position`.
--
-- A task's position is the count of QUEUED tasks of its kind ahead of it:
-- those of a higher priority, then those of its own priority that are
-- older.  Counting them in "tasks" costs a scan of the queue; here the
-- counts per (kind, priority) are kept by triggers, so that the tasks of
-- higher priorities cost one read of a few rows, whatever their number.
--
-- The depth of (kind, priority) is the sum of n over its rows.  A writer
-- adds its change to a row that no other transaction holds (SKIP LOCKED),
-- or to a new row when all are held: writers never wait for one another
-- here, and the rows are at most as many as the writers that ever ran at
-- the same time.  Readers see the rows and the tasks of one snapshot, so
-- the sum always matches the QUEUED tasks they see.
--
-- Statement-level triggers with transition tables: one update of a whole
-- claim or reclaim is one change per (kind, priority), not one per task.
-- Any change of a task into or out of QUEUED goes through them: inserts,
-- claims, cancels, requeues, retries, take-backs, retention, and an
-- operator's DELETE, UPDATE or TRUNCATE.

CREATE TABLE queue_depth (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text COLLATE "C" NOT NULL,
    priority      integer NOT NULL,
    n             bigint NOT NULL
);

CREATE FUNCTION queue_depth_add(k text, p integer, d bigint) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE queue_depth SET n = n + d
        WHERE id = (SELECT id FROM queue_depth
                    WHERE kind = k AND priority = p
                    LIMIT 1 FOR UPDATE SKIP LOCKED);
    IF NOT FOUND THEN
        INSERT INTO queue_depth (kind, priority, n) VALUES (k, p, d);
    END IF;
END
$$;

CREATE FUNCTION queue_depth_inserted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM queue_depth_add(kind, priority, count(*))
        FROM new_rows WHERE status = 'QUEUED'
        GROUP BY kind, priority;
    RETURN NULL;
END
$$;

CREATE FUNCTION queue_depth_deleted() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM queue_depth_add(kind, priority, -count(*))
        FROM old_rows WHERE status = 'QUEUED'
        GROUP BY kind, priority;
    RETURN NULL;
END
$$;

CREATE FUNCTION queue_depth_updated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM queue_depth_add(kind, priority, sum(d)::bigint)
        FROM (SELECT kind, priority, 1 AS d FROM new_rows
              WHERE status = 'QUEUED'
              UNION ALL
              SELECT kind, priority, -1 FROM old_rows
              WHERE status = 'QUEUED') c
        GROUP BY kind, priority HAVING sum(d) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION queue_depth_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM queue_depth;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_queue_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_inserted();

CREATE TRIGGER tasks_queue_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_deleted();

CREATE TRIGGER tasks_queue_updated AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_updated();

CREATE TRIGGER tasks_queue_truncated AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_truncated();

-- the tasks queued before this migration (the triggers exist from here
-- on, and the nodes' writes to "tasks" wait for this transaction)

INSERT INTO queue_depth (kind, priority, n)
    SELECT kind, priority, count(*) FROM tasks WHERE status = 'QUEUED'
    GROUP BY kind, priority;
