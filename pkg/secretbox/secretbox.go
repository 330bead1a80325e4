// Package secretbox encrypts small secrets (upstream passwords, OAuth
// tokens) at rest with AES-256-GCM.
//
// A sealed value is: version byte (1) | key id (4 bytes, big endian) |
// nonce (12 bytes) | ciphertext with tag. The key id is the first four bytes
// of SHA-256 of the key, so that a Box holding several keys (during a key
// rotation) opens values sealed under any of them and seals under the first.
// The additional data binds a sealed value to its owner (for example the
// account id), so a ciphertext copied to another row does not open.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mailbus/mailbus/pkg/privatefile"
)

// KeySize is the size of a key in bytes.
const KeySize = 32

const (
	version    = 1
	headerSize = 1 + 4
	nonceSize  = 12
)

// ErrNoKey is returned by Open for a value sealed under a key the Box does
// not hold.
var ErrNoKey = errors.New("secretbox: sealed under an unknown key")

// ErrCorrupt is returned by Open for a value that is not a sealed value or
// fails authentication.
var ErrCorrupt = errors.New("secretbox: corrupt or tampered value")

type key struct {
	id   uint32
	aead cipher.AEAD
}

// Box seals with its primary key and opens with any of its keys.
type Box struct {
	keys []key
}

// New returns a Box whose primary key is the first; further keys are only
// used to open values sealed under them.
func New(keys ...[]byte) (*Box, error) {
	if len(keys) == 0 {
		return nil, errors.New("secretbox: no key")
	}
	b := &Box{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("secretbox: key %d is %d bytes, want %d", i, len(k), KeySize)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secretbox: key %d: %w", i, err)
		}
		b.keys = append(b.keys, key{id: KeyID(k), aead: aead})
	}
	return b, nil
}

// KeyID returns the id under which values sealed with k are recorded.
func KeyID(k []byte) uint32 {
	sum := sha256.Sum256(k)
	return binary.BigEndian.Uint32(sum[:4])
}

// Seal encrypts plaintext under the primary key, bound to owner.
func (b *Box) Seal(plaintext []byte, owner string) ([]byte, error) {
	k := b.keys[0]
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+k.aead.Overhead())
	out[0] = version
	binary.BigEndian.PutUint32(out[1:5], k.id)
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	return k.aead.Seal(out, out[headerSize:], plaintext, []byte(owner)), nil
}

// Open decrypts a value sealed by Seal with the same owner.
func (b *Box) Open(sealed []byte, owner string) ([]byte, error) {
	if len(sealed) < headerSize+nonceSize || sealed[0] != version {
		return nil, ErrCorrupt
	}
	id := binary.BigEndian.Uint32(sealed[1:5])
	for _, k := range b.keys {
		if k.id != id {
			continue
		}
		nonce := sealed[headerSize : headerSize+nonceSize]
		plain, err := k.aead.Open(nil, nonce, sealed[headerSize+nonceSize:], []byte(owner))
		if err != nil {
			return nil, ErrCorrupt
		}
		return plain, nil
	}
	return nil, ErrNoKey
}

// SealedKeyID returns the id of the key a sealed value was sealed under;
// ok is false for a value that is not a sealed value.
func SealedKeyID(sealed []byte) (id uint32, ok bool) {
	if len(sealed) < headerSize+nonceSize || sealed[0] != version {
		return 0, false
	}
	return binary.BigEndian.Uint32(sealed[1:5]), true
}

// PrimaryKeyID is the id of the key Seal uses.
func (b *Box) PrimaryKeyID() uint32 { return b.keys[0].id }

// ParseKey decodes a key given as base64 (standard or URL, padded or not)
// or as 64 hex digits.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("secretbox: key is %d bytes, want %d", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("secretbox: key is neither base64 nor hex")
}

// LoadKeyFile reads a key file written by WriteKeyFile (or any file holding
// a base64 or hex key). A file that other users may read or change (a mode
// wider than 0600) is refused, with the command that fixes it
// (privatefile.ErrNotPrivate).
func LoadKeyFile(path string) ([]byte, error) {
	data, err := privatefile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("secretbox: read key: %w", err)
	}
	k, err := ParseKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("secretbox: %s: %w", path, err)
	}
	return k, nil
}

// LoadKeyFiles reads the keys of a comma-separated list of key files
// (such as the old keys of a rotation); an empty list gives none.
func LoadKeyFiles(paths string) ([][]byte, error) {
	var keys [][]byte
	for _, p := range strings.Split(paths, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, err := LoadKeyFile(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// GenerateKey returns a new random key.
func GenerateKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("secretbox: generate key: %w", err)
	}
	return k, nil
}

// WriteKeyFile writes k base64-encoded to path with mode 0600; it fails if
// the file exists.
func WriteKeyFile(path string, k []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("secretbox: write key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("secretbox: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("secretbox: write key: %w", err)
	}
	return nil
}
