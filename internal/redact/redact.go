// Package redact hides the passwords of PostgreSQL connection strings in
// everything crewcore shows: error messages, logs, reprs and CLI output.
//
// A connection string reaches crewcore from a user, so it may be malformed
// in any way; DSN never fails and never returns a password it could
// recognise, whether the string parses as a URL or not. Scrub removes the
// password of a known DSN from any text (for errors built by other
// libraries, which may quote the string as they received it), and Err does
// the same for an error while keeping it matchable with errors.Is.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every password crewcore shows.
const Mask = "xxxxx"

var (
	// password=... in a key=value string or in a URL query (quoted or not,
	// spaces allowed around '=' as libpq does).
	kvQuoted = regexp.MustCompile(`(?i)\b((?:ssl)?password\s*=\s*)'(?:[^'\\]|\\.)*'`)
	kvPlain  = regexp.MustCompile(`(?i)\b((?:ssl)?password\s*=\s*)[^\s&']+`)
)

// DSN returns s with its password (URL user info, a password= key or
// query parameter, sslpassword likewise) replaced by Mask. Anything that is
// not a password is kept, so a user can still recognise the server.
func DSN(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[:i+3] + redactAuthority(s[i+3:])
	}
	s = kvQuoted.ReplaceAllString(s, "${1}"+Mask)
	return kvPlain.ReplaceAllString(s, "${1}"+Mask)
}

// redactAuthority hides the password of "user:password@host/..." without
// parsing: the user info ends at the last '@' (a password may hold an
// unescaped '@' or '/'; a malformed string may not parse at all). In the
// rare string with an '@' in its query this may hide more than the
// password, never less.
func redactAuthority(rest string) string {
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return rest
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 {
		return rest
	}
	return rest[:colon+1] + Mask + rest[at:]
}

// Passwords returns the passwords s holds, as written and decoded (a URL
// may percent-encode them), longest first; none for a DSN without one.
func Passwords(s string) []string {
	var out []string
	add := func(p string) {
		if p == "" || p == Mask {
			return
		}
		for _, o := range out {
			if o == p {
				return
			}
		}
		out = append(out, p)
		if d, err := url.PathUnescape(p); err == nil && d != p {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(p); err == nil && d != p {
			out = append(out, d)
		}
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if r := redactAuthority(rest); r != rest {
			at := strings.LastIndexByte(rest, '@')
			userinfo := rest[:at]
			add(userinfo[strings.IndexByte(userinfo, ':')+1:])
		}
	}
	for _, re := range []*regexp.Regexp{kvQuoted, kvPlain} {
		for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
			v := s[m[3]:m[1]]
			add(strings.Trim(v, "'"))
		}
	}
	// Longest first, so that a password containing another is masked whole.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Scrub returns text with every password of dsn in it replaced by Mask,
// and dsn itself (as written) by its redacted form.
func Scrub(text, dsn string) string {
	if dsn == "" {
		return text
	}
	text = strings.ReplaceAll(text, dsn, DSN(dsn))
	for _, p := range Passwords(dsn) {
		text = strings.ReplaceAll(text, p, Mask)
	}
	return text
}

// Err returns err with the passwords of dsn removed from its message; the
// result still matches err's chain with errors.Is and errors.As. A nil err
// stays nil, and an error whose message holds no password is returned as is.
func Err(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := Scrub(msg, dsn)
	if clean == msg {
		return err
	}
	return &scrubbed{msg: clean, err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }
