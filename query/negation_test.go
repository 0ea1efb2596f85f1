package query

import (
	"fmt"
	"testing"
)

func TestNegationForms(t *testing.T) {
	for _, c := range []struct{ q, want string }{
		{"!a", "query.notNode"},
		{"-(a OR b)", "query.notNode"},
		{"+(a OR b)", "query.orNode"},
		{"!(a)", "query.notNode"},
	} {
		q, err := Parse(c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		if got := fmt.Sprintf("%T", q.root); got != c.want {
			t.Fatalf("%s parses as %s, want %s", c.q, got, c.want)
		}
	}
}
