package e2e

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// rawMessage is a message already in wire form.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(rawMessage); ok {
		return m, nil
	}
	return nil, fmt.Errorf("rawCodec: %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(*rawMessage); ok {
		*m = append((*m)[:0], data...)
		return nil
	}
	return fmt.Errorf("rawCodec: %T", v)
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

func forceRaw() grpc.CallOption { return grpc.ForceCodec(rawCodec{}) }
