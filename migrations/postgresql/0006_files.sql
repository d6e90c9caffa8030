-- 0006: uploads and results, for nodes that do not share files=.
--
-- A task's input (an upload, "<id>.in") and its result file ("<id>.png")
-- in pieces of 256 KB, so that no node ever holds a whole file: each
-- node keeps a copy in its own files= directory and fetches what it
-- lacks from here, piece by piece.  The input's pieces go in with the
-- task's row, the result's with the outcome; they go with the row
-- (retention) or when the task is canceled.  Without "files_shared"
-- only: a files= directory that every node mounts needs none of this.
--
-- EXTERNAL: stored out of line and not compressed (audio and PNG hardly
-- compress), so that octet_length() needs no read of the data.

CREATE TABLE files (
    task          text COLLATE "C" NOT NULL
                  REFERENCES tasks (id) ON DELETE CASCADE,
    name          text COLLATE "C" NOT NULL,     -- "<id>.in", "<id>.png"
    seq           integer NOT NULL,              -- 0, 1, ... in order
    data          bytea NOT NULL,
    PRIMARY KEY (task, name, seq)
);

ALTER TABLE files ALTER COLUMN data SET STORAGE EXTERNAL;
