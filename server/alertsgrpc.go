package server

import (
	"context"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/alert"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// The alert views over gRPC, served over HTTP too by the alerts gateway
// (alertsjson.go): GET /v1/alerts, /v1/alerts/rules, /v1/alerts/history
// and POST|PUT /-/reload.

func tsOf(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func linksProto(l alert.Links) *shiplogv1.AlertLinks {
	return &shiplogv1.AlertLinks{Logs: l.Logs, Build: l.Build, Deploy: l.Deploy}
}

func stateName(s alert.State) string {
	switch s {
	case alert.StatePending:
		return "pending"
	case alert.StateFiring:
		return "firing"
	}
	return "inactive"
}

func (s *queryServer) ListAlerts(ctx context.Context, _ *shiplogv1.ListAlertsRequest) (*shiplogv1.ListAlertsResponse, error) {
	if s.core.Alerts == nil {
		return nil, toStatus(errNoAlerting)
	}
	out := &shiplogv1.ListAlertsResponse{}
	for _, a := range s.core.Alerts.Alerts() {
		out.Alerts = append(out.Alerts, &shiplogv1.Alert{
			Group: a.Group, Rule: a.Rule, State: stateName(a.State), Labels: a.Labels, Annotations: a.Annotations,
			Value: float64(a.Value), Fingerprint: a.Fingerprint, ActiveAt: timestamppb.New(a.ActiveAt), FiredAt: tsOf(a.FiredAt), Links: linksProto(a.Links),
			ResolvedAt: tsOf(a.ResolvedAt), LastSeenAt: tsOf(a.LastSeenAt), KeepFiringSince: tsOf(a.KeepFiringSince),
			WindowStart: tsOf(a.WindowStart), WindowEnd: tsOf(a.WindowEnd),
		})
	}
	return out, nil
}

func (s *queryServer) ListAlertRules(ctx context.Context, _ *shiplogv1.ListAlertRulesRequest) (*shiplogv1.ListAlertRulesResponse, error) {
	if s.core.Alerts == nil {
		return nil, toStatus(errNoAlerting)
	}
	st := s.core.Alerts.Rules()
	out := &shiplogv1.ListAlertRulesResponse{File: st.File, LastReloadSuccessful: st.LastReloadSuccessful,
		LastReloadError: st.LastReloadError, Problems: st.Problems, LastReloadTime: tsOf(st.LastReloadTime)}
	for _, r := range st.Rules {
		out.Rules = append(out.Rules, &shiplogv1.AlertRule{
			Group: r.Group, Name: r.Name, Type: r.Type, Query: r.Query, Window: r.Window, Threshold: r.Threshold, By: r.By,
			For: r.For, Interval: r.Interval, Receivers: r.Receivers, State: r.State, Health: r.Health, LastError: r.LastError,
			LastEvaluation: tsOf(r.LastEvaluation), EvaluationSeconds: r.EvaluationSeconds, Alerts: uint32(min(r.Alerts, math.MaxUint32)),
			Kind: r.Kind, Agg: r.Agg, KeepFiringFor: r.KeepFiringFor, Labels: r.Labels, Annotations: r.Annotations,
		})
	}
	for _, g := range st.Groups {
		out.Groups = append(out.Groups, &shiplogv1.AlertGroup{Name: g.Name, Interval: g.Interval, QueryOffset: g.QueryOffset,
			Limit: int32(min(g.Limit, math.MaxInt32)), LastEvaluation: tsOf(g.LastEvaluation), EvaluationSeconds: g.EvaluationSeconds})
	}
	for _, r := range st.Receivers {
		out.Receivers = append(out.Receivers, &shiplogv1.AlertReceiver{Name: r.Name, Kind: r.Kind})
	}
	return out, nil
}

func (s *queryServer) ListAlertHistory(ctx context.Context, req *shiplogv1.ListAlertHistoryRequest) (*shiplogv1.ListAlertHistoryResponse, error) {
	if s.core.Alerts == nil {
		return nil, toStatus(errNoAlerting)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > maxHistoryPage {
		return nil, toStatus(invalid("limit \"%d\": want 1 to %d", limit, maxHistoryPage))
	}
	list, next, err := s.core.Alerts.History(req.GetCursor(), limit)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.ListAlertHistoryResponse{NextCursor: next}
	for _, t := range list {
		out.Transitions = append(out.Transitions, &shiplogv1.AlertTransition{
			Id: t.ID, Time: timestamppb.New(t.Time), Group: t.Group, Rule: t.Rule, From: t.From, To: t.To, Labels: t.Labels,
			Value: float64(t.Value), Fingerprint: t.Fingerprint, Links: linksProto(t.Links),
		})
	}
	return out, nil
}

// ReloadRules reads the rules file again (HTTP: POST or PUT /-/reload).
func (s *adminServer) ReloadRules(ctx context.Context, _ *shiplogv1.ReloadRulesRequest) (*shiplogv1.ReloadRulesResponse, error) {
	if s.core.Alerts == nil {
		return nil, toStatus(errNoAlerting)
	}
	if err := s.core.Alerts.Reload(); err != nil {
		return nil, toStatus(err)
	}
	return &shiplogv1.ReloadRulesResponse{Status: "reloaded"}, nil
}
