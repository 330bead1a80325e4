package pop3fetcher

import (
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// LoginDelay returns the LOGIN-DELAY the fetcher has noted for an account.
func LoginDelay(f *Fetcher, a *mailbusv1.Account) time.Duration { return f.memory(a).loginDelay }
