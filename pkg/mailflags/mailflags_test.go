package mailflags

import (
	"slices"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr bool
	}{
		{in: nil, want: []string{}},
		{in: []string{`\seen`, `\SEEN`, `$Forwarded`}, want: []string{`$Forwarded`, `\Seen`}},
		{in: []string{`\Flagged`, `Work`, `work`}, want: []string{`Work`, `\Flagged`}},
		{in: []string{`\Recent`}, wantErr: true},
		{in: []string{`has space`}, wantErr: true},
		{in: []string{`par(en`}, wantErr: true},
		{in: []string{""}, wantErr: true},
		{in: []string{"caf\xc3\xa9"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Normalize(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !slices.Equal(got, tt.want) {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		set, add, remove           []string
		want, wantAdded, wantRemov []string
	}{
		{set: []string{`\Seen`}, add: []string{`\Seen`}, want: []string{`\Seen`}},
		{set: nil, add: []string{`\Seen`, `\Flagged`}, want: []string{`\Flagged`, `\Seen`}, wantAdded: []string{`\Seen`, `\Flagged`}},
		{set: []string{`\Seen`, `a`}, remove: []string{`A`, `b`}, want: []string{`\Seen`}, wantRemov: []string{`A`}},
	}
	for _, tt := range tests {
		got, added, removed := Apply(tt.set, tt.add, tt.remove)
		if !slices.Equal(got, tt.want) || !slices.Equal(added, tt.wantAdded) || !slices.Equal(removed, tt.wantRemov) {
			t.Errorf("Apply(%q,+%q,-%q) = %q +%q -%q", tt.set, tt.add, tt.remove, got, added, removed)
		}
	}
}

func TestDiffCommutes(t *testing.T) {
	from := []string{`\Seen`, `x`}
	to := []string{`\Flagged`, `x`}
	added, removed := Diff(from, to)
	got, _, _ := Apply(from, added, removed)
	if !slices.Equal(got, to) {
		t.Fatalf("Apply(Diff) = %q, want %q", got, to)
	}
}
