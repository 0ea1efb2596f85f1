package ingest

// Syslog messages (RFC 5424 and RFC 3164) to records. The framing of a TCP
// stream is in syslog_frame.go; the listener is in server/syslog.go.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
)

// ErrSyslog wraps every error about a syslog message that cannot be parsed.
var ErrSyslog = errors.New("malformed syslog message")

// Attributes a syslog message adds to its record (structured data adds
// "SD-ID.PARAM-NAME").
const (
	SyslogFacilityAttr = "facility"
	SyslogProcIDAttr   = "procid"
	SyslogMsgIDAttr    = "msgid"
)

var syslogFacilities = [24]string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// syslogLevels maps severities 0 (emerg) to 7 (debug).
var syslogLevels = [8]model.Level{model.LevelFatal, model.LevelFatal, model.LevelFatal, model.LevelError,
	model.LevelWarn, model.LevelInfo, model.LevelInfo, model.LevelDebug}

func syslogErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSyslog, fmt.Sprintf(format, a...))
}

// ParseSyslog parses one syslog message, RFC 5424 ("<PRI>1 TIMESTAMP ...")
// or RFC 3164 ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG"), into a record:
// HOSTNAME to host, APP-NAME (or the 3164 TAG) to service, the severity to
// the level, facility, PROCID (or the 3164 PID) and MSGID to attributes, and
// structured data to "SD-ID.PARAM" attributes. A 3164 timestamp has neither
// year nor zone: the record then takes the time it arrived (received). An
// RFC 3339 timestamp in a 3164 message (as rsyslog can send) is kept.
// Invalid UTF-8 becomes U+FFFD. The record's strings do not alias msg.
func ParseSyslog(msg []byte, received time.Time) (model.Record, error) {
	var r model.Record
	msg = bytes.TrimRight(msg, "\r\n\x00")
	pri, rest, err := syslogPRI(msg)
	if err != nil {
		return r, err
	}
	r.Level = syslogLevels[pri&7]
	r.Attrs = append(r.Attrs, model.Attr{Key: SyslogFacilityAttr, Value: syslogFacilities[pri>>3]})
	if v, tail, ok := syslogVersion(rest); ok && v == 1 {
		err = parse5424(&r, tail)
	} else { // other versions do not exist: a 3164 message starting with a number
		parse3164(&r, rest)
	}
	if err != nil {
		return r, err
	}
	if r.Time == 0 && !received.IsZero() {
		r.Time = received.UnixNano()
	}
	r.Attrs = sortSyslogAttrs(r.Attrs)
	return r, nil
}

// syslogPRI reads "<PRI>" (0 to 191).
func syslogPRI(msg []byte) (int, []byte, error) {
	if len(msg) == 0 {
		return 0, nil, syslogErrorf("empty message")
	}
	if msg[0] != '<' {
		return 0, nil, syslogErrorf("no <PRI> at the start")
	}
	pri, i := 0, 1
	for ; i < len(msg) && i <= 4 && msg[i] >= '0' && msg[i] <= '9'; i++ {
		pri = pri*10 + int(msg[i]-'0')
	}
	if i == 1 || i >= len(msg) || msg[i] != '>' || i > 4 {
		return 0, nil, syslogErrorf("bad <PRI>")
	}
	if pri > 191 {
		return 0, nil, syslogErrorf("PRI %d is over 191", pri)
	}
	return pri, msg[i+1:], nil
}

// syslogVersion reads RFC 5424's "VERSION SP" (1 to 3 digits, no leading 0).
func syslogVersion(b []byte) (int, []byte, bool) {
	v, i := 0, 0
	for ; i < len(b) && i < 3 && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int(b[i]-'0')
	}
	if i == 0 || b[0] == '0' || i >= len(b) || b[i] != ' ' {
		return 0, nil, false
	}
	return v, b[i+1:], true
}

// field cuts b at the next space: the field (empty for "-") and what follows.
func syslogField(b []byte, name string) (string, []byte, error) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		if len(b) == 0 {
			return "", nil, syslogErrorf("RFC 5424 header ends before %s", name)
		}
		i = len(b) // the last header field, with no SD or MSG after it
	}
	if i == 0 {
		return "", nil, syslogErrorf("RFC 5424 %s is empty", name)
	}
	f := b[:i]
	if i < len(b) {
		b = b[i+1:]
	} else {
		b = nil
	}
	if len(f) == 1 && f[0] == '-' {
		return "", b, nil
	}
	return syslogString(f), b, nil
}

func syslogString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

