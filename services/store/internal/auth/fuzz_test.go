package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/apitoken"
)

// FuzzParse: Parse never panics; what it accepts is "mbt_<16 hex>_<secret>"
// of at most 256 bytes, with that id and the token's hash; a token formatted
// the way apitoken.Generate does parses back to its id.
func FuzzParse(f *testing.F) {
	f.Add("mbt_0123456789abcdef_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U", []byte("01234567"), []byte("secret"))
	f.Add("mbt_0123456789abcdeg_x", []byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte{})
	f.Add("mbt_0123456789abcdef_", []byte{0xff}, []byte{0xff})
	f.Add("mbt_0123456789ABCDEF__"+strings.Repeat("x", 300), []byte("12345678"), bytes.Repeat([]byte{7}, 32))
	f.Add("Bearer mbt_0123456789abcdef_x", []byte("\x00"), []byte("\x00"))
	f.Fuzz(func(t *testing.T, token string, rawID, secret []byte) {
		id, hash, err := Parse(token)
		if err == nil {
			if !strings.HasPrefix(token, apitoken.Prefix+id+"_") || len(id) != apitoken.IDLen || len(token) > 256 ||
				len(token) == len(apitoken.Prefix)+len(id)+1 || !bytes.Equal(hash, Hash(token)) {
				t.Fatalf("Parse(%q) accepted with id %q", token, id)
			}
			if _, herr := hex.DecodeString(id); herr != nil {
				t.Fatalf("Parse(%q): id %q is not hex", token, id)
			}
		} else if id != "" || hash != nil {
			t.Fatalf("Parse(%q) failed but returned %q, %x", token, id, hash)
		}

		// parse(format(x)) == x for the token format of apitoken.Generate.
		if len(rawID) < 8 || len(secret) == 0 || len(secret) > 150 {
			return
		}
		wantID := hex.EncodeToString(rawID[:8])
		tok := apitoken.Prefix + wantID + "_" + base64.RawURLEncoding.EncodeToString(secret)
		gotID, gotHash, err := Parse(tok)
		if err != nil || gotID != wantID || !bytes.Equal(gotHash, Hash(tok)) || apitoken.Check(tok) != nil {
			t.Fatalf("Parse(%q) = %q, %v; want id %q", tok, gotID, err, wantID)
		}
	})
}
