package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
	"github.com/mailbus/mailbus/services/store/store"
)

func (a *app) keyCommand() *cobra.Command {
	return group("key", "The credentials key: generate a new one, rotate the stored credentials to it",
		`  mailbus key generate new.key
  mailbus key rotate --secret-key-file new.key --old-secret-key-file mailbus-data/secret.key`,
		a.keyGenerateCommand(), a.keyRotateCommand())
}

func (a *app) keyGenerateCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "generate FILE",
		Short:   "Write a new random credentials key to FILE (mode 0600; an existing file is kept)",
		Example: `  mailbus key generate /etc/mailbus/secret-2.key`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("give the file to write the key to")
			}
			return nil
		},
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			k, err := secretbox.GenerateKey()
			if err != nil {
				return err
			}
			if err := secretbox.WriteKeyFile(args[0], k); err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "wrote a new key to %s (key id %08x)\n", args[0], secretbox.KeyID(k))
			return nil
		}),
	}
}

func (a *app) keyRotateCommand() *cobra.Command {
	var data, databaseURL, keyFile, oldKeyFiles string
	c := &cobra.Command{
		Use:   "rotate --old-secret-key-file OLD [--secret-key-file NEW]",
		Short: "Seal every stored upstream credential under the new key, while the stores run",
		Long: `Seal every stored upstream credential under the new key (--secret-key-file,
default --data/secret.key), opening the ones sealed under an old key
(--old-secret-key-file, comma-separated). It works on the database directly
(--data or --database-url) and can run while the store serves, without
downtime:

  1. mailbus key generate new.key
  2. restart the store with --secret-key-file new.key --old-secret-key-file old.key
     (several replicas: first give every replica new.key as an old key, then
     swap the two, so no replica meets a credential it cannot open)
  3. mailbus key rotate --secret-key-file new.key --old-secret-key-file old.key
  4. restart the store without --old-secret-key-file; keep old.key until then

A credential changed meanwhile is read again, never overwritten. One that
opens with none of the keys is named, left as it is, and the exit code is 1.`,
		Example: `  mailbus key rotate --data ./mailbus-data --secret-key-file new.key --old-secret-key-file ./mailbus-data/secret.key
  mailbus key rotate --database-url postgres://mailbus@db/mailbus \
      --secret-key-file /etc/mailbus/new.key --old-secret-key-file /etc/mailbus/old.key`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if oldKeyFiles == "" {
				return usagef("give the key the credentials are sealed under now with --old-secret-key-file")
			}
			if databaseURL == "" {
				// SQLite: never a new, empty database in a directory
				// that is not the store's.
				if err := existingDataDir(data, "the SQLite database"); err != nil {
					return err
				}
				if _, err := os.Stat(filepath.Join(data, store.SQLiteFileName)); err != nil {
					return usagef("no database %s: give --data, the store's data directory, or --database-url", filepath.Join(data, store.SQLiteFileName))
				}
			}
			if keyFile == "" {
				keyFile = filepath.Join(data, mailbus.KeyFileName)
			}
			newKey, err := secretbox.LoadKeyFile(keyFile)
			if err != nil {
				return err
			}
			oldKeys, err := secretbox.LoadKeyFiles(oldKeyFiles)
			if err != nil {
				return err
			}
			res, err := store.RotateSecrets(ctx, store.Config{DataDir: data, DatabaseURL: databaseURL, SecretKey: newKey, OldSecretKeys: oldKeys})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "sealed %d credentials under key %08x (%s); %d already were\n", res.Resealed, secretbox.KeyID(newKey), keyFile, res.Current)
			if len(res.Failed) > 0 {
				return fmt.Errorf("%d credentials open with none of the keys and are left as they are:\n  %s",
					len(res.Failed), strings.Join(res.Failed, "\n  "))
			}
			return nil
		}),
	}
	fl := c.Flags()
	a.stringVar(fl, &data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory of the SQLite database")
	a.stringVar(fl, &databaseURL, "database-url", "MAILBUS_DATABASE_URL", "", "PostgreSQL URL instead of SQLite in --data")
	fl.StringVar(&keyFile, "secret-key-file", "", "the new key (default --data/secret.key)")
	fl.StringVar(&oldKeyFiles, "old-secret-key-file", "", "comma-separated files of the keys credentials may be sealed under now")
	return c
}
