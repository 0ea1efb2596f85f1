// Package agent is shiplog's client side: it turns lines (stdin, followed
// files, a command's output) into records and ships them to a shiplog server
// over the IngestService Push stream, so that every line is stored exactly
// once even when the server, the network or the agent itself goes away.
//
// # Delivery
//
// A Shipper numbers the records it is given (seq, per agent_id), gathers them
// into batches (by count, bytes and linger time) and writes every batch to an
// on-disk spool before it is sent. The sender keeps one Push stream open,
// pipelines a few batches on it, and deletes a batch from the spool when the
// server answers it. On a broken stream or a failed connection it moves to the
// next of Options.Servers (round robin) and resends every batch still in the
// spool; the server stores each (agent_id, seq) once and answers the resent
// ones as duplicates. Each server is tried once at once; capped exponential
// backoff with jitter comes between rounds, when all have failed. An
// Unavailable answer is a failure like any other: the batch is resent, never
// dropped; only an InvalidArgument answer drops it.
// When the spool is full the oldest batches are deleted and their records
// counted as dropped; the count travels in PushRequest.dropped.
//
// Read positions of followed files are saved with each batch written to the
// spool, so a restarted agent resends what was spooled but not acked and goes
// on reading exactly where the spooled lines end: nothing is lost, and nothing
// is sent twice under different seq numbers.
//
// # On-disk format (the spool directory)
//
//	DIR/lock              flock(2)ed by the running Shipper; holds its pid
//	DIR/agent_id          this agent's id: 32 hex digits, generated once
//	DIR/state.json        {"next_seq", "next_entry", "dropped", "positions"}
//	DIR/queue/<id>.batch  one unacked batch; <id> is 16 hex digits, increasing
//
// A batch file is
//
//	"SHIPSPL1"                    8 bytes of magic
//	uvarint len, meta             JSON: id, first_seq, last_seq, records,
//	                              next_seq, dropped, positions after this batch
//	uvarint len, request          the PushRequest, protobuf
//	crc32c                        4 bytes, little endian, of all the above
//
// Files are written to a temporary name and renamed into place; state.json is
// rewritten (also by rename) after each batch. If the agent dies between the
// two, the newest batch's meta is newer than state.json and wins at the next
// start. A batch whose checksum does not match is deleted and its records
// counted as dropped.
//
// Shipper.mu guards the current batch, the spool's index and state; the
// spool's files are written only with it held. The sender goroutine owns the
// connection and the in-flight list.
package agent
