package store

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/klauspost/compress/zstd"
)

// Message dictionaries (c values of version 5). Each message block is
// compressed on its own, so that a search decompresses only the blocks
// that may hold its word; alone, a block of a few hundred lines starts with
// no history and compresses badly (36.4 B/line in blocks of 512 lines, 33.6
// for whole chunks, on gen_logs.py's lines). A zstd dictionary made from the
// day's first messages gives every block that history: 31.8 B/line in
// blocks of 256 lines.
//
// A day's dictionary is made from samples of its first dictSampleChunks
// sealed chunks (dictSampleLines lines of each, spread over it): its history
// is dictHistory bytes of those messages, each followed by a NUL as in the
// blocks of version 6 (33.5 B/line of c values without the NULs, 33.3
// with, on gen_logs.py's lines), its entropy tables are zstd's for
// them (zstd.BuildDict). It is written under z<day> (the dictionary, in
// zstd's format, its id dictID(day)) before any chunk that uses it, and read
// back at Open. The chunks sealed before it stay without. Message blocks of
// version 5 values are zstd frames naming the dictionary they were made with
// (none, or the day's); they decode with the store's decoder, which holds
// every dictionary. Like every compressed column, they carry zstd's
// checksum of their content (its xxhash is ~2% of a rare-word search, and
// the only check that a stored message reads back as written: Badger does
// not verify values it reads), and each must decompress to the sum of its
// lines' lengths.
const (
	pfxDict          = 'z'
	dictSampleChunks = 64
	dictSampleLines  = 64
	dictHistory      = 64 << 10
	dictSampleBytes  = 1 << 20 // samples kept for one day, at most
	dictSampleDays   = 4       // days sampled at once, at most
	dictEncoders     = 2       // days whose encoders are kept (today's, yesterday's)
	// dictWindow is the dictionary encoders' window. A message block (256
	// lines, ~40 KiB) and the dictionary's history fit it, so the frames are
	// the same bytes as with zstd's default 8 MiB; only a block past it
	// finds fewer matches.
	dictWindow = 256 << 10
)

// dictID is the zstd dictionary id of day's dictionary (never 0: no
// dictionary).
func dictID(day uint32) uint32 { return day + 1 }

func dictKey(day uint32) []byte { return dayKey(pfxDict, day) }

// dayKey is the key of a value kept once a day: the prefix, then the day.
func dayKey(pfx byte, day uint32) []byte {
	k := make([]byte, 5)
	k[0] = pfx
	binary.BigEndian.PutUint32(k[1:], day)
	return k
}

// eachDay calls fn with the day and item of every day-keyed value under pfx
// (dayKey), in day order, until fn returns an error.
func eachDay(txn *badger.Txn, pfx byte, fn func(day uint32, item *badger.Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pfx}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if k := it.Item().Key(); len(k) == 5 {
			if err := fn(binary.BigEndian.Uint32(k[1:]), it.Item()); err != nil {
				return err
			}
		}
	}
	return nil
}

// msgDicts holds a store's message dictionaries.
type msgDicts struct {
	mu    sync.Mutex
	days  map[uint32]*msgDict
	train map[uint32]*dictSamples
	uses  uint64 // counts encoder uses, for dropping the least recent
	// dec decodes frames made with any of the dictionaries (nil: none).
	dec atomic.Pointer[zstd.Decoder]
}

type msgDict struct {
	raw  []byte
	enc  *zstd.Encoder // nil until used; dropped when dictEncoders others are newer
	used uint64
}

// dictSamples are the messages sampled on a day without a dictionary.
type dictSamples struct {
	chunks int
	bytes  int
	msgs   [][]byte
	failed bool // the dictionary could not be made: the day goes without
	built  bool // made, being written
}

func newMsgDicts() *msgDicts {
	return &msgDicts{days: map[uint32]*msgDict{}, train: map[uint32]*dictSamples{}}
}

// decoder returns the decoder of message blocks (the package's when there
// are no dictionaries).
func (d *msgDicts) decoder() *zstd.Decoder {
	if dec := d.dec.Load(); dec != nil {
		return dec
	}
	return zdec
}

// load reads every dictionary from Badger (at Open). A dictionary that
// zstd cannot use (a damaged record) is left out and returned in bad, so
// that the store still opens: only the chunks made with it cannot be read
// (their blocks fail with an unknown dictionary), and no other dictionary
// is made for its day (it would take the same ID).
func (d *msgDicts) load(txn *badger.Txn) (bad map[uint32]error, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err = eachDay(txn, pfxDict, func(day uint32, item *badger.Item) error {
		raw, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		if err := checkMsgDict(day, raw); err != nil {
			if bad == nil {
				bad = map[uint32]error{}
			}
			bad[day] = err
			d.train[day] = &dictSamples{failed: true}
			return nil
		}
		d.days[day] = &msgDict{raw: raw}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bad, d.rebuildDecoder()
}

// checkMsgDict tells whether raw is a dictionary zstd can decode with, of
// day's ID.
func checkMsgDict(day uint32, raw []byte) error {
	info, err := zstd.InspectDictionary(raw)
	if err != nil {
		return err
	}
	if info.ID() != dictID(day) {
		return fmt.Errorf("dictionary ID %d, want %d", info.ID(), dictID(day))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderDicts(raw))
	if err != nil {
		return err
	}
	dec.Close()
	return nil
}

// rebuildDecoder makes the decoder of every dictionary. Caller holds mu.
func (d *msgDicts) rebuildDecoder() error {
	if len(d.days) == 0 {
		d.dec.Store(nil)
		return nil
	}
	raws := make([][]byte, 0, len(d.days))
	for _, md := range d.days {
		raws = append(raws, md.raw)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30), zstd.WithDecoderDicts(raws...))
	if err != nil {
		return fmt.Errorf("message dictionaries: %w", err)
	}
	d.dec.Store(dec)
	return nil
}

// encoder returns the encoder of day's dictionary, nil when it has none.
func (d *msgDicts) encoder(day uint32) *zstd.Encoder {
	d.mu.Lock()
	defer d.mu.Unlock()
	md := d.days[day]
	if md == nil {
		return nil
	}
	d.uses++
	md.used = d.uses
	if md.enc == nil {
		// Not WithLowerEncoderMem: 5% faster with a dictionary. The
		// window is dictWindow, not zstd's 8 MiB: an encoder's history
		// buffer is sized from it (5.3 MiB an encoder, 1.4 with 256 KiB).
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderDict(md.raw), zstd.WithWindowSize(dictWindow))
		if err != nil {
			return nil
		}
		md.enc = enc
		d.dropEncoders()
	}
	return md.enc
}

