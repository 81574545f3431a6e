package tlsmail

import (
	"fmt"
	"time"
)

// noGreetingError is a placeholder until the tlsmode branch lands.
func noGreetingError(addr string, timeout time.Duration, cause error) error {
	return fmt.Errorf("%w: %s sent nothing within %v (%w)", ErrNoGreeting, addr, timeout, cause)
}
