package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// This file moves the hash slot of a task from one master of the Redis
// Cluster named by TASKSTATUS_REDIS_CLUSTER_ADDRS to another while the task
// is written, the way redis-cli --cluster reshard does (CLUSTER SETSLOT
// IMPORTING and MIGRATING, MIGRATE of the slot's keys, CLUSTER SETSLOT
// NODE), and moves it back. Only the slot of the test's own task moves, and
// it is given back to its owner when the test ends, whatever happened.
//
// A master restart is not tested: the cluster CI starts has no replicas and
// no persistence, so a restarted master comes back empty, and every write
// it had acknowledged is lost. That is Redis's promise, not the store's;
// docs/guarantees.md says so.

// migrationGuard bounds each wait of a test for the writes it makes during
// a migration, so that a hang fails the test instead of stalling it.
const migrationGuard = 60 * time.Second

// clusterMaster is a master of the test cluster, with a client of its own.
type clusterMaster struct {
	id, addr string
	c        *redis.Client
}

// clusterMasters returns the masters of the cluster named by
// TASKSTATUS_REDIS_CLUSTER_ADDRS, by id, each with a client closed when t
// ends. It skips t if the variable is unset.
func clusterMasters(t *testing.T) map[string]*clusterMaster {
	t.Helper()
	addrs := os.Getenv(envClusterAddrs)
	if addrs == "" {
		t.Skipf("%s is not set: no Redis Cluster to test against", envClusterAddrs)
	}
	first := newClient(t, strings.Split(addrs, ",")[0])
	nodes, err := first.ClusterNodes(t.Context()).Result()
	if err != nil {
		t.Fatalf("%s=%q is set but CLUSTER NODES fails: %v", envClusterAddrs, addrs, err)
	}
	masters := make(map[string]*clusterMaster)
	for line := range strings.SplitSeq(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		masters[f[0]] = &clusterMaster{id: f[0], addr: addr, c: newClient(t, addr)}
	}
	require.GreaterOrEqual(t, len(masters), 2, "moving a slot needs two masters")
	return masters
}

// slotView returns what node n says of slot: the id of the master that
// serves it, and the importing or migrating mark n has for it, such as
// "[42->-<id>]", or "".
func slotView(ctx context.Context, n *clusterMaster, slot int) (owner, mark string, err error) {
	nodes, err := n.c.ClusterNodes(ctx).Result()
	if err != nil {
		return "", "", err
	}
	for line := range strings.SplitSeq(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				if strings.HasPrefix(r, fmt.Sprintf("[%d-", slot)) && strings.Contains(f[2], "myself") {
					mark = r
				}
				continue
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, errA := strconv.Atoi(lo)
			b, errB := strconv.Atoi(hi)
			if errA == nil && errB == nil && a <= slot && slot <= b {
				owner = f[0]
			}
		}
	}
	if owner == "" {
		return "", mark, fmt.Errorf("%s says no master serves slot %d", n.addr, slot)
	}
	return owner, mark, nil
}

// stableOwner returns the master that serves slot if every master agrees
// on it and none is importing or migrating it.
func stableOwner(ctx context.Context, masters map[string]*clusterMaster, slot int) (*clusterMaster, error) {
	var owner string
	for _, n := range masters {
		got, mark, err := slotView(ctx, n, slot)
		switch {
		case err != nil:
			return nil, err
		case mark != "":
			return nil, fmt.Errorf("%s has slot %d marked %s", n.addr, slot, mark)
		case owner != "" && got != owner:
			return nil, fmt.Errorf("the masters disagree on who serves slot %d: %s and %s", slot, owner, got)
		}
		owner = got
	}
	if masters[owner] == nil {
		return nil, fmt.Errorf("slot %d is served by %s, not a master", slot, owner)
	}
	return masters[owner], nil
}

// slotMove moves a hash slot from one master to another in three phases,
// as redis-cli --cluster reshard does.
type slotMove struct {
	slot     int
	from, to *clusterMaster
	masters  map[string]*clusterMaster
}

