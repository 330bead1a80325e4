package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mailbus/mailbus/pkg/secretbox"
)

// RotateResult counts what RotateSecrets did.
type RotateResult struct {
	// Resealed secrets were sealed under another key and are now under the
	// primary one; Current ones already were.
	Resealed, Current int
	// Failed names the accounts whose secret opens with none of the keys,
	// with the reason; they are left as they are.
	Failed []string
}

// RotateSecrets seals every account secret that is not sealed under the
// primary key again under it, one account at a time. It runs beside
// stores that hold both keys: each update is a compare-and-set on the
// sealed bytes, so a secret a store changed meanwhile (sealed under that
// store's primary key) is read again, never overwritten.
func (d *DB) RotateSecrets(ctx context.Context) (RotateResult, error) {
	var res RotateResult
	rows, err := d.r.QueryContext(ctx, `SELECT id FROM accounts WHERE secret IS NOT NULL ORDER BY id`)
	if err != nil {
		return res, fmt.Errorf("db: rotate secrets: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return res, fmt.Errorf("db: rotate secrets: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("db: rotate secrets: %w", err)
	}
	for _, id := range ids {
		if err := d.rotateSecret(ctx, id, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// rotateSecretAttempts bounds the compare-and-set retries of one account
// whose secret keeps changing.
const rotateSecretAttempts = 5

func (d *DB) rotateSecret(ctx context.Context, id int64, res *RotateResult) error {
	owner := "account/" + formatID(id)
	for range rotateSecretAttempts {
		var sealed []byte
		err := d.r.QueryRowContext(ctx, d.rebind(`SELECT secret FROM accounts WHERE id = ?`), id).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && sealed == nil) {
			return nil // deleted, or its secret removed, meanwhile
		}
		if err != nil {
			return fmt.Errorf("db: rotate secret of account %d: %w", id, err)
		}
		if kid, ok := secretbox.SealedKeyID(sealed); ok && kid == d.secrets.PrimaryKeyID() {
			res.Current++
			return nil
		}
		plain, err := d.secrets.Open(sealed, owner)
		if err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("account %d: %v", id, err))
			return nil
		}
		resealed, err := d.secrets.Seal(plain, owner)
		clear(plain)
		if err != nil {
			return fmt.Errorf("db: rotate secret of account %d: %w", id, err)
		}
		r, err := d.w.ExecContext(ctx, d.rebind(`UPDATE accounts SET secret = ? WHERE id = ? AND secret = ?`), resealed, id, sealed)
		if err != nil {
			return fmt.Errorf("db: rotate secret of account %d: %w", id, err)
		}
		if n, err := r.RowsAffected(); err == nil && n == 1 {
			res.Resealed++
			return nil
		}
		// Changed meanwhile: read it again.
	}
	return fmt.Errorf("db: rotate secret of account %d: it kept changing", id)
}