// dropEncoders keeps the encoders of the dictEncoders days used last.
// Caller holds mu.
func (d *msgDicts) dropEncoders() {
	for {
		n := 0
		var oldest *msgDict
		for _, md := range d.days {
			if md.enc == nil {
				continue
			}
			n++
			if oldest == nil || md.used < oldest.used {
				oldest = md
			}
		}
		if n <= dictEncoders {
			return
		}
		oldest.enc = nil
	}
}

// sample notes the messages of a chunk of day sealed without a dictionary.
// Once dictSampleChunks are noted it makes the day's dictionary and returns
// it, to be written (then added with add); nil until then, and when the day
// has one or it cannot be made. The dictionary is made without holding mu:
// other sealers go on (with other days' encoders) meanwhile.
func (d *msgDicts) sample(day uint32, msgs []string) []byte {
	samples := d.note(day, msgs)
	if samples == nil {
		return nil
	}
	raw, err := buildMsgDict(day, samples)
	if err != nil {
		d.mu.Lock()
		if ds := d.train[day]; ds != nil {
			ds.failed = true
		}
		d.mu.Unlock()
		return nil
	}
	return raw
}

// note adds a chunk's samples to day's; once there are enough it returns
// them all (and marks the day built), else nil.
func (d *msgDicts) note(day uint32, msgs []string) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.days[day] != nil {
		return nil
	}
	ds := d.train[day]
	if ds == nil {
		d.fewerSampledDays()
		ds = &dictSamples{}
		d.train[day] = ds
	}
	if ds.failed || ds.built {
		return nil
	}
	step := max(1, len(msgs)/dictSampleLines)
	for i := 0; i < len(msgs) && ds.bytes < dictSampleBytes; i += step {
		// Followed by a NUL, as in the blocks of c values of version 6.
		ds.msgs = append(ds.msgs, append([]byte(msgs[i]), 0))
		ds.bytes += len(msgs[i]) + 1
	}
	if ds.chunks++; ds.chunks < dictSampleChunks {
		return nil
	}
	samples := ds.msgs
	ds.msgs, ds.built = nil, true
	return samples
}

// fewerSampledDays makes room to sample one more day: the samples of the
// day with the fewest chunks go when dictSampleDays are sampled (a day of
// so few lines does without). Caller holds mu.
func (d *msgDicts) fewerSampledDays() {
	dropFewestChunks(d.train, dictSampleDays, func(ds *dictSamples) int { return ds.chunks })
}

// dropFewestChunks deletes from days (samples of the first chunks of days)
// the day with the fewest chunks until fewer than most are left.
func dropFewestChunks[T any](days map[uint32]T, most int, chunks func(T) int) {
	for len(days) >= most {
		var least uint32
		n := -1
		for day, v := range days {
			if c := chunks(v); n < 0 || c < n {
				least, n = day, c
			}
		}
		delete(days, least)
	}
}

// unwritten forgets a dictionary of day that could not be written: later
// chunks are sampled for another.
func (d *msgDicts) unwritten(day uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.train, day)
}

// buildMsgDict makes day's dictionary from sampled messages.
func buildMsgDict(day uint32, msgs [][]byte) (raw []byte, err error) {
	defer func() {
		if r := recover(); r != nil { // zstd's builder on samples it did not expect
			raw, err = nil, fmt.Errorf("message dictionary: %v", r)
		}
	}()
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	step := max(1, total/dictHistory)
	var hist []byte
	for i := 0; i < len(msgs) && len(hist) < dictHistory; i += step {
		hist = append(hist, msgs[i]...)
	}
	if len(hist) > dictHistory {
		hist = hist[:dictHistory]
	}
	return zstd.BuildDict(zstd.BuildDictOptions{ID: dictID(day), Contents: msgs, History: hist,
		Offsets: [3]int{1, 4, 8}, Level: zstd.SpeedFastest})
}

// add makes a dictionary written to Badger usable.
func (d *msgDicts) add(day uint32, raw []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.train, day)
	d.days[day] = &msgDict{raw: raw}
	return d.rebuildDecoder()
}

// drop forgets day's dictionary (retention dropped the day).
func (d *msgDicts) drop(day uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.train, day)
	if d.days[day] != nil {
		delete(d.days, day)
		_ = d.rebuildDecoder()
	}
}
