package smtptest

import (
	"runtime"
	"testing"
	"time"
)

// CheckGoroutines waits, for a bounded time, for the number of goroutines
// to fall back to base (a runtime.NumGoroutine reading taken before the
// code under test ran), and fails t with every goroutine's stack if it
// does not. Close any Server first, so that only the client's goroutines
// can remain.
func CheckGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d before, %d after:\n%s", base, n, buf)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