func parse5424(r *model.Record, b []byte) error {
	ts, b, err := syslogField(b, "TIMESTAMP")
	if err != nil {
		return err
	}
	if ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return syslogErrorf("RFC 5424 TIMESTAMP %.40q is not RFC 3339", ts)
		}
		r.Time = t.UnixNano()
		if r.Time == 0 {
			r.Time = 1
		}
	}
	if r.Host, b, err = syslogField(b, "HOSTNAME"); err != nil {
		return err
	}
	if r.Service, b, err = syslogField(b, "APP-NAME"); err != nil {
		return err
	}
	var procID, msgID string
	if procID, b, err = syslogField(b, "PROCID"); err != nil {
		return err
	}
	if msgID, b, err = syslogField(b, "MSGID"); err != nil {
		return err
	}
	if procID != "" {
		r.Attrs = append(r.Attrs, model.Attr{Key: SyslogProcIDAttr, Value: procID})
	}
	if msgID != "" {
		r.Attrs = append(r.Attrs, model.Attr{Key: SyslogMsgIDAttr, Value: msgID})
	}
	switch {
	case len(b) == 0:
		return syslogErrorf("RFC 5424 header ends before STRUCTURED-DATA")
	case b[0] == '-':
		b = b[1:]
	case b[0] == '[':
		if b, err = parseSD(r, b); err != nil {
			return err
		}
	default:
		return syslogErrorf("RFC 5424 STRUCTURED-DATA must be '-' or start with '['")
	}
	if len(b) > 0 {
		if b[0] != ' ' {
			return syslogErrorf("RFC 5424: want a space after STRUCTURED-DATA")
		}
		b = bytes.TrimPrefix(b[1:], []byte("\xEF\xBB\xBF")) // a UTF-8 BOM
		// rsyslog's RSYSLOG_SyslogProtocol23Format puts a space before a
		// message it got in RFC 3164 form ("tag: msg"): drop one.
		b = bytes.TrimPrefix(b, []byte(" "))
	}
	r.Message = syslogString(b)
	return nil
}

