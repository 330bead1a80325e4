//go:build race

package cli

// raceBuild builds the mailbus binary with the race detector when the
// tests run with it.
const raceBuild = true
