// Package blackbox holds tests that build the mailbus binaries and drive
// them as an operator would: flags, environment, signals, exit codes,
// gRPC, /metrics and /healthz.
package blackbox
