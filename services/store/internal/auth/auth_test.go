package auth

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestEveryMethodHasARule walks every service of package mailbus.v1: a
// method without a rule would be refused to everybody.
func TestEveryMethodHasARule(t *testing.T) {
	_ = mailbusv1.File_mailbus_v1_token_proto // link the generated files
	n := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("mailbus.v1", func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			s := f.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				m := "/" + string(s.FullName()) + "/" + string(s.Methods().Get(j).Name())
				n++
				if !HasRule(m) {
					t.Errorf("%s has no rule in rules", m)
				}
			}
		}
		return true
	})
	if n != len(rules) {
		t.Errorf("%d methods, %d rules: a rule names a method that does not exist", n, len(rules))
	}
}

func TestTokenFormat(t *testing.T) {
	tok, id, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "mbt_"+id+"_") || len(tok) < 50 {
		t.Fatalf("token %q, id %q", tok, id)
	}
	gotID, gotHash, err := Parse(tok)
	if err != nil || gotID != id || !bytes.Equal(gotHash, hash) {
		t.Fatalf("Parse: %q %x %v; want %q %x", gotID, gotHash, err, id, hash)
	}
	other, _, _, _ := NewToken()
	if other == tok {
		t.Fatal("two tokens alike")
	}
	for _, bad := range []string{"", "mbt_", "mbt_abc_def", "xyz_0123456789abcdef_secret", "mbt_0123456789abcdeg_secret", "mbt_0123456789abcdef_", "mbt_0123456789abcdef"} {
		if _, _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestWithArticle(t *testing.T) {
	for word, want := range map[string]string{"admin": "an admin", "device": "a device", "service": "a service", "unspecified": "an unspecified"} {
		if got := withArticle(word); got != want {
			t.Errorf("withArticle(%q) = %q, want %q", word, got, want)
		}
	}
}
