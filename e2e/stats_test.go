package e2e

import (
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// TestStatsCLI asks the built binary's server the day-one questions, over
// HTTP and with `shiplog stats`: the top hosts by errors in one deploy, and
// p99 latency by service over the last hour.
func TestStatsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	s := startServer(t, t.TempDir()+"/data")
	t0 := time.Now().Add(-30 * time.Minute)
	b := &shiplogv1.PushRequest{AgentId: "stats-agent"}
	for i := range 2000 {
		lv := "info"
		if i%10 < i%7 {
			lv = "error"
		}
		b.Records = append(b.Records, &shiplogv1.Record{Time: timestamppb.New(t0.Add(time.Duration(i) * time.Millisecond)), Seq: uint64(i + 1),
			Service: []string{"api", "web"}[i%2], Host: fmt.Sprintf("h-%d", i%5), DeployId: "deploy-9", Level: lv, Message: "done",
			Attributes: map[string]string{"latency_ms": fmt.Sprint(i % 100)}})
	}
	pushAll(t, s.dial(t), []*shiplogv1.PushRequest{b})

	var st struct {
		Groups []struct {
			Labels map[string]string `json:"labels"`
			Count  float64           `json:"count"`
		} `json:"groups"`
		Total float64 `json:"total"`
	}
	if code, body := s.getJSON(t, "/v1/logs:stats", url.Values{"q": {"level:error deploy_id:deploy-9"}, "by": {"host"}, "limit": {"10"}, "start": {"1h"}}, &st); code != 200 || len(st.Groups) != 5 {
		t.Fatalf("top hosts by errors: %d %s", code, body)
	}
	out, err := exec.Command(binary, "stats", "--server", s.grpcAddr, "--start", "1h", "--by", "service", "--agg", "quantile(0.99,latency_ms)", "--agg", "avg(latency_ms)").CombinedOutput()
	if err != nil {
		t.Fatalf("shiplog stats: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SERVICE") || !strings.Contains(lines[0], "QUANTILE(0.99,LATENCY_MS)") ||
		!strings.HasPrefix(lines[1], "api ") || !strings.Contains(lines[1], " 1000 ") || lines[3] != "total 2000" {
		t.Fatalf("shiplog stats printed:\n%s", out)
	}
	out, err = exec.Command(binary, "stats", "--server", s.grpcAddr, "--by", "message").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "InvalidArgument") {
		t.Fatalf("stats --by message: %v\n%s", err, out)
	}
}
