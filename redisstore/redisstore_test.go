package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store/storetest"
)

// The environment variables that point the tests at real servers. CI sets
// them; when one is set, its server must answer.
const (
	envAddr         = "TASKSTATUS_REDIS_ADDR"          // host:port of a Redis server
	envClusterAddrs = "TASKSTATUS_REDIS_CLUSTER_ADDRS" // comma-separated host:port of cluster nodes
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A backend opens a client of one Redis deployment, closed when t ends,
// and says how to make time pass for the keys under a prefix.
type backend func(t *testing.T) (redis.UniversalClient, advanceFunc)

// advanceFunc makes d of the server's time pass for the keys under prefix.
type advanceFunc func(t *testing.T, prefix string, d time.Duration)

// TestConformanceMiniredis runs the store contract against miniredis, a new
// server per subtest.
func TestConformanceMiniredis(t *testing.T) {
	runConformance(t, miniredisBackend)
}

// TestConformanceRedis runs the store contract against the Redis server
// named by TASKSTATUS_REDIS_ADDR.
func TestConformanceRedis(t *testing.T) {
	runConformance(t, redisBackend(t))
}

// TestConformanceCluster runs the store contract against the Redis Cluster
// named by TASKSTATUS_REDIS_CLUSTER_ADDRS.
func TestConformanceCluster(t *testing.T) {
	runConformance(t, clusterBackend(t))
}

// runConformance runs storetest.Run on stores of b, each with a key prefix
// of its own, as New makes them and with WithCompactEnded.
func runConformance(t *testing.T, b backend) {
	for _, form := range []struct {
		name string
		opts []redisstore.Option
	}{{"json", nil}, {"compact-ended", []redisstore.Option{redisstore.WithCompactEnded()}}} {
		t.Run(form.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) storetest.Fixture {
				s, _, advance := newTestStore(t, b, form.opts...)
				return storetest.Fixture{Store: s, Advance: advance}
			})
		})
	}
}

// newTestStore returns a store on a new client of b, under a random prefix
// whose keys are deleted when t ends, and the means to make its time pass.
func newTestStore(t *testing.T, b backend, opts ...redisstore.Option) (*redisstore.Store, redis.UniversalClient, func(*testing.T, time.Duration)) {
	t.Helper()
	client, advance := b(t)
	prefix := fmt.Sprintf("tstest:%016x:", rand.Uint64())
	t.Cleanup(func() { deleteKeys(t, client, prefix) })
	s, err := redisstore.New(client, append([]redisstore.Option{redisstore.WithPrefix(prefix)}, opts...)...)
	require.NoError(t, err)
	return s, client, func(t *testing.T, d time.Duration) { advance(t, prefix, d) }
}

func miniredisBackend(t *testing.T) (redis.UniversalClient, advanceFunc) {
	mr := miniredis.RunT(t)
	now := time.Now()
	mr.SetTime(now)
	return newClient(t, mr.Addr()), func(_ *testing.T, _ string, d time.Duration) {
		now = now.Add(d)
		mr.SetTime(now) // the clock of TIME, by which the expiry indexes go
		mr.FastForward(d)
	}
}

// redisAddr returns the address of the server named by
// TASKSTATUS_REDIS_ADDR. It skips t if the variable is unset and fails it
// if the server does not answer.
func redisAddr(t *testing.T) string {
	addr := os.Getenv(envAddr)
	if addr == "" {
		t.Skipf("%s is not set: no Redis server to test against", envAddr)
	}
	requireAnswers(t, newClient(t, addr), envAddr)
	return addr
}

// redisBackend returns the backend of the server named by
// TASKSTATUS_REDIS_ADDR. It skips t if the variable is unset and fails it
// if the server does not answer.
func redisBackend(t *testing.T) backend {
	addr := redisAddr(t)
	return func(t *testing.T) (redis.UniversalClient, advanceFunc) {
		c := newClient(t, addr)
		return c, func(t *testing.T, prefix string, d time.Duration) { advanceTTLs(t, c, prefix, d) }
	}
}

