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
-- claims, cancels, requeues, retries, take-backs, retention.

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

CREATE TRIGGER tasks_queue_inserted AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_inserted();

CREATE TRIGGER tasks_queue_deleted AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_deleted();

CREATE TRIGGER tasks_queue_updated AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_updated();

-- The positions of a batch's new tasks (ids), for the 202s, in the
-- transaction that inserted them.  First the advisory lock of each of
-- their kinds, in order (no deadlock), held to the COMMIT: batches that
-- queue tasks of a kind take turns from here to their COMMIT, and each
-- counts the tasks of those before it, which committed.  Then, in a
-- snapshot taken after the locks (each statement of a function takes its
-- own), for each (kind, priority) of the batch: the depth of it and of
-- the priorities above, less the tasks behind each new one, which are
-- only the batch's own and the few queued since its oldest.  (The new
-- tasks are found by their ids alone: with the queue's index too, the
-- planner may read all of the queue.  And each call is planned for its
-- ids: a plan made once, while the table was small, reads the queue.)

CREATE FUNCTION queue_positions(ids text[])
    RETURNS TABLE (id text, pos bigint)
LANGUAGE plpgsql SET search_path FROM CURRENT
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7401100, hashtext(k))
        FROM (SELECT DISTINCT t.kind AS k FROM tasks t
              WHERE t.id = ANY(ids)) s
        ORDER BY k;

    RETURN QUERY
    WITH x AS MATERIALIZED (SELECT t.kind, t.priority, t.created_at,
                                   t.status
                            FROM tasks t WHERE t.id = ANY(ids)),
    b AS (SELECT x.kind, x.priority, min(x.created_at) AS c
          FROM x WHERE x.status = 'QUEUED'
          GROUP BY x.kind, x.priority),
    a AS (SELECT b.*, (SELECT sum(d.n) FROM queue_depth d
                       WHERE d.kind = b.kind AND d.priority >= b.priority)
                      AS n
          FROM b),
    r AS (SELECT t.id, (a.n - row_number() OVER (PARTITION BY t.kind,
                 t.priority ORDER BY t.created_at DESC, t.id DESC))::bigint
                 AS pos
          FROM a JOIN tasks t ON t.status = 'QUEUED' AND t.kind = a.kind
               AND t.priority = a.priority AND t.created_at >= a.c)
    SELECT r.id::text, r.pos FROM r WHERE r.id = ANY(ids);
END
$$;

-- the tasks queued before this migration (the triggers exist from here
-- on, and the nodes' writes to "tasks" wait for this transaction)

INSERT INTO queue_depth (kind, priority, n)
    SELECT kind, priority, count(*) FROM tasks WHERE status = 'QUEUED'
    GROUP BY kind, priority;
