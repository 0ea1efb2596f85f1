package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// ReadStream feeds r's lines to h until EOF (then it sends an unfinished last
// line and any waiting record) or until ctx ends. A read that blocks is not
// interrupted: on ctx's end ReadStream returns and leaves it behind.
func ReadStream(ctx context.Context, r io.Reader, h *Handler) error {
	stop := h.startTicker()
	defer stop()
	sp := newSplitter(h.opts.MaxLineBytes, func(line []byte, truncated bool, _ int64) { h.Line(line, truncated, nil) })
	type chunk struct {
		b   []byte
		err error
	}
	ch := make(chan chunk)
	free := make(chan []byte, 2)
	free <- make([]byte, 64<<10)
	free <- make([]byte, 64<<10)
	go func() {
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			n, err := r.Read(buf)
			select {
			case ch <- chunk{buf[:n], err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case c := <-ch:
			sp.Write(c.b)
			free <- c.b[:cap(c.b)]
			if c.err != nil {
				sp.Flush()
				h.Flush()
				if errors.Is(c.err, io.EOF) {
					return nil
				}
				return c.err
			}
		case <-ctx.Done():
			sp.Flush()
			h.Flush()
			return ctx.Err()
		}
	}
}

// startTicker calls Tick a few times per multiline timeout until stopped.
func (h *Handler) startTicker() (stop func()) {
	if h.opts.Format != FormatText || !h.opts.Multiline {
		return func() {}
	}
	t := time.NewTicker(max(h.opts.MultilineTimeout/4, 10*time.Millisecond))
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				h.Tick()
			case <-done:
				return
			}
		}
	}()
	return func() { t.Stop(); close(done) }
}

// FollowOptions configure Follow.
type FollowOptions struct {
	Poll time.Duration // how often to look for new lines, rotation and truncation
}

// follower is one followed path.
type follower struct {
	path string
	h    *Handler
	sh   *Shipper
	poll time.Duration
	log  *slog.Logger

	f        *os.File
	dev, ino uint64
	readOff  int64 // bytes read from f
	sp       *splitter
	buf      []byte
	gone     bool // the path was missing at the last look (logged once)
}

