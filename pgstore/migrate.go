package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrationFiles are the schema's migrations, NNN_name.sql each, applied
// in the order of their numbers.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the first key of the advisory lock that Migrate holds;
// the second is the hash of the schema's name.
const migrationLock = 0x7461736b // "task"

// migration is one file of migrations/.
type migration struct {
	version int
	name    string
	sql     string
}

// readMigrations returns the migrations in the order they apply.
func readMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names { // fs.Glob sorts them
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name is not NNN_name.sql", base)
		}
		sql, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: base, sql: string(sql)})
	}
	return ms, nil
}

// Migrate creates the store's schema and tables, or brings them up to
// the version this package needs, and records each migration it applies
// in the schema's migrations table. It is idempotent: a schema that is up
// to date is left as it is. Instances may call it at once: one applies
// the migrations while the others wait for its advisory lock, then find
// nothing left to do. Call it before the store's first use, with a
// deadline of the caller's choosing: unlike other calls, WithTimeout does
// not bound it.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("pgstore: migrate: %w", errClosed)
	}
	ms, err := readMigrations()
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return migrate(ctx, tx, s.schema, ms)
	})
	if err != nil {
		return wrap("migrate", err)
	}
	return nil
}

// migrate applies in tx the migrations of ms that schema lacks.
func migrate(ctx context.Context, tx pgx.Tx, schema string, ms []migration) error {
	ident := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext(%s))", migrationLock, quoteLiteral(schema)),
		"CREATE SCHEMA IF NOT EXISTS " + ident,
		"SET LOCAL search_path TO " + ident,
		`CREATE TABLE IF NOT EXISTS migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`,
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return err
		}
	}
	var applied int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM migrations").Scan(&applied); err != nil {
		return err
	}
	for _, m := range ms {
		if m.version <= applied {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return err
		}
	}
	return nil
}

// quoteLiteral returns s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
