// Package runq is crewcore's durable run queue: CrewAI kickoffs as jobs of
// River (github.com/riverqueue/river), on an embedded SQLite file for one
// machine or on PostgreSQL for many.
//
// River owns everything a queue needs: the job table and its migrations,
// fetching and leasing (a fetched job is "running" with the fetching client's
// id), retries with backoff (River's retry policy), per-job timeouts,
// cancellation, priorities, unique jobs, scheduled and periodic jobs, and the
// rescuer that returns jobs of a worker that died to the queue. runq adds
// what is specific to crews:
//
//   - [Queue]: open a queue from a spec (a file path or a postgresql:// DSN),
//     migrate River's tables, submit runs (one job of kind [Kind] per input:
//     a crew factory named "module:attr" and a JSON object of inputs), wait
//     for results, list, show, cancel, retry and summarize them.
//   - [Worker]: a River client whose jobs are run by a [Supervisor] of Python
//     worker processes (one interpreter each, so one GIL each), talking to
//     them over pipes (see the protocol in proc.go). Results are written back
//     to the job (River's recorded output) in the same transaction that
//     completes it, so they are visible as soon as the run ends.
//
// Runs are at-least-once: a worker killed mid-run leaves its job "running"
// until River's rescuer sees it older than [WorkerConfig.RescueAfter] and
// retries it, on any worker. A crew's side effects (tool calls that write,
// send or pay) may therefore happen twice for a run that was interrupted.
package runq
