package ingest

import (
	"math"
	"slices"
	"strconv"
)

// rfc3339Want is what a time that does not parse is told.
const rfc3339Want = "want an RFC 3339 time such as 2026-01-01T12:00:00.123Z"

// parseRFC3339 parses an RFC 3339 time into Unix nanoseconds; msg says what
// is wrong when it does not parse.
func parseRFC3339(b []byte) (ns int64, msg string) {
	const want = rfc3339Want
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return 0, want
	}
	year, ok1 := atoiDigits(b[0:4])
	month, ok2 := atoiDigits(b[5:7])
	day, ok3 := atoiDigits(b[8:10])
	hour, ok4 := atoiDigits(b[11:13])
	minute, ok5 := atoiDigits(b[14:16])
	sec, ok6 := atoiDigits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, want
	}
	frac, off, msg := rfc3339FracZone(b)
	if msg != "" {
		return 0, msg
	}
	switch {
	case month < 1 || month > 12:
		return 0, "month out of range"
	case day < 1 || day > monthDays(month, year):
		return 0, "day out of range"
	case hour > 23:
		return 0, "hour out of range"
	case minute > 59:
		return 0, "minute out of range"
	case sec > 59:
		return 0, "second out of range"
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - off
	return unixNanoOf(secs, frac)
}

// rfc3339FracZone reads what follows the seconds of an RFC 3339 time (at
// b[19], len(b) >= 20): an optional fraction, in nanoseconds, and the zone,
// as an offset in seconds east of UTC.
func rfc3339FracZone(b []byte) (frac, off int64, msg string) {
	const want = rfc3339Want
	i := 19
	if b[i] == '.' {
		i++
		n := 0
		for i < len(b) && jsonDigit(b[i]) {
			if n == 9 {
				return 0, 0, "more than 9 digits of fraction"
			}
			frac = frac*10 + int64(b[i]-'0')
			i, n = i+1, n+1
		}
		if n == 0 {
			return 0, 0, want
		}
		for ; n < 9; n++ {
			frac *= 10
		}
	}
	switch {
	case i < len(b) && (b[i] == 'Z' || b[i] == 'z'):
		i++
	case i < len(b) && (b[i] == '+' || b[i] == '-'):
		if len(b)-i != 6 || b[i+3] != ':' {
			return 0, 0, want
		}
		oh, ok1 := atoiDigits(b[i+1 : i+3])
		om, ok2 := atoiDigits(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, 0, "offset out of range"
		}
		off = int64(oh*3600 + om*60)
		if b[i] == '-' {
			off = -off
		}
		i += 6
	default:
		return 0, 0, want + " (with Z or an offset)"
	}
	if i != len(b) {
		return 0, 0, want
	}
	return frac, off, ""
}

// timeCache holds the date and hour of the last RFC 3339 time a decoder
// parsed: the lines of a batch mostly share them, and a time that does is
// read from its minutes on.
type timeCache struct {
	hour [13]byte // "2026-01-01T12", valid
	secs int64    // the Unix time of its start, before any offset
	ok   bool
}

// parseRFC3339 is the function of that name, reading the date and hour
// from the cache when they are the last ones.
func (c *timeCache) parseRFC3339(b []byte) (int64, string) {
	if !c.ok || len(b) < 20 || string(b[:13]) != string(c.hour[:]) {
		ns, msg := parseRFC3339(b)
		if msg == "" {
			year, _ := atoiDigits(b[0:4])
			month, _ := atoiDigits(b[5:7])
			day, _ := atoiDigits(b[8:10])
			hour, _ := atoiDigits(b[11:13])
			copy(c.hour[:], b)
			c.secs, c.ok = daysFromCivil(year, month, day)*86400+int64(hour*3600), true
		}
		return ns, msg
	}
	minute, ok1 := atoiDigits(b[14:16])
	sec, ok2 := atoiDigits(b[17:19])
	if b[13] != ':' || b[16] != ':' || !ok1 || !ok2 {
		return 0, rfc3339Want
	}
	frac, off, msg := rfc3339FracZone(b)
	switch {
	case msg != "":
		return 0, msg
	case minute > 59:
		return 0, "minute out of range"
	case sec > 59:
		return 0, "second out of range"
	}
	return unixNanoOf(c.secs+int64(minute*60+sec)-off, frac)
}

// unixNanoOf is secs and ns as Unix nanoseconds, if they fit.
func unixNanoOf(secs, ns int64) (int64, string) {
	const lo, hi = math.MinInt64 / 1_000_000_000, math.MaxInt64 / 1_000_000_000
	if secs < lo || secs > hi || secs == hi && ns > math.MaxInt64%1_000_000_000 {
		return 0, "out of range (years 1678 to 2262)"
	}
	return secs*1e9 + ns, ""
}

func atoiDigits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !jsonDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func monthDays(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to the date (proleptic
// Gregorian, year >= 0), after Howard Hinnant's algorithm.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseUnixTime reads a number of seconds, milliseconds, microseconds or
// nanoseconds since the epoch, telling them apart by size.
func parseUnixTime(b []byte) (int64, string) {
	if b[0] == '-' {
		return 0, "a Unix time must not be negative"
	}
	if slices.ContainsFunc(b, func(c byte) bool { return c == 'e' || c == 'E' }) {
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || f >= 1e19 {
			return 0, "out of range"
		}
		var ns float64
		switch {
		case f < 1e11:
			ns = f * 1e9
		case f < 1e14:
			ns = f * 1e6
		case f < 1e17:
			ns = f * 1e3
		default:
			ns = f
		}
		if ns >= math.MaxInt64 {
			return 0, "out of range (years 1678 to 2262)"
		}
		return int64(ns), ""
	}
	var whole uint64
	i := 0
	for ; i < len(b) && jsonDigit(b[i]); i++ {
		if whole > (math.MaxUint64-9)/10 {
			return 0, "out of range"
		}
		whole = whole*10 + uint64(b[i]-'0')
	}
	var unit, fracDigits uint64
	switch {
	case whole < 1e11:
		unit, fracDigits = 1e9, 9
	case whole < 1e14:
		unit, fracDigits = 1e6, 6
	case whole < 1e17:
		unit, fracDigits = 1e3, 3
	default:
		unit, fracDigits = 1, 0
	}
	var frac, n uint64
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && n < fracDigits; i, n = i+1, n+1 {
			frac = frac*10 + uint64(b[i]-'0')
		}
	}
	for ; n < fracDigits; n++ {
		frac *= 10
	}
	if whole > (math.MaxInt64-frac)/unit {
		return 0, "out of range (years 1678 to 2262)"
	}
	return int64(whole*unit + frac), ""
}
