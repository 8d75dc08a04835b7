-- Tasks, their latest state, and their history. Migrate runs this with
-- the store's schema first on the search path.

-- One row a task. id sorts in byte order (COLLATE "C"), as listings do.
CREATE TABLE tasks (
	id          text COLLATE "C" PRIMARY KEY,
	incarnation bytea  NOT NULL, -- bytes: any string a writer gives
	version     bigint NOT NULL,
	announced   bigint NOT NULL, -- the version watchers were last told of
	status      text   NOT NULL,
	kind        text   NOT NULL,
	labels      text[] NOT NULL, -- 'key=value'; keys hold no '='
	created_ns  bigint NOT NULL, -- creation time, nanoseconds since 1970
	lease_ns    bigint,          -- lease end of an unended task with a lease
	lease_min   bigint,          -- lease_ns in whole minutes, for its index
	expires_at  timestamptz,     -- NULL: never
	expires_min bigint,          -- expires_at in whole minutes, for its index
	write_ids   bytea[] NOT NULL, -- the latest write ids, newest first
	state       text   NOT NULL  -- the JSON of the store.State
) WITH (fillfactor = 70); -- room on each page for HOT updates

CREATE INDEX tasks_created ON tasks (created_ns, id);
CREATE INDEX tasks_status ON tasks (status, created_ns, id);
CREATE INDEX tasks_kind ON tasks (kind, created_ns, id);
CREATE INDEX tasks_labels ON tasks USING gin (labels);
-- The lease end and the expiry move with every write: indexed as they
-- are, every write would update every index (no HOT update). Indexed in
-- whole minutes, they leave most writes HOT (see the package doc).
CREATE INDEX tasks_lease ON tasks (lease_min) WHERE lease_min IS NOT NULL;
CREATE INDEX tasks_expires ON tasks (expires_min) WHERE expires_min IS NOT NULL;

-- Every announced write of every task, in the order written.
-- No primary key: nothing looks a row up by seq alone, and each index
-- costs every write.
CREATE TABLE history (
	seq         bigint GENERATED ALWAYS AS IDENTITY,
	task_id     text COLLATE "C" NOT NULL,
	version     bigint      NOT NULL,
	recorded_at timestamptz NOT NULL,
	state       text        NOT NULL
);

CREATE INDEX history_task ON history (task_id, seq);
-- Rows are added in about the order of recorded_at: a BRIN index finds
-- the old ones for the reaper at almost no cost to writes.
CREATE INDEX history_recorded ON history USING brin (recorded_at);
