package model

import (
	"slices"
	"testing"
)

func TestMergeAttrs(t *testing.T) {
	a := func(kv ...string) []Attr {
		var out []Attr
		for i := 0; i < len(kv); i += 2 {
			out = append(out, Attr{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	cases := []struct {
		name             string
		base, over, want []Attr
	}{
		{"both empty", nil, nil, nil},
		{"base only", a("env", "prod"), nil, a("env", "prod")},
		{"over only", nil, a("env", "dev"), a("env", "dev")},
		{"disjoint interleaved", a("a", "1", "c", "3", "e", "5"), a("b", "2", "d", "4"), a("a", "1", "b", "2", "c", "3", "d", "4", "e", "5")},
		{"over wins", a("env", "prod", "region", "eu"), a("env", "dev"), a("env", "dev", "region", "eu")},
		{"all equal keys", a("k", "base", "z", "base"), a("k", "over", "z", "over"), a("k", "over", "z", "over")},
		{"tails", a("x", "1", "y", "2"), a("a", "0"), a("a", "0", "x", "1", "y", "2")},
		{"empty value over", a("k", "v"), a("k", ""), a("k", "")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, over := slices.Clone(c.base), slices.Clone(c.over)
			got := MergeAttrs(c.base, c.over)
			if !slices.Equal(got, c.want) {
				t.Fatalf("MergeAttrs(%v, %v) = %v, want %v", c.base, c.over, got, c.want)
			}
			if !slices.Equal(base, c.base) || !slices.Equal(over, c.over) {
				t.Fatal("inputs modified")
			}
			if len(c.base) > 0 && len(c.over) > 0 {
				if cap(got) != len(got) {
					t.Fatalf("spare capacity %d > %d", cap(got), len(got))
				}
				got[0].Value = "changed"
				if c.base[0].Value == "changed" || c.over[0].Value == "changed" {
					t.Fatal("result shares memory with an input")
				}
			}
		})
	}
}