// parseSD reads SD-ELEMENTs: [SD-ID PARAM="value" ...]..., each parameter
// becoming the attribute "SD-ID.PARAM" (repeated parameters joined with ",";
// an element with no parameter, the attribute "SD-ID" with an empty value).
func parseSD(r *model.Record, b []byte) ([]byte, error) {
	total := 0
	for len(b) > 0 && b[0] == '[' {
		b = b[1:]
		i := bytes.IndexAny(b, " ]")
		if i <= 0 {
			return nil, syslogErrorf("RFC 5424 SD-ELEMENT without an SD-ID")
		}
		id := syslogString(b[:i])
		if strings.ContainsAny(id, "=\"") {
			return nil, syslogErrorf("RFC 5424 SD-ID %.40q is not valid", id)
		}
		b = b[i:]
		params := 0
		for {
			if len(b) == 0 {
				return nil, syslogErrorf("RFC 5424 SD-ELEMENT [%.40s is not closed", id)
			}
			if b[0] == ']' {
				b = b[1:]
				break
			}
			if b[0] != ' ' {
				return nil, syslogErrorf("RFC 5424 SD-ELEMENT [%.40s: want a space before a parameter", id)
			}
			b = b[1:]
			eq := bytes.IndexByte(b, '=')
			if eq <= 0 || eq+1 >= len(b) || b[eq+1] != '"' {
				return nil, syslogErrorf("RFC 5424 SD-ELEMENT [%.40s: want PARAM=\"value\"", id)
			}
			name := syslogString(b[:eq])
			if strings.ContainsAny(name, " ]\"") {
				return nil, syslogErrorf("RFC 5424 SD-PARAM name %.40q is not valid", name)
			}
			b = b[eq+2:]
			var val []byte
			closed := false
			for j := 0; j < len(b); j++ {
				c := b[j]
				if c == '\\' && j+1 < len(b) && (b[j+1] == '"' || b[j+1] == '\\' || b[j+1] == ']') {
					val = append(val, b[j+1])
					j++
					continue
				}
				if c == '"' {
					b = b[j+1:]
					closed = true
					break
				}
				val = append(val, c)
			}
			if !closed {
				return nil, syslogErrorf("RFC 5424 SD-PARAM %.40s.%.40s: value not closed", id, name)
			}
			params++
			if total++; total > maxSDParams {
				return nil, syslogErrorf("RFC 5424 STRUCTURED-DATA has more than %d parameters", maxSDParams)
			}
			if err := addSDParam(r, id+"."+name, syslogString(val)); err != nil {
				return nil, err
			}
		}
		if params == 0 {
			if total++; total > maxSDParams {
				return nil, syslogErrorf("RFC 5424 STRUCTURED-DATA has more than %d parameters", maxSDParams)
			}
			if err := addSDParam(r, id, ""); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

func addSDParam(r *model.Record, key, val string) error {
	for i := range r.Attrs {
		if r.Attrs[i].Key == key {
			r.Attrs[i].Value += "," + val
			return nil
		}
	}
	if len(r.Attrs) >= maxSDParams {
		return syslogErrorf("RFC 5424 STRUCTURED-DATA has more than %d parameters", maxSDParams)
	}
	r.Attrs = append(r.Attrs, model.Attr{Key: key, Value: val})
	return nil
}

// maxSDParams bounds the structured data of one message (a record has at
// most 128 attributes).
const maxSDParams = 120

var syslogMonths = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parse3164 reads "TIMESTAMP HOSTNAME TAG[PID]: MSG" leniently, as relays
// must: what is missing is left out, and what does not parse is the message.
func parse3164(r *model.Record, b []byte) {
	hasTime := false
	if rest, ok := bsdTimestamp(b); ok {
		b, hasTime = rest, true // no year, no zone: the record takes the time it arrived
	} else if sp := bytes.IndexByte(b, ' '); sp >= 19 && b[4] == '-' && b[10] == 'T' {
		if t, err := time.Parse(time.RFC3339Nano, string(b[:sp])); err == nil {
			r.Time = t.UnixNano()
			b, hasTime = b[sp+1:], true
		}
	}
	// HOSTNAME, unless the next word is already the tag ("tag:", "tag[pid]:").
	// Without a timestamp, RFC 3164 has the rest read as content.
	if sp := bytes.IndexByte(b, ' '); hasTime && sp > 0 {
		w := b[:sp]
		if w[len(w)-1] != ':' && !bytes.ContainsAny(w, "[]") {
			r.Host = syslogString(w)
			b = b[sp+1:]
		}
	}
	// TAG: alphanumerics and a few marks, at most 48 bytes, then [PID] and ':'.
	i := 0
	for i < len(b) && i < 48 && b[i] != ':' && b[i] != '[' && b[i] != ' ' {
		i++
	}
	if i > 0 && i < len(b) && (b[i] == ':' || b[i] == '[') {
		tag, rest := b[:i], b[i:]
		var pid []byte
		if rest[0] == '[' {
			end := bytes.IndexByte(rest, ']')
			if end < 0 {
				r.Message = syslogString(b)
				return
			}
			pid, rest = rest[1:end], rest[end+1:]
		}
		if len(rest) > 0 && rest[0] == ':' {
			rest = rest[1:]
		}
		r.Service = syslogString(tag)
		if len(pid) > 0 {
			r.Attrs = append(r.Attrs, model.Attr{Key: SyslogProcIDAttr, Value: syslogString(pid)})
		}
		b = bytes.TrimPrefix(rest, []byte(" "))
	}
	r.Message = syslogString(b)
}

// bsdTimestamp reads "Mmm dd hh:mm:ss " (dd may be " d"), and the "Mmm dd
// yyyy hh:mm:ss " some devices send.
func bsdTimestamp(b []byte) ([]byte, bool) {
	if len(b) < 16 || b[3] != ' ' {
		return b, false
	}
	month := false
	for _, m := range syslogMonths {
		if string(b[:3]) == m {
			month = true
			break
		}
	}
	if !month || !(b[4] == ' ' || syslogDigit(b[4])) || !syslogDigit(b[5]) || b[6] != ' ' {
		return b, false
	}
	rest := b[7:]
	if len(rest) >= 5 && syslogDigit(rest[0]) && syslogDigit(rest[1]) && syslogDigit(rest[2]) && syslogDigit(rest[3]) && rest[4] == ' ' {
		rest = rest[5:] // a year
	}
	if len(rest) < 9 || !syslogDigit(rest[0]) || !syslogDigit(rest[1]) || rest[2] != ':' || !syslogDigit(rest[3]) || !syslogDigit(rest[4]) ||
		rest[5] != ':' || !syslogDigit(rest[6]) || !syslogDigit(rest[7]) {
		return b, false
	}
	rest = rest[8:]
	if len(rest) > 0 && rest[0] == '.' { // fractional seconds
		j := 1
		for j < len(rest) && syslogDigit(rest[j]) {
			j++
		}
		rest = rest[j:]
	}
	if len(rest) == 0 {
		return rest, true
	}
	if rest[0] != ' ' {
		return b, false
	}
	return rest[1:], true
}

func syslogDigit(c byte) bool { return c >= '0' && c <= '9' }

// sortSyslogAttrs sorts attributes by key and drops repeated keys (an SD-ID
// with no parameter may take the name of one of the header's attributes).
func sortSyslogAttrs(as []model.Attr) []model.Attr {
	slices.SortStableFunc(as, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
	return slices.CompactFunc(as, func(a, b model.Attr) bool { return a.Key == b.Key })
}
