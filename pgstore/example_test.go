package pgstore_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/tracker"
)

// Open a store and create or update its tables; create a task in the
// transaction of the business write it goes with (both commit, or neither
// does), and read its history. Not run by go test: it needs a server.
func Example() {
	if err := createDocument(context.Background(), "postgres://localhost:5432/app", "doc-123"); err != nil {
		log.Fatal(err)
	}
}

func createDocument(ctx context.Context, url, id string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, err := pgstore.New(pool)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		return err
	}

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO documents (id) VALUES ($1)", id); err != nil {
			return err
		}
		tr, err := tracker.New(s.InTx(tx))
		if err != nil {
			return err
		}
		return tr.Apply(ctx, id, tracker.Create("parse", "index"))
	})
	if err != nil {
		return err
	}

	history, err := s.History(ctx, id)
	if err != nil {
		return err
	}
	log.Printf("%d transitions", len(history))
	return nil
}