// begin marks the slot importing on the target and migrating on the
// source: keys still on the source are served there, the others are
// redirected to the target with ASK.
func (m slotMove) begin(ctx context.Context) error {
	if err := m.to.c.Do(ctx, "CLUSTER", "SETSLOT", m.slot, "IMPORTING", m.from.id).Err(); err != nil {
		return fmt.Errorf("SETSLOT IMPORTING on %s: %w", m.to.addr, err)
	}
	if err := m.from.c.Do(ctx, "CLUSTER", "SETSLOT", m.slot, "MIGRATING", m.to.id).Err(); err != nil {
		return fmt.Errorf("SETSLOT MIGRATING on %s: %w", m.from.addr, err)
	}
	return nil
}

// moveKeys moves every key of the slot from the source to the target with
// MIGRATE.
func (m slotMove) moveKeys(ctx context.Context) error {
	host, port, err := net.SplitHostPort(m.to.addr)
	if err != nil {
		return err
	}
	for {
		keys, err := m.from.c.ClusterGetKeysInSlot(ctx, m.slot, 100).Result()
		if err != nil || len(keys) == 0 {
			return err
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := m.from.c.Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("MIGRATE from %s: %w", m.from.addr, err)
		}
	}
}

// finish assigns the slot to the target on every master, the target
// first, which ends the migration: clients are then redirected with MOVED.
//
// The target, importing the slot, then takes a config epoch above every
// epoch it knows of, so that its claim on the slot outranks the source's.
// finish first waits until every master knows the cluster's current epoch:
// otherwise, moved soon after another move, the target may not know the
// source's latest epoch, keep a lower one, and lose the slot again to a
// message the source sent before it was told of the move.
func (m slotMove) finish(ctx context.Context) error {
	if err := waitEpochs(ctx, m.masters); err != nil {
		return err
	}
	order := []*clusterMaster{m.to, m.from}
	for _, n := range m.masters {
		if n != m.to && n != m.from {
			order = append(order, n)
		}
	}
	for _, n := range order {
		if err := n.c.Do(ctx, "CLUSTER", "SETSLOT", m.slot, "NODE", m.to.id).Err(); err != nil {
			return fmt.Errorf("SETSLOT NODE on %s: %w", n.addr, err)
		}
	}
	return nil
}

// waitEpochs waits until every master reports the same current epoch,
// which spreads by gossip: there is nothing to wait on but CLUSTER INFO.
func waitEpochs(ctx context.Context, masters map[string]*clusterMaster) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		epochs := make(map[string]bool)
		for _, n := range masters {
			info, err := n.c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for line := range strings.SplitSeq(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_current_epoch:"); ok {
					epochs[v] = true
				}
			}
		}
		if len(epochs) == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the masters do not agree on the current epoch: %v", epochs)
		}
		time.Sleep(20 * time.Millisecond) // gossip has no event to wait on
	}
}

// restoreSlot gives slot back to owner, from whatever state a test left
// it in: it moves the slot's keys from any other master to owner, assigns
// the slot to owner on every master, and clears every importing and
// migrating mark left (SETSLOT STABLE). It then fails t unless the masters agree that
// owner serves the slot, only owner holds its keys, and the cluster is ok.
func restoreSlot(t *testing.T, masters map[string]*clusterMaster, slot int, owner *clusterMaster) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range masters {
		if n == owner {
			continue
		}
		if count, err := n.c.ClusterCountKeysInSlot(ctx, slot).Result(); err == nil && count > 0 {
			back := slotMove{slot: slot, from: n, to: owner, masters: masters}
			_ = back.begin(ctx) // either may refuse: owner may serve the slot still
			if err := back.moveKeys(ctx); err != nil {
				t.Errorf("moving the keys of slot %d back to %s: %v", slot, owner.addr, err)
			}
		}
	}
	// Assign the slot while owner is still importing it, if it is: that
	// bumps owner's config epoch, so that no stale message of the other
	// master can take the slot back. BUMPEPOCH makes sure of it.
	if err := (slotMove{slot: slot, from: owner, to: owner, masters: masters}).finish(ctx); err != nil {
		t.Errorf("giving slot %d back to %s: %v", slot, owner.addr, err)
	}
	if err := waitEpochs(ctx, masters); err != nil {
		t.Error(err)
	}
	if err := owner.c.Do(ctx, "CLUSTER", "BUMPEPOCH").Err(); err != nil {
		t.Errorf("CLUSTER BUMPEPOCH on %s: %v", owner.addr, err)
	}
	for _, n := range masters { // SETSLOT NODE leaves the marks of a node it does not name
		if err := n.c.Do(ctx, "CLUSTER", "SETSLOT", slot, "STABLE").Err(); err != nil {
			t.Errorf("SETSLOT STABLE on %s: %v", n.addr, err)
		}
	}
	requireRestored(ctx, t, masters, slot, owner)
}

