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
	expires_at  timestamptz,     -- NULL: never
	write_ids   bytea[] NOT NULL, -- the latest write ids, newest first
	state       text   NOT NULL  -- the JSON of the store.State
);

CREATE INDEX tasks_created ON tasks (created_ns, id);
CREATE INDEX tasks_status ON tasks (status, created_ns, id);
CREATE INDEX tasks_kind ON tasks (kind, created_ns, id);
CREATE INDEX tasks_labels ON tasks USING gin (labels);
CREATE INDEX tasks_lease ON tasks (lease_ns) WHERE lease_ns IS NOT NULL;
CREATE INDEX tasks_expires ON tasks (expires_at) WHERE expires_at IS NOT NULL;

-- Every announced write of every task, in the order written.
CREATE TABLE history (
	seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	task_id     text COLLATE "C" NOT NULL,
	version     bigint      NOT NULL,
	recorded_at timestamptz NOT NULL,
	state       text        NOT NULL
);

CREATE INDEX history_task ON history (task_id, seq);
CREATE INDEX history_recorded ON history (recorded_at);
