package model

import (
	"strings"
	"testing"
)

func TestStripANSI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain line", "plain line"},
		{"\x1b[33mwarning:\x1b[0m unused variable", "warning: unused variable"},
		{"\x1b[31mERROR\x1b[0m capture failed", "ERROR capture failed"},
		{"\x1b[1;38;5;196mbold 256\x1b[m", "bold 256"},
		{"\x1b[38;2;255;0;0mtruecolor\x1b[39m", "truecolor"},
		{"see \x1b]8;;https://example.com\x07link\x1b]8;;\x07 here", "see link here"},
		{"title\x1b]0;my title\x1b\\ done", "title done"},
		{"\x1b(Bcharset", "charset"},
		{"save\x1b7restore\x1b8", "saverestore"},
		{"cut at the end \x1b[3", "cut at the end "},
		{"lone \x1b", "lone "},
		{"osc cut \x1b]0;title\x1b[31mred", "osc cut red"},
		{"\x1b\x1b[0mx", "x"},
		{"tab\tkept\r", "tab\tkept\r"},
		{"日本語\x1b[0mテキスト", "日本語テキスト"},
	} {
		if got := StripANSI(tc.in); got != tc.want {
			t.Errorf("StripANSI(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := HasANSI(tc.in); got != strings.Contains(tc.in, "\x1b") {
			t.Errorf("HasANSI(%q) = %v", tc.in, got)
		}
	}
}

func TestStripANSINoAlloc(t *testing.T) {
	s := strings.Repeat("a plain line of build output ", 10)
	if n := testing.AllocsPerRun(100, func() { _ = StripANSI(s) }); n != 0 {
		t.Fatalf("StripANSI allocates %v times on a line without ESC", n)
	}
}

func FuzzStripANSI(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[33mwarning:\x1b[0m", "\x1b]8;;u\x07x\x1b]8;;\x1b\\", "\x1b", "\x1b[", "\x1b(", "a\x1b\x1bb"} {
		f.Add(s, "tail")
	}
	f.Fuzz(func(t *testing.T, s, plain string) {
		out := StripANSI(s)
		if strings.IndexByte(out, esc) >= 0 {
			t.Fatalf("StripANSI(%q) = %q still holds ESC", s, out)
		}
		if len(out) > len(s) {
			t.Fatalf("StripANSI(%q) = %q grew", s, out)
		}
		if !HasANSI(s) && out != s {
			t.Fatalf("StripANSI(%q) = %q changed a line without ESC", s, out)
		}
		if again := StripANSI(out); again != out {
			t.Fatalf("not idempotent: %q then %q", out, again)
		}
		// A whole SGR sequence between two plain texts vanishes.
		if !HasANSI(plain) && !HasANSI(s) {
			if got := StripANSI(s + "\x1b[1;31m" + plain + "\x1b[0m"); got != s+plain {
				t.Fatalf("colour around %q lost text: %q", plain, got)
			}
		}
	})
}

func BenchmarkStripANSI(b *testing.B) {
	plain := "2026-01-02T03:04:05Z ok  github.com/shiplog/shiplog/query 0.412s coverage: 81.2% of statements"
	colour := "\x1b[32mok\x1b[0m  github.com/shiplog/shiplog/query \x1b[2m0.412s\x1b[0m coverage: 81.2% of statements"
	for _, c := range []struct{ name, s string }{{"plain", plain}, {"colour", colour}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.s)))
			for b.Loop() {
				_ = StripANSI(c.s)
			}
		})
	}
}

func TestParseLevelANSI(t *testing.T) {
	for in, want := range map[string]Level{
		"\x1b[31mERROR\x1b[0m": LevelError,
		"\x1b[33mWARN\x1b[0m":  LevelWarn,
		"\x1b[36minfo\x1b[39m": LevelInfo,
		"\x1b[0m":              LevelUnset,
	} {
		if got, ok := ParseLevel(in); !ok || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
}
