package server

import (
	"io"

	"google.golang.org/grpc"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

type adminServer struct {
	shiplogv1.UnimplementedAdminServiceServer
	core Core
}

// streamWriter sends what is written as BackupResponse messages of up to 1 MiB.
type streamWriter struct {
	stream grpc.ServerStreamingServer[shiplogv1.BackupResponse]
}

func (w streamWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 1<<20)
		if err := w.stream.Send(&shiplogv1.BackupResponse{Data: p[:k]}); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (s *adminServer) Backup(_ *shiplogv1.BackupRequest, stream grpc.ServerStreamingServer[shiplogv1.BackupResponse]) error {
	if s.core.Backup == nil {
		return toStatus(invalid("backup is not available on this server"))
	}
	return toStatus(s.core.Backup(streamWriter{stream}))
}

var _ io.Writer = streamWriter{}
