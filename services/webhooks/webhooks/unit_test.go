package webhooks

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func TestPublicAddr(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		public bool
	}{
		{"93.184.215.14", true}, {"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true}, {"8.8.8.8", true},
		{"127.0.0.1", false}, {"127.255.0.9", false}, {"::1", false}, {"10.0.0.1", false}, {"172.31.255.255", false},
		{"192.168.0.1", false}, {"169.254.169.254", false}, {"fe80::1", false}, {"fd00::1", false},
		{"100.64.0.1", false}, {"100.127.255.254", false}, {"0.0.0.0", false}, {"::", false},
		{"224.0.0.1", false}, {"ff02::1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true},
		{"172.32.0.1", true}, {"100.128.0.1", true},
	} {
		if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.public {
			t.Errorf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.public)
		}
	}
}

func TestCapUTF8(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
		cut  bool
	}{
		{"hello", 10, "hello", false},
		{"hello", 5, "hello", false},
		{"hello", 3, "hel", true},
		{"Hällo", 2, "H", true}, // ä is two octets: not split
		{"Hällo", 3, "Hä", true},
		{"€uro", 2, "", true},
		{"", 0, "", false},
	} {
		got, cut := capUTF8(tt.in, tt.n)
		if got != tt.want || cut != tt.cut {
			t.Errorf("capUTF8(%q, %d) = %q, %v; want %q, %v", tt.in, tt.n, got, cut, tt.want, tt.cut)
		}
	}
}

func TestParseHeader(t *testing.T) {
	for _, tt := range []struct {
		name string
		raw  string
		want []string // name=value
	}{
		{"crlf", "Subject: Hi\r\nFrom: a@b\r\n\r\nbody", []string{"Subject=Hi", "From=a@b"}},
		{"lf", "Subject: Hi\nTo: c@d\n\nbody", []string{"Subject=Hi", "To=c@d"}},
		{"folded", "Subject: a\r\n long\r\n\tsubject\r\nX: y\r\n\r\n", []string{"Subject=a long subject", "X=y"}},
		{"no body", "Subject: only\r\n", []string{"Subject=only"}},
		{"junk line", "Subject: a\r\nnot a field\r\nX: y\r\n\r\n", []string{"Subject=a", "X=y"}},
		{"empty header", "\r\nbody", nil},
		{"encoded word kept", "Subject: =?utf-8?q?H=C3=A4llo?=\r\n\r\n", []string{"Subject==?utf-8?q?H=C3=A4llo?="}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			end := headerEnd(raw)
			if end < 0 {
				end = len(raw)
			}
			var got []string
			for _, h := range parseHeader(raw[:end]) {
				got = append(got, h.Name+"="+h.Value)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFilterSubjects(t *testing.T) {
	for _, tt := range []struct {
		accounts, kinds []string
		want            []string
	}{
		{nil, nil, []string{"mailbus.events.>"}},
		{[]string{"a", "b"}, nil, []string{"mailbus.events.a.>", "mailbus.events.b.>"}},
		{nil, []string{"message.created"}, []string{"mailbus.events.*.message.created"}},
		{[]string{"a"}, []string{"message.created", "message.deleted"}, []string{"mailbus.events.a.message.created", "mailbus.events.a.message.deleted"}},
	} {
		if got := filterSubjects(&endpointRecord{AccountIDs: tt.accounts, EventKinds: tt.kinds}); !slices.Equal(got, tt.want) {
			t.Errorf("filterSubjects(%v, %v) = %v, want %v", tt.accounts, tt.kinds, got, tt.want)
		}
	}
}

func TestSupportsPinned(t *testing.T) {
	for v, want := range map[string]bool{"2.9.25": false, "2.10.22": false, "2.11.0": true, "2.15.2": true, "v2.12.1": true, "3.0.0": true, "": false, "x": false} {
		if got := supportsPinned(v); got != want {
			t.Errorf("supportsPinned(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	s := &Service{cfg: Config{RetryMin: time.Second, RetryMax: 8 * time.Second}}
	for n, nominal := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 10: 8 * time.Second, 1000: 8 * time.Second} {
		for range 20 {
			if d := s.retryDelay(n); d < nominal/2 || d > nominal {
				t.Fatalf("retryDelay(%d) = %v, want within [%v, %v]", n, d, nominal/2, nominal)
			}
		}
	}
}

func TestValidation(t *testing.T) {
	n := startNATS(t)
	svc := startService(t, n, nil)
	for _, tt := range []struct {
		name string
		ep   *mailbusv1.WebhookEndpoint
	}{
		{"no url", &mailbusv1.WebhookEndpoint{}},
		{"short secret", &mailbusv1.WebhookEndpoint{Url: "http://example.com/", Secret: "short"}},
		{"bad account", &mailbusv1.WebhookEndpoint{Url: "http://example.com/", AccountIds: []string{"a.b"}}},
		{"bad kind", &mailbusv1.WebhookEndpoint{Url: "http://example.com/", EventKinds: []string{"message.exploded"}}},
		{"bad include", &mailbusv1.WebhookEndpoint{Url: "http://example.com/", Include: []mailbusv1.WebhookInclude{0}}},
		{"cap too big", &mailbusv1.WebhookEndpoint{Url: "http://example.com/", BodyCapBytes: MaxBodyCap + 1}},
	} {
		if _, err := svc.s.Server().CreateEndpoint(callCtx(t), &mailbusv1.CreateEndpointRequest{Endpoint: tt.ep}); err == nil {
			t.Errorf("%s: created", tt.name)
		}
	}
	for _, id := range []string{"", "nope", "../../x", "0123456789abcdeF"} {
		if _, err := svc.s.Server().GetEndpoint(callCtx(t), &mailbusv1.GetEndpointRequest{EndpointId: id}); err == nil {
			t.Errorf("GetEndpoint(%q) found", id)
		}
	}
}