// clusterBackend returns the backend of the cluster named by
// TASKSTATUS_REDIS_CLUSTER_ADDRS. It skips t if the variable is unset and
// fails it if the cluster does not answer.
func clusterBackend(t *testing.T) backend {
	addrs := os.Getenv(envClusterAddrs)
	if addrs == "" {
		t.Skipf("%s is not set: no Redis Cluster to test against", envClusterAddrs)
	}
	requireAnswers(t, newClusterClient(t, addrs), envClusterAddrs)
	return func(t *testing.T) (redis.UniversalClient, advanceFunc) {
		c := newClusterClient(t, addrs)
		return c, func(t *testing.T, prefix string, d time.Duration) { advanceTTLs(t, c, prefix, d) }
	}
}

// newClient returns a client of the server at addr, closed when t ends.
func newClient(t testing.TB, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newClusterClient returns a client of the cluster at the comma-separated
// addrs, closed when t ends.
func newClusterClient(t testing.TB, addrs string) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: strings.Split(addrs, ","), DisableIdentity: true, ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireAnswers fails t unless c answers PING on every master. env names
// the variable that pointed the test at the server.
func requireAnswers(t *testing.T, c redis.UniversalClient, env string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := eachMaster(ctx, c, func(ctx context.Context, n *redis.Client) error {
		return n.Ping(ctx).Err()
	})
	if err != nil {
		t.Fatalf("%s=%q is set but the server does not answer PING: %v", env, os.Getenv(env), err)
	}
}

// eachMaster calls fn with a client of each master: every node of a
// cluster, or c itself.
func eachMaster(ctx context.Context, c redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unsupported client %T", c)
}

// scanKeys returns the keys under prefix on node n.
func scanKeys(ctx context.Context, n *redis.Client, prefix string) ([]string, error) {
	var keys []string
	iter := n.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// deleteKeys deletes every key under prefix.
func deleteKeys(t testing.TB, c redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a benchmark leaves a million keys
	defer cancel()
	err := eachMaster(ctx, c, func(ctx context.Context, n *redis.Client) error {
		keys, err := scanKeys(ctx, n, prefix)
		for batch := range slices.Chunk(keys, 1000) {
			if _, err := n.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range batch {
					p.Unlink(ctx, k)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return err
	})
	if err != nil {
		t.Errorf("deleting the keys under %q: %v", prefix, err)
	}
}

// advanceTTLs makes d pass for the keys under prefix on a real server,
// whose clock cannot be moved: it shortens each time to live by d, and
// deletes the keys whose time to live ends within d. Keys without a time
// to live are left alone.
func advanceTTLs(t *testing.T, c redis.UniversalClient, prefix string, d time.Duration) {
	t.Helper()
	err := eachMaster(t.Context(), c, func(ctx context.Context, n *redis.Client) error {
		keys, err := scanKeys(ctx, n, prefix)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "}i:expiry") {
				if err := advanceExpiries(ctx, n, k, d); err != nil {
					return err
				}
				continue
			}
			ttl, err := n.PTTL(ctx, k).Result()
			switch {
			case err != nil:
				return err
			case ttl <= 0: // no time to live (-1), or gone (-2)
			case ttl <= d:
				err = n.Del(ctx, k).Err()
			default:
				err = n.PExpire(ctx, k, ttl-d).Err()
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err, "advancing the time of the keys under %q", prefix)
}

// advanceExpiries makes the tasks of expiry index key expire d earlier, as
// advanceTTLs does their hashes.
func advanceExpiries(ctx context.Context, n *redis.Client, key string, d time.Duration) error {
	entries, err := n.ZRangeWithScores(ctx, key, 0, -1).Result()
	if err != nil || len(entries) == 0 {
		return err
	}
	for i := range entries {
		entries[i].Score -= float64(d.Milliseconds())
	}
	return n.ZAdd(ctx, key, entries...).Err()
}