// requireRestored fails t unless the masters agree that owner alone serves
// slot, only owner holds its keys, and the cluster is ok.
func requireRestored(ctx context.Context, t *testing.T, masters map[string]*clusterMaster, slot int, owner *clusterMaster) {
	if got, err := stableOwner(ctx, masters, slot); err != nil || got != owner {
		t.Errorf("after the test slot %d is not served by %s alone: %v", slot, owner.addr, err)
	}
	for _, n := range masters {
		if n != owner {
			if count, err := n.c.ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || count != 0 {
				t.Errorf("after the test %s holds %d keys of slot %d (%v)", n.addr, count, slot, err)
			}
		}
		info, err := n.c.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Errorf("after the test the cluster is not ok on %s: %v\n%s", n.addr, err, info)
		}
	}
}

// migrationFixture is a task on the test cluster, started, whose slot the
// test may move: the Tracker that writes it, the master that serves its
// slot and another one.
type migrationFixture struct {
	tr           *tracker.Tracker
	id           string
	slot         int
	owner, other *clusterMaster
	masters      map[string]*clusterMaster
}

func newMigrationFixture(t *testing.T) *migrationFixture {
	t.Helper()
	masters := clusterMasters(t)
	client, _ := clusterBackend(t)(t)
	prefix := fmt.Sprintf("tsmig:%016x:", rand.Uint64())
	t.Cleanup(func() { deleteKeys(t, client, prefix) })
	s, err := redisstore.New(client, redisstore.WithPrefix(prefix))
	require.NoError(t, err)
	f := &migrationFixture{id: "doc-migrating", masters: masters}
	f.tr, err = tracker.New(s, tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)

	ctx := t.Context()
	slot, err := client.ClusterKeySlot(ctx, redisstore.TaskKey(prefix, f.id)).Result()
	require.NoError(t, err)
	f.slot = int(slot)
	// Touch nothing unless the slot is stable: never "restore" it to a
	// master that did not serve it.
	f.owner, err = stableOwner(ctx, masters, f.slot)
	require.NoError(t, err, "the cluster must be stable before the test moves a slot")
	for _, n := range masters {
		if n != f.owner {
			f.other = n
			break
		}
	}
	// Registered after the key cleanup, so run before it: the slot is
	// back with its owner before the keys are deleted.
	t.Cleanup(func() { restoreSlot(t, masters, f.slot, f.owner) })
	require.NoError(t, f.tr.Apply(ctx, f.id, tracker.Create("parse")))
	_, err = f.tr.Start(ctx, f.id)
	require.NoError(t, err)
	return f
}

// forth and back return the move of the task's slot to the other master,
// and back to its owner.
func (f *migrationFixture) forth() slotMove {
	return slotMove{slot: f.slot, from: f.owner, to: f.other, masters: f.masters}
}

func (f *migrationFixture) back() slotMove {
	return slotMove{slot: f.slot, from: f.other, to: f.owner, masters: f.masters}
}

// TestClusterSlotMigrationKeepsAcknowledgedWrites writes a task without
// pause while its slot moves to another master and back. Each write either
// is acknowledged or fails with store.ErrUnavailable (Redis answers
// TRYAGAIN or the client gives up); every acknowledged write is in the
// final state, and the version counts exactly the writes that took effect.
func TestClusterSlotMigrationKeepsAcknowledgedWrites(t *testing.T) {
	f := newMigrationFixture(t)
	ctx := t.Context()
	w := startMigrationWriter(t, f)

	w.wait(t)
	for _, m := range []slotMove{f.forth(), f.back()} {
		require.NoError(t, m.begin(ctx))
		w.wait(t) // the key is on the source, the slot migrating
		require.NoError(t, m.moveKeys(ctx))
		w.wait(t) // the key is on the target, the slot not yet reassigned
		require.NoError(t, m.finish(ctx))
		w.wait(t) // the slot is served by the target
	}
	w.stop()

	require.Empty(t, w.unexpected, "a write either succeeds or reports the store unavailable")
	t.Logf("%d writes acknowledged, %d unavailable %v", len(w.acked), len(w.unknown), w.reasons)
	st, err := f.tr.Get(ctx, f.id)
	require.NoError(t, err)
	for _, field := range w.acked {
		require.Contains(t, st.Result, field, "an acknowledged write is kept through the migration")
	}
	took := 0
	for _, field := range w.unknown {
		if _, ok := st.Result[field]; ok {
			took++
		}
	}
	require.Len(t, st.Result, len(w.acked)+took, "only the writes made are in the state")
	require.Equal(t, int64(2+len(w.acked)+took), st.Version, "one version per write that took effect")
}

