//go:build !linux

package runq

import (
	"context"
	"time"
)

// walNotifier is Linux's inotify watch of a -wal file; elsewhere there is
// none and waiters poll.
type walNotifier struct{}

func newWALNotifier(string) *walNotifier { return nil }

func (*walNotifier) wait(context.Context, time.Duration) bool { return false }

func (*walNotifier) close() {}
