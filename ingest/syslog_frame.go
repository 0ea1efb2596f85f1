package ingest

import (
	"bufio"
	"errors"
	"io"
)

// SyslogReader splits a syslog TCP stream into messages (RFC 6587). Each
// message is framed on its own: "LEN SP MSG" (octet counting) when it starts
// with digits and a space, else it runs to the next LF (newline framing).
// Blank lines and NULs between messages are skipped. A message longer than
// the maximum is cut to it (the rest is read and dropped), so the stream stays
// in step.
type SyslogReader struct {
	br  *bufio.Reader
	max int
	buf []byte
	cut bool
}

// ErrSyslogFrame is returned for an octet count that cannot be right; the
// stream cannot be followed after it.
var ErrSyslogFrame = errors.New("syslog: bad octet-counting frame")

// NewSyslogReader reads messages of up to max bytes from r.
func NewSyslogReader(r io.Reader, max int) *SyslogReader {
	return &SyslogReader{br: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next message, valid until the following call, and io.EOF
// at the end of the stream (a last message without LF is returned first).
func (s *SyslogReader) Next() ([]byte, error) {
	s.cut = false
	for {
		c, err := s.br.ReadByte()
		if err != nil {
			return nil, err
		}
		switch c {
		case '\n', '\r', 0, ' ', '\t':
			continue
		}
		_ = s.br.UnreadByte()
		if c >= '1' && c <= '9' {
			if n, ok := s.octetCount(); ok {
				return s.counted(n)
			}
		}
		return s.line()
	}
}

// Truncated reports whether the last message was cut to the maximum.
func (s *SyslogReader) Truncated() bool { return s.cut }

// octetCount reads "LEN SP" if the stream has it next.
func (s *SyslogReader) octetCount() (int, bool) {
	peek, _ := s.br.Peek(11)
	n := 0
	for i, c := range peek {
		switch {
		case c >= '0' && c <= '9' && i < 10:
			n = n*10 + int(c-'0')
		case c == ' ' && i > 0:
			_, _ = s.br.Discard(i + 1)
			return n, true
		default:
			return 0, false
		}
	}
	return 0, false
}

func (s *SyslogReader) counted(n int) ([]byte, error) {
	if n <= 0 || n > 1<<30 {
		return nil, ErrSyslogFrame
	}
	keep := min(n, s.max)
	s.buf = syslogGrow(s.buf[:0], keep)
	if _, err := io.ReadFull(s.br, s.buf); err != nil {
		return nil, syslogUnexpected(err)
	}
	if n > keep {
		s.cut = true
		if _, err := s.br.Discard(n - keep); err != nil {
			return nil, syslogUnexpected(err)
		}
	}
	return s.buf, nil
}

func (s *SyslogReader) line() ([]byte, error) {
	s.buf = s.buf[:0]
	total := 0
	for {
		frag, err := s.br.ReadSlice('\n')
		total += len(frag)
		if room := s.max - len(s.buf); room > 0 {
			s.buf = append(s.buf, frag[:min(len(frag), room)]...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == nil:
			s.cut = total-1 > s.max
			return s.buf, nil
		case err == io.EOF && total > 0:
			s.cut = total > s.max
			return s.buf, nil
		}
		return nil, err
	}
}

func syslogGrow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// syslogUnexpected is err, with io.EOF inside a frame made io.ErrUnexpectedEOF.
func syslogUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
