"""The audit tool: read the log straight from etcd, filter it, replay it, diff it, verify it, dump it.

Functional core, thin shell. The pure modules decide everything from values given to
them and are unit-tested without I/O:

- `when`: points in history as an operator names them (a revision, a time, `1h` ago);
- `filters`: which events `log` and `GET /events` show;
- `state`: the full state at one point (what `replay` prints), and `diff` between two;
- `verify`: the invariants and the tamper-evidence chain, checked event by event;
- `dump`: the portable export format and how an import is cut into transactions.

The shell is `history` (reads and writes in etcd, and the fallback over any `EventLog`)
and `cli` (the `sand-es audit` commands). The HTTP routes reuse `filters`, `state` and
`history` (see `sand_es.http.history`).
"""
