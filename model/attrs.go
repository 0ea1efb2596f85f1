package model

import (
	"slices"
	"strings"
)

// MergeAttrs merges two attribute lists, each sorted by key with unique keys,
// into one sorted list; on equal keys over's attribute wins. It is how a
// batch's or a resource's attributes (base) combine with a record's own
// (over). When one list is empty the other is returned as it is (not copied);
// otherwise the result is a new slice with no spare capacity.
func MergeAttrs(base, over []Attr) []Attr {
	if len(base) == 0 {
		return over
	}
	if len(over) == 0 {
		return base
	}
	out := make([]Attr, 0, len(base)+len(over))
	i, j := 0, 0
	for i < len(base) && j < len(over) {
		switch c := strings.Compare(base[i].Key, over[j].Key); {
		case c < 0:
			out = append(out, base[i])
			i++
		case c > 0:
			out = append(out, over[j])
			j++
		default:
			out = append(out, over[j])
			i, j = i+1, j+1
		}
	}
	out = append(out, base[i:]...)
	return slices.Clip(append(out, over[j:]...))
}
