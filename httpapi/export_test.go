package httpapi

import "time"

// WithTicker makes heartbeats come from the tickers newTicker returns, with
// the function that stops each, instead of time.NewTicker.
func WithTicker(newTicker func(time.Duration) (<-chan time.Time, func())) Option {
	return func(c *config) { c.newTicker = newTicker }
}
