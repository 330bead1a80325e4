package envflag

import (
	"flag"
	"io"
	"testing"
)

func TestCommandParse(t *testing.T) {
	tests := []struct {
		args     []string
		wantOK   bool
		wantCode int
	}{
		{args: nil, wantOK: true},
		{args: []string{"--log-level", "debug", "--log-format", "json"}, wantOK: true},
		{args: []string{"--help"}, wantCode: 0},
		{args: []string{"--no-such-flag"}, wantCode: 2},
		{args: []string{"stray"}, wantCode: 2},
		{args: []string{"--log-level", "loud"}, wantCode: 2},
		{args: []string{"--log-format", "xml"}, wantCode: 2},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		log, code, ok := NewCommand("x", fs).Parse(tt.args)
		if ok != tt.wantOK || code != tt.wantCode || (ok && log == nil) {
			t.Errorf("Parse(%q) = (%v, %d, %v), want ok %v code %d", tt.args, log, code, ok, tt.wantOK, tt.wantCode)
		}
	}
}
