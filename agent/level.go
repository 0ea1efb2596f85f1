package agent

import (
	"strings"

	"github.com/shiplog/shiplog/model"
)

// levelScanBytes is how much of a line DetectLevel looks at.
const levelScanBytes = 512

// upperLevels are the words that state a level when written in capitals
// anywhere near the start of a line (ERROR, WARN, INF as zerolog writes it ...).
var upperLevels = map[string]model.Level{
	"TRACE": model.LevelTrace, "TRC": model.LevelTrace,
	"DEBUG": model.LevelDebug, "DBG": model.LevelDebug,
	"INFO": model.LevelInfo, "INF": model.LevelInfo, "NOTICE": model.LevelInfo,
	"WARN": model.LevelWarn, "WARNING": model.LevelWarn, "WRN": model.LevelWarn,
	"ERROR": model.LevelError, "ERR": model.LevelError, "SEVERE": model.LevelError,
	"FATAL": model.LevelFatal, "FTL": model.LevelFatal, "CRITICAL": model.LevelFatal,
	"CRIT": model.LevelFatal, "PANIC": model.LevelFatal, "EMERG": model.LevelFatal,
}

// prefixLevels are lower- or title-case words that state a level when they
// open the line (or follow "file:line: " as compilers write) with a colon:
// "panic: ...", "error: ...", "main.c:3:1: warning: ...".
var prefixLevels = map[string]model.Level{
	"panic": model.LevelFatal, "fatal": model.LevelFatal,
	"error": model.LevelError, "warning": model.LevelWarn, "warn": model.LevelWarn,
}

// levelKeys are the keys of key=value or "key":"value" level fields.
var levelKeys = map[string]bool{"level": true, "lvl": true, "severity": true, "loglevel": true, "log.level": true}

// DetectLevel reads the level a text line states about itself: "ERROR",
// "level=warn", "[WARN]", "panic:", "E0102 12:00:00.000 ..." (glog) and the
// like, normalised with model.ParseLevel. The first such word wins; a line
// that states none is info. The line is read as a terminal shows it, without
// its escape sequences: "\x1b[31mERROR\x1b[0m capture failed" is an error.
func DetectLevel(line string) model.Level {
	s := line
	if len(s) > 4*levelScanBytes {
		s = s[:4*levelScanBytes] // room for colour codes before the cut below
	}
	s = model.StripANSI(s)
	if len(s) > levelScanBytes {
		s = s[:levelScanBytes]
	}
	if lv, ok := glogLevel(s); ok {
		return lv
	}
	if strings.HasPrefix(s, "Traceback (most recent call last)") || strings.HasPrefix(s, "Exception in thread ") {
		return model.LevelError
	}
	for i := 0; i < len(s); {
		if !isLetter(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isLetter(s[j]) {
			j++
		}
		if (i > 0 && isWordByte(s[i-1])) || (j < len(s) && isWordByte(s[j])) {
			i = j // part of a longer word such as ERROR_CODE or ERRORS2
			continue
		}
		w := s[i:j]
		if keyBefore(s[:i]) {
			if lv, ok := model.ParseLevel(w); ok && lv != model.LevelUnset {
				return lv
			}
		}
		if i > 0 && j < len(s) && (s[i-1] == '[' && s[j] == ']' || s[i-1] == '<' && s[j] == '>') {
			if lv, ok := model.ParseLevel(w); ok && lv != model.LevelUnset && len(w) > 1 {
				return lv
			}
		}
		if lv, ok := upperLevels[w]; ok {
			return lv
		}
		if j < len(s) && s[j] == ':' && (i == 0 || i >= 2 && s[i-2:i] == ": ") {
			if lv, ok := prefixLevels[strings.ToLower(w)]; ok {
				return lv
			}
		}
		i = j
	}
	return model.LevelInfo
}

// glogLevel reads glog/klog's "Lmmdd hh:mm:ss" prefix.
func glogLevel(s string) (model.Level, bool) {
	if len(s) < 14 || s[5] != ' ' || s[8] != ':' {
		return 0, false
	}
	for _, c := range []byte(s[1:5]) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	switch s[0] {
	case 'I':
		return model.LevelInfo, true
	case 'W':
		return model.LevelWarn, true
	case 'E':
		return model.LevelError, true
	case 'F':
		return model.LevelFatal, true
	}
	return 0, false
}

// keyBefore reports whether prefix ends with a level key and its separator:
// `level=`, `level="`, `"level":"`, `level: `.
func keyBefore(prefix string) bool {
	p := strings.TrimRight(prefix, " \"'")
	if p == "" || (p[len(p)-1] != '=' && p[len(p)-1] != ':') {
		return false
	}
	p = strings.TrimRight(p[:len(p)-1], " \"'")
	k := len(p)
	for k > 0 && (isLetter(p[k-1]) || p[k-1] == '.' || p[k-1] == '_') {
		k--
	}
	return levelKeys[strings.ToLower(p[k:])]
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isWordByte(c byte) bool { return isLetter(c) || c >= '0' && c <= '9' || c == '_' }
