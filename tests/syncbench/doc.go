// Package syncbench holds BenchmarkSideBySide: the initial sync of one
// generated corpus on a loopback Dovecot by `mailbus serve` (the
// all-in-one binary, driven with `mailbus account add`), by Debian's
// mbsync (IMAP) and mpop (POP3), and by a bare pipelined client that
// stores nothing, each once onto tmpfs and once onto disk, in one run
// (issue 11). It prints a Markdown table of wall time, CPU time and peak
// RSS, with mailbus's ratio to each peer, and reports the same figures
// with b.ReportMetric.
//
// It runs only from `make bench-initial-sync` (part of `make bench`),
// which sets MAILBUS_BENCH_INITIAL_SYNC=1: it may install isync and mpop
// with apt-get, and takes minutes. The package has no tests, so `make
// test` only compiles it. Sizes and the cases run are set by environment
// variables (see the benchmark's documentation), for example
//
//	MAILBUS_BENCH_MESSAGES=2000 make bench-initial-sync
package syncbench
