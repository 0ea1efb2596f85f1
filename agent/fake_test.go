package agent

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// fakeServer is an IngestService that dedups by (agent_id, seq) like the real
// store: a seq at or below the agent's highest is a duplicate. Its func
// fields inject faults.
type fakeServer struct {
	shiplogv1.UnimplementedIngestServiceServer
	*fakeStore
	t    testing.TB
	addr string
	srv  *grpc.Server

	// breakAfterStore, when it returns true for a batch, stores the batch and
	// then ends the stream without answering (a crash after the write).
	breakAfterStore func(req *shiplogv1.PushRequest) bool
	// reject, when it returns true, refuses the batch as invalid.
	reject func(req *shiplogv1.PushRequest) bool
	// unavailable, when it returns true, answers the batch Unavailable
	// without storing it (a cluster node whose log cannot ack in time).
	unavailable func(req *shiplogv1.PushRequest) bool

	storedHere int // records this server stored (guarded by fakeStore.mu)
}

// fakeStore is what fakeServers hold: their own, or one shared by several
// (the replicated log of a cluster).
type fakeStore struct {
	mu         sync.Mutex
	acked      map[string]uint64
	stored     []*shiplogv1.Record
	duplicates int
	reqs       []*shiplogv1.PushRequest
	changed    chan struct{}
}

func newFakeServer(t testing.TB, addr string) *fakeServer {
	t.Helper()
	return newFakeServerSharing(t, addr, nil)
}

// newFakeServerSharing starts a fake that stores into other's store (its own
// one when other is nil).
func newFakeServerSharing(t testing.TB, addr string, other *fakeServer) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t}
	if other != nil {
		f.fakeStore = other.fakeStore
	} else {
		f.fakeStore = &fakeStore{acked: map[string]uint64{}, changed: make(chan struct{})}
	}
	f.start(addr)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeServer) start(addr string) {
	f.t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a stopped fake may take a moment to free
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.srv = grpc.NewServer()
	shiplogv1.RegisterIngestServiceServer(f.srv, f)
	go f.srv.Serve(l)
}

func (f *fakeServer) stop() {
	if f.srv != nil {
		f.srv.Stop()
		f.srv = nil
	}
}

func (f *fakeServer) Push(stream grpc.BidiStreamingServer[shiplogv1.PushRequest, shiplogv1.PushResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if f.reject != nil && f.reject(req) {
			return status.Error(codes.InvalidArgument, "record 0: poisoned")
		}
		if f.unavailable != nil && f.unavailable(req) {
			return status.Error(codes.Unavailable, "replicated log did not ack in time")
		}
		resp := f.store(req)
		if f.breakAfterStore != nil && f.breakAfterStore(req) {
			return status.Error(codes.Unavailable, "crashed after the write")
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeServer) store(req *shiplogv1.PushRequest) *shiplogv1.PushResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	resp := &shiplogv1.PushResponse{}
	for _, r := range req.Records {
		if r.Seq <= f.acked[req.AgentId] {
			resp.Duplicates++
			f.duplicates++
			continue
		}
		f.acked[req.AgentId] = r.Seq
		f.stored = append(f.stored, r)
		f.storedHere++
		resp.Accepted++
	}
	resp.AckedSeq = f.acked[req.AgentId]
	close(f.changed)
	f.changed = make(chan struct{})
	return resp
}

// waitStored waits until n records are stored.
func (f *fakeServer) waitStored(n int, within time.Duration) {
	f.t.Helper()
	deadline := time.After(within)
	for {
		f.mu.Lock()
		got, ch := len(f.stored), f.changed
		f.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			f.t.Fatalf("%d records stored after %s, want %d", got, within, n)
		}
	}
}

func (f *fakeServer) storedByThis() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.storedHere
}

func (f *fakeServer) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.stored))
	for i, r := range f.stored {
		out[i] = r.Message
	}
	return out
}

func (f *fakeServer) lastReq() *shiplogv1.PushRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return nil
	}
	return f.reqs[len(f.reqs)-1]
}
