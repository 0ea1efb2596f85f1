package query

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// The error that stopped a parallel scan is answered, not the cancellation
// the other workers saw because of it (TestStatsTooManyGroups once got 499
// Canceled instead of 429).
func TestWorkerErrPrefersTheCause(t *testing.T) {
	cause := fmt.Errorf("%w: more than 50 groups", ErrTooManyGroups)
	if err := workerErr([]error{context.Canceled, nil, cause}); err != cause {
		t.Errorf("got %v", err)
	}
	if err := workerErr([]error{nil, context.Canceled}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
	if err := workerErr([]error{nil, nil}); err != nil {
		t.Errorf("got %v", err)
	}
}
