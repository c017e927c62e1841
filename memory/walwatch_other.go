//go:build !(linux || darwin || freebsd)

package memory

// openWALWatch is not available on this platform: every read runs the SQL
// freshness query.
func openWALWatch(string) *walWatch { return nil }

type shmMap struct{}

func (w *walWatch) close() {}
