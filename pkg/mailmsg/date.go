package mailmsg

import (
	"net/mail"
	"strings"
	"time"
)

// mailParseDate is net/mail.ParseDate, with the same results, made cheap
// for the common forms. ParseDate tries up to 48 layouts in a fixed order
// with time.Parse, and every layout that fails allocates an error; for the
// usual "Mon, 2 Jan 2006 15:04:05 -0700" that is 24 failures. Here the
// date is cut out of the field as ParseDate cuts it, and when it has one
// of the common shapes (day of week or not, seconds or not, a numeric or
// a named zone, a four-digit year) the one layout that ParseDate would
// reach first with success is tried alone. Every layout before it in
// ParseDate's order fails on that shape, so a success is ParseDate's
// answer; anything else (a failure, another shape) goes to ParseDate.
func mailParseDate(v string) (time.Time, error) {
	if layout, date, ok := quickDateLayout(v); ok {
		if t, err := time.Parse(layout, date); err == nil {
			return t, nil
		}
	}
	return mail.ParseDate(v)
}

// quickLayouts are the layouts of net/mail.ParseDate for the shapes that
// quickDateLayout recognises, indexed by [day of week][seconds][named
// zone]: for each, the first of ParseDate's layouts that can match it.
var quickLayouts = [2][2][2]string{
	{
		{"2 Jan 2006 15:04 -0700", "2 Jan 2006 15:04 MST"},
		{"2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 MST"},
	},
	{
		{"Mon, 2 Jan 2006 15:04 -0700", "Mon, 2 Jan 2006 15:04 MST"},
		{"Mon, 2 Jan 2006 15:04:05 -0700", "Mon, 2 Jan 2006 15:04:05 MST"},
	},
}

// quickDateLayout cuts the date out of the field v exactly as
// net/mail.ParseDate does, and returns the layout to try on it when it
// has one of the common shapes. ok is false when ParseDate must decide.
func quickDateLayout(v string) (layout, date string, ok bool) {
	if strings.ContainsAny(v, "\r\n") {
		return "", "", false
	}
	// As ParseDate: the date ends after a numeric zone or after the "T"
	// of a named one, and what follows must be comments and white space.
	date = v
	s := strings.TrimLeft(v, " \t")
	if ind := strings.IndexAny(s, "+-"); ind != -1 && len(s) >= ind+5 {
		date, s = s[:ind+5], s[ind+5:]
	} else {
		ind := strings.IndexByte(s, 'T')
		if ind == 0 {
			ind = strings.IndexByte(s[1:], 'T')
			if ind != -1 {
				ind++
			}
		}
		if ind != -1 && len(s) >= ind+5 {
			date, s = s[:ind+1], s[ind+1:]
		}
	}
	if !skipsAsCFWS(s) {
		return "", "", false
	}
	dow, sec, named, ok := dateShape(date)
	if !ok {
		return "", "", false
	}
	return quickLayouts[b2i(dow)][b2i(sec)][b2i(named)], date, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// skipsAsCFWS reports whether net/mail's addrParser.skipCFWS accepts s:
// white space and balanced comments, then anything that does not start
// with "(".
func skipsAsCFWS(s string) bool {
	s = strings.TrimLeft(s, " \t")
	for len(s) > 0 && s[0] == '(' {
		s = s[1:]
		depth := 1
		for len(s) > 0 && depth > 0 {
			switch {
			case s[0] == '\\' && len(s) > 1:
				s = s[1:]
			case s[0] == '(':
				depth++
			case s[0] == ')':
				depth--
			}
			s = s[1:]
		}
		if depth != 0 {
			return false
		}
		s = strings.TrimLeft(s, " \t")
	}
	return true
}

// dateShape recognises "[Www, ]D[D] Mmm YYYY HH:MM[:SS] ZONE", single
// spaces, where ZONE is "+HHMM", "-HHMM" or letters, and says which parts
// are present.
func dateShape(d string) (dow, sec, named, ok bool) {
	letters := func(n int) bool {
		if len(d) < n {
			return false
		}
		for i := 0; i < n; i++ {
			if c := d[i] | 0x20; c < 'a' || c > 'z' {
				return false
			}
		}
		d = d[n:]
		return true
	}
	digits := func(n int) bool {
		if len(d) < n {
			return false
		}
		for i := 0; i < n; i++ {
			if d[i] < '0' || d[i] > '9' {
				return false
			}
		}
		d = d[n:]
		return true
	}
	lit := func(l string) bool {
		if !strings.HasPrefix(d, l) {
			return false
		}
		d = d[len(l):]
		return true
	}
	if len(d) > 0 && d[0] > '9' {
		if !letters(3) || !lit(", ") {
			return false, false, false, false
		}
		dow = true
	}
	if !digits(1) {
		return false, false, false, false
	}
	digits(1)
	if !lit(" ") || !letters(3) || !lit(" ") || !digits(4) || !lit(" ") ||
		!digits(2) || !lit(":") || !digits(2) {
		return false, false, false, false
	}
	if lit(":") {
		if !digits(2) {
			return false, false, false, false
		}
		sec = true
	}
	if !lit(" ") || d == "" {
		return false, false, false, false
	}
	switch d[0] {
	case '+', '-':
		d = d[1:]
		if !digits(4) {
			return false, false, false, false
		}
	default:
		if !letters(len(d)) {
			return false, false, false, false
		}
		named = true
	}
	return dow, sec, named, d == ""
}
