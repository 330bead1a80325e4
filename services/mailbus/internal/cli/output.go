package cli

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: false}

// printJSON writes m as protojson on one line.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// table writes aligned columns.
type table struct {
	w   io.Writer
	buf bytes.Buffer
	tw  *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		// A cell may hold a sender's Subject or From name: line breaks
		// and tabs become spaces, other control characters \xNN.
		cols[i] = printable(strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c))
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return err
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(t.buf.String(), "\n") {
		if line == "" {
			continue
		}
		out.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	_, err := t.w.Write(out.Bytes())
	return err
}

// truncate shortens s to n runes with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func protocolName(p mailbusv1.Protocol) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "PROTOCOL_"))
}

func securityName(s mailbusv1.Security) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SECURITY_"))
}

func stateName(s mailbusv1.SyncState) string {
	if s == mailbusv1.SyncState_SYNC_STATE_UNSPECIFIED {
		return "waiting"
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "SYNC_STATE_")), "_", " ")
}

func roleName(r mailbusv1.MailboxRole) string {
	if r == mailbusv1.MailboxRole_MAILBOX_ROLE_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), "MAILBOX_ROLE_"))
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04")
}

func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil || (ts.Seconds == 0 && ts.Nanos == 0) {
		return "never"
	}
	d := now.Sub(ts.AsTime()).Round(time.Second)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return ts.AsTime().Local().Format("2006-01-02")
}

// humanBytes formats n octets with a binary-free, decimal unit as mail
// clients do.
func humanBytes(n uint64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

func formatAddrs(as []*mailbusv1.Address) string {
	var parts []string
	for _, a := range as {
		switch {
		case a.Name != "" && a.Email != "":
			parts = append(parts, fmt.Sprintf("%s <%s>", a.Name, a.Email))
		case a.Email != "":
			parts = append(parts, a.Email)
		default:
			parts = append(parts, a.Name)
		}
	}
	return strings.Join(parts, ", ")
}

func shortFrom(as []*mailbusv1.Address) string {
	if len(as) == 0 {
		return ""
	}
	if as[0].Name != "" {
		return as[0].Name
	}
	return as[0].Email
}

func formatFlags(flags []string) string {
	if len(flags) == 0 {
		return ""
	}
	return strings.Join(flags, " ")
}

// printable shows s on a terminal as it is, except that control
// characters (C0, DEL and the C1 range) are written as \xNN: a value
// stored before the store refused them (an account's host, username or
// name with CR LF or an escape sequence) must not move the cursor or
// rewrite the screen.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }
