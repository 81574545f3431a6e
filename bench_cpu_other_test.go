//go:build !unix

package tlsmail

import "time"

// cpuTime returns 0 where getrusage is not available; the benchmarks then
// report no CPU figures.
func cpuTime() time.Duration { return 0 }
