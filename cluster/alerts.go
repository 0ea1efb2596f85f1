package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Alerts are evaluated once per cluster: by the holder of the "alerts" lease
// (among the nodes started with --rules), with its state in a replicated KV
// bucket and its history in a replicated stream, so the next holder goes on
// where the last one stopped: pending alerts stay pending, firing ones are not
// sent again.

const alertLease = "alerts"

// tickAlerts keeps or tries to take the alert lease.
func (n *Node) tickAlerts(ctx context.Context) {
	if n.cfg.OnAlertLease == nil {
		return
	}
	if rev := n.alertRev.Load(); rev != 0 {
		nrev, err := n.leases.Update(ctx, alertLease, []byte(n.cfg.Node), rev)
		switch {
		case err == nil:
			n.alertRev.Store(nrev)
			n.alertRenew = time.Now()
			return
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch) || time.Since(n.alertRenew) > n.cfg.LeaseTTL:
			n.alertRev.Store(0)
			n.log.Warn("cluster: lost the alert evaluation lease", "err", err)
			n.cfg.OnAlertLease(false)
		}
		return
	}
	rev, err := n.leases.Create(ctx, alertLease, []byte(n.cfg.Node))
	if err != nil {
		return
	}
	n.alertRev.Store(rev)
	n.alertRenew = time.Now()
	n.log.Info("cluster: this node evaluates the alert rules")
	n.cfg.OnAlertLease(true)
}

// AlertStore is the cluster's alert.StateStore.
func (n *Node) AlertStore() *AlertStore { return &AlertStore{n: n} }

// AlertStore keeps alert state in the replicated alerts bucket and history in
// a replicated stream.
type AlertStore struct{ n *Node }

func alertKey(k string) string { return "s." + base64.RawURLEncoding.EncodeToString([]byte(k)) }

func ctx5() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// PutAlertState writes value under key; nil deletes it.
func (a *AlertStore) PutAlertState(key string, value []byte) error {
	ctx, cancel := ctx5()
	defer cancel()
	if value == nil {
		err := a.n.alertKV.Delete(ctx, alertKey(key))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}
	_, err := a.n.alertKV.Put(ctx, alertKey(key), value)
	return err
}

// AlertStates returns every key and value.
func (a *AlertStore) AlertStates() (map[string][]byte, error) {
	ctx, cancel := ctx5()
	defer cancel()
	out := map[string][]byte{}
	keys, err := a.n.alertKV.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	for k := range keys.Keys() {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(k, "s."))
		if err != nil {
			continue
		}
		e, err := a.n.alertKV.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[string(raw)] = e.Value()
	}
	return out, nil
}

// AppendAlertHistory appends one transition, retrying for a while: the
// history stream has no leader for a few seconds during an election.
func (a *AlertStore) AppendAlertHistory(value []byte) error {
	ctx, cancel := context.WithTimeout(a.n.ctx, 30*time.Second)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := a.n.js.Publish(pctx, historySubj, value)
		pcancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// AlertHistory calls fn on transitions newest first, below seq before (0: the
// newest), until fn returns false.
func (a *AlertStore) AlertHistory(before uint64, fn func(seq uint64, value []byte) bool) error {
	ctx, cancel := ctx5()
	defer cancel()
	s, err := a.n.js.Stream(ctx, alertsHistory)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	seq := info.State.LastSeq
	if before > 0 && before-1 < seq {
		seq = before - 1
	}
	for ; seq >= info.State.FirstSeq && seq > 0; seq-- {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("alert history: %w", err)
		}
		if !fn(seq, m.Data) {
			return nil
		}
	}
	return nil
}
