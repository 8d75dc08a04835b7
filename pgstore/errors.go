package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskstatus/taskstatus/store"
)

// classify returns the sentinel error of package store that err, returned
// by pgx, stands for, or nil if none does. A canceled context stands for
// none: the caller gave up, the store did not fail.
func classify(err error) error {
	var pgErr *pgconn.PgError
	var connErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return nil
	case errors.As(err, &pgErr):
		return classifyCode(pgErr.Code)
	case errors.Is(err, context.DeadlineExceeded),
		pgconn.Timeout(err),
		errors.As(err, &connErr),
		errors.As(err, &netErr),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		pgconn.SafeToRetry(err):
		return store.ErrUnavailable
	}
	return nil
}

// classifyCode returns store.ErrUnavailable for the SQLSTATE codes that
// mean the server cannot answer now but may soon: a connection exception
// (class 08), insufficient resources (53), an operator intervention such
// as a shutdown or a server starting (57P01 to 57P05), a system error
// (58), and a query canceled by a statement timeout (57014).
func classifyCode(code string) error {
	for _, prefix := range []string{"08", "53", "57P0", "58", "57014"} {
		if strings.HasPrefix(code, prefix) {
			return store.ErrUnavailable
		}
	}
	return nil
}

// wrap returns err from pgx as the error of op, such as `get "x"`,
// wrapping the sentinel error that classify finds as well as err itself.
func wrap(op string, err error) error {
	if kind := classify(err); kind != nil {
		return fmt.Errorf("pgstore: %s: %w: %w", op, kind, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}
