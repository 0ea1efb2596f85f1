// Package alert evaluates alert and recording rules over logs and metrics
// and notifies receivers: a generic webhook (Alertmanager's webhook body),
// Slack incoming webhooks, and Alertmanagers (their /api/v2/alerts, as
// Prometheus posts it: alertmanager.go).
//
// # Rules file
//
// Prometheus rule-group YAML plus a receivers: list (rules.go, rules_rule.go;
// docs/rules.md); what promtool accepts loads. A rule is an alerting rule
// (alert:) or a recording rule (record:), over expr: (PromQL) or logs: (a
// query string counted, or aggregated with agg:, over window:, per by:
// group). Parse reports every problem with its line and column.
//
// Recording rules (record.go) write their result through AppendFunc at each
// evaluation, with stale markers for series that went away. Templates are
// Prometheus' own (template.go runs prometheus/template).
//
// # Evaluation
//
// Manager runs each group on its interval (group.go). A rule's alerts move
// between Prometheus' states: inactive -> pending (active, waiting for for:)
// -> firing -> inactive (resolved; kept for ResolvedRetention so the
// resolution is notified, and for keep_firing_for after the condition stops).
// Rules meet the engines through function types: LogsQueryFunc counts log
// lines, QueryFunc runs an instant PromQL query. Options.Now is the clock and
// Manager.EvalAll a manual trigger, so tests need no sleeping.
//
// # State
//
// Rule state (the alerts of each rule) and the notification log (what each
// receiver was last told of each rule) are written through StateStore after
// every change, and read back by NewManager and NewNotifier: a restart keeps
// pending alerts pending and does not notify again what was already notified.
// Transitions are appended to a history read newest first.
//
// # Notifications
//
// After each evaluation the Manager hands every rule's firing and just
// resolved alerts to a NotifyFunc. Notifier (notify.go) keeps the latest of
// them per rule in a queue per receiver; one goroutine per receiver sends what
// the notification log says is new (an alert newly firing, one resolved, or a
// repeat after RepeatInterval), retrying with backoff. A slow receiver delays
// only itself, never evaluation.
//
// # Locking
//
// Manager.mu guards the loaded groups and reload status. Each rule's state
// (ruleState.mu) guards its alerts and health; group.evalMu serialises
// evaluations of one group. In the Notifier, queue.mu guards a receiver's
// pending notifications and Notifier.mu the notification log.
package alert
