package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// Times past 2262 do not fit int64 nanoseconds: toBatch refuses them
// instead of letting Time.UnixNano wrap (a record dated ~2610 came out as
// 2026 and was stored; one dated 2300 was refused as being from 1715).
func TestToBatchTimeRange(t *testing.T) {
	for _, tc := range []struct {
		when time.Time
		want string // "" for accepted
	}{
		{time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), ""},
		{time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "record 0: time 2300-01-01T00:00:00Z is out of range (years 1678 to 2262)"},
		{time.Date(2610, 7, 1, 0, 0, 0, 0, time.UTC), "out of range"},
		{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), "out of range"},
		{time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), "out of range"},
	} {
		b, err := toBatch(&shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "x", Time: timestamppb.New(tc.when)}}})
		if tc.want == "" {
			if err != nil || b.Records[0].Time != tc.when.UnixNano() {
				t.Fatalf("%s: %v, time %d", tc.when, err, b.Records[0].Time)
			}
			continue
		}
		if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: err %v, want invalid %q", tc.when, err, tc.want)
		}
	}
}