// Follow follows path like `tail -F` until ctx ends: it reads lines as they
// are appended, follows the path to a new file when the old one is renamed
// away, starts over when the file is truncated, and waits for a path that
// does not exist yet. It resumes from the position saved in sh's spool, also
// when the file was rotated while the agent was down (the old file is found
// by its inode in the same directory). Lines are read from the start of a
// file it has no position for. On ctx's end it reads what is there and sends
// every complete line; an unfinished last line is left for the next run.
func Follow(ctx context.Context, path string, h *Handler, sh *Shipper, opts FollowOptions, log *slog.Logger) error {
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	fl := &follower{path: abs, h: h, sh: sh, poll: opts.Poll, log: log, buf: make([]byte, 64<<10)}
	fl.sp = newSplitter(h.opts.MaxLineBytes, fl.line)
	defer func() {
		if fl.f != nil {
			fl.f.Close()
		}
	}()
	fl.resume()
	t := time.NewTicker(opts.Poll)
	defer t.Stop()
	for {
		if fl.f == nil {
			fl.open(0)
		}
		if fl.f != nil {
			fl.read()
		}
		if ctx.Err() != nil {
			h.Flush()
			return nil
		}
		if fl.f != nil {
			fl.check()
		}
		h.Tick()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

func (fl *follower) line(line []byte, truncated bool, end int64) {
	fl.h.Line(line, truncated, &Position{Path: fl.path, Dev: fl.dev, Ino: fl.ino, Offset: end})
}

// resume opens the file at its saved position, if there is one.
func (fl *follower) resume() {
	if fl.sh == nil {
		return
	}
	pos, ok := fl.sh.Position(fl.path)
	if !ok {
		return
	}
	fi, err := os.Stat(fl.path)
	if err == nil {
		if dev, ino := fileID(fi); dev == pos.Dev && ino == pos.Ino {
			if fi.Size() < pos.Offset {
				fl.log.Warn("followed file is shorter than when last read: reading it from the start", "file", fl.path)
				fl.open(0)
			} else {
				fl.open(pos.Offset)
			}
			return
		}
	}
	// Rotated (or removed) while we were away: finish the old file first, if
	// it is still in the directory under another name.
	if old := findInode(filepath.Dir(fl.path), pos.Dev, pos.Ino); old != "" {
		f, err := os.Open(old)
		if err == nil {
			if _, err = f.Seek(pos.Offset, io.SeekStart); err == nil {
				fl.log.Info("file was rotated while the agent was stopped: finishing the old one first", "file", fl.path, "old", old)
				fl.setFile(f, pos.Dev, pos.Ino, pos.Offset)
				return
			}
			f.Close()
		}
	}
	if pos.Ino != 0 {
		fl.log.Warn("file was replaced while the agent was stopped and the old one is gone: its unread end is lost", "file", fl.path)
	}
}

func findInode(dir string, dev, ino uint64) string {
	if ino == 0 {
		return ""
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			if d, i := fileID(fi); d == dev && i == ino {
				return filepath.Join(dir, de.Name())
			}
		}
	}
	return ""
}

// open opens the path at off; a missing path is waited for.
func (fl *follower) open(off int64) {
	f, err := os.Open(fl.path)
	if err != nil {
		if !fl.gone {
			if errors.Is(err, os.ErrNotExist) {
				fl.log.Info("waiting for file to appear", "file", fl.path)
			} else {
				fl.log.Warn("cannot open file; retrying", "file", fl.path, "err", err)
			}
			fl.gone = true
		}
		return
	}
	fi, err := f.Stat()
	if err == nil && off > 0 {
		_, err = f.Seek(off, io.SeekStart)
	}
	if err != nil {
		fl.log.Warn("cannot read file; retrying", "file", fl.path, "err", err)
		f.Close()
		return
	}
	if fl.gone {
		fl.log.Info("following file", "file", fl.path)
	}
	fl.gone = false
	dev, ino := fileID(fi)
	fl.setFile(f, dev, ino, off)
}

func (fl *follower) setFile(f *os.File, dev, ino uint64, off int64) {
	if fl.f != nil {
		fl.f.Close()
	}
	fl.f, fl.dev, fl.ino, fl.readOff = f, dev, ino, off
	fl.sp.Reset(off)
}

// read reads to the end of the file.
func (fl *follower) read() {
	for {
		n, err := fl.f.Read(fl.buf)
		if n > 0 {
			fl.readOff += int64(n)
			fl.sp.Write(fl.buf[:n])
		}
		if err != nil || n == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				fl.log.Warn("read error", "file", fl.path, "err", err)
			}
			return
		}
	}
}

// check looks for rotation and truncation after reading to the end.
func (fl *follower) check() {
	if fi, err := fl.f.Stat(); err == nil && fi.Size() < fl.readOff {
		fl.log.Info("file truncated: reading it from the start", "file", fl.path)
		if _, err := fl.f.Seek(0, io.SeekStart); err == nil {
			fl.h.Flush()
			fl.readOff = 0
			fl.sp.Reset(0)
			fl.read()
		}
		return
	}
	fi, err := os.Stat(fl.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !fl.gone {
			fl.log.Info("file removed or renamed: reading what was written to it and waiting for a new one", "file", fl.path)
			fl.gone = true
		}
		return // keep the old file open: a writer may still append to it
	}
	if dev, ino := fileID(fi); dev != fl.dev || ino != fl.ino {
		// Rotated: finish the old file, then start the new one from its start.
		fl.read()
		fl.sp.Flush()
		fl.h.Flush()
		fl.log.Info("file rotated: following the new one", "file", fl.path)
		fl.gone = false
		fl.open(0)
	}
}
