package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
)

// getClients is how many clients poll at once in BenchmarkStatusGETOnRedis.
const getClients = 8

// BenchmarkStatusGETOnRedis measures status polls over HTTP, getClients at
// once, of BenchmarkStatusGET's task kept in redisstore ("handler"),
// against a bare net/http handler that GETs the same document's bytes
// from Redis, as a string, and writes them with the same headers
// ("bare"), in the same run. Against the Redis server named by
// TASKSTATUS_REDIS_ADDR, or miniredis when it is unset:
//
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench StatusGETOnRedis -benchtime 20000x ./httpapi/
func BenchmarkStatusGETOnRedis(b *testing.B) {
	addr := os.Getenv("TASKSTATUS_REDIS_ADDR")
	if addr == "" {
		addr = miniredis.RunT(b).Addr()
	}
	prefix := fmt.Sprintf("tsbench%016x:", rand.Uint64())
	client := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true, ContextTimeoutEnabled: true})
	b.Cleanup(func() { require.NoError(b, client.Close()) })
	rs, err := redisstore.New(client, redisstore.WithPrefix(prefix))
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, rs.Close()) })
	f := newFixture(b)
	f.tr = f.newTracker(b, rs)
	benchTask(b, f)

	handler := http.NewServeMux()
	handler.Handle(pattern, newHandler(b, rs))
	// The bare handler serves the bytes the status handler serves.
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, statusRequest("doc-123", ""))
	require.Equal(b, http.StatusOK, rec.Code)
	key := prefix + "bare:doc-123"
	require.NoError(b, client.Set(b.Context(), key, rec.Body.Bytes(), 0).Err())
	b.Cleanup(func() {
		keys, err := client.Keys(context.Background(), prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = client.Del(context.Background(), keys...).Err()
		}
		require.NoError(b, err)
	})
	header := rec.Header()
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := client.Get(r.Context(), key).Bytes()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, name := range []string{"Content-Type", "Cache-Control", "ETag", "X-Correlation-ID"} {
			w.Header()[name] = header[name]
		}
		_, _ = w.Write(body)
	})

	for _, design := range []struct {
		name string
		h    http.Handler
	}{{"handler", handler}, {"bare", bare}} {
		b.Run(design.name, func(b *testing.B) {
			srv := httptest.NewServer(design.h)
			defer srv.Close()
			transport := srv.Client().Transport.(*http.Transport).Clone()
			transport.MaxIdleConnsPerHost = getClients
			defer transport.CloseIdleConnections()
			poll(b, &http.Client{Transport: transport}, srv.URL+"/tasks/doc-123/status")
		})
	}
}

// poll makes b.N GETs of url in all, getClients at once.
func poll(b *testing.B, client *http.Client, url string) {
	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range getClients {
		wg.Go(func() {
			for done.Add(1) <= int64(b.N) {
				req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, url, nil)
				if err != nil {
					b.Error(err)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Errorf("status %d, %v", resp.StatusCode, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
}