// migrationWriter writes a result field of a migration fixture's task in a
// loop, each write by id, and sorts the fields by the outcome of their
// write. Its slices and map may be read once stop returned.
type migrationWriter struct {
	writes atomic.Int64  // made so far
	tick   chan struct{} // gets a signal after a write; holds one
	halt   chan struct{} // closed by stop
	done   chan struct{} // closed when the writer returns

	mu         sync.Mutex
	acked      []string       // fields whose write was acknowledged
	unknown    []string       // fields whose write failed as unavailable
	reasons    map[string]int // of the failures as unavailable
	unexpected []error        // any other failure
}

// startMigrationWriter starts writing f's task, until stop is called or t
// ends.
func startMigrationWriter(t *testing.T, f *migrationFixture) *migrationWriter {
	w := &migrationWriter{
		tick: make(chan struct{}, 1), halt: make(chan struct{}), done: make(chan struct{}),
		reasons: make(map[string]int),
	}
	go w.run(t.Context(), f)
	t.Cleanup(w.stop)
	return w
}

func (w *migrationWriter) run(ctx context.Context, f *migrationFixture) {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.halt:
			return
		default:
		}
		field := fmt.Sprintf("w%05d", i)
		w.record(field, f.tr.Apply(ctx, f.id, tracker.SetResult(map[string]any{field: i})))
		w.writes.Add(1)
		select {
		case w.tick <- struct{}{}:
		default:
		}
	}
}

// record sorts field by err, the outcome of its write.
func (w *migrationWriter) record(field string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil:
		w.acked = append(w.acked, field)
	case errors.Is(err, store.ErrUnavailable):
		w.unknown = append(w.unknown, field)
		reason := "other"
		for _, p := range []string{"TRYAGAIN", "ASK", "MOVED", "deadline"} {
			if strings.Contains(err.Error(), p) {
				reason = p
				break
			}
		}
		w.reasons[reason]++
	default:
		w.unexpected = append(w.unexpected, err)
	}
}

// wait lets the writer make five more writes.
func (w *migrationWriter) wait(t *testing.T) {
	t.Helper()
	target := w.writes.Load() + 5
	timeout := time.After(migrationGuard)
	for w.writes.Load() < target {
		select {
		case <-w.tick:
		case <-timeout:
			t.Fatalf("the writer made no progress for %v", migrationGuard)
		}
	}
}

// stop stops the writer and waits until it has returned. It is idempotent.
func (w *migrationWriter) stop() {
	select {
	case <-w.halt:
	default:
		close(w.halt)
	}
	<-w.done
}

// TestClusterWritesDuringSlotMigration checks that a task stays writable
// while its slot is being moved: Redis serves a single-key command whose
// key is still on the source, and redirects it with ASK once the key has
// moved, and go-redis follows the redirect.
func TestClusterWritesDuringSlotMigration(t *testing.T) {
	f := newMigrationFixture(t)
	ctx := t.Context()
	m := f.forth()
	done := 0
	write := func(phase string) {
		t.Helper()
		done++
		require.NoError(t, f.tr.Apply(ctx, f.id, tracker.SetProgress(store.Progress{Done: int64(done)})), "a write while %s", phase)
		st, err := f.tr.Get(ctx, f.id)
		require.NoError(t, err, "a read while %s", phase)
		require.Equal(t, int64(done), st.Progress.Done, "the write made while %s is read back", phase)
	}
	require.NoError(t, m.begin(ctx))
	write("the slot is migrating and the task still on its source")
	require.NoError(t, m.moveKeys(ctx))
	write("the slot is migrating and the task already on its target")
	require.NoError(t, m.finish(ctx))
	write("the slot has moved")
}
