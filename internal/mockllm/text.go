package mockllm

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text heuristics shared by the default chat answer and the JSON-schema
// synthesizer. Everything here is deterministic: the same prompt always
// yields the same subject, keywords and recalled-memory lines.

// preferredLabels are the prompt labels CrewAI puts in front of the text that
// a real model would answer about, most specific first: the agent task
// prompt ("Current Task:"), memory query analysis ("Query:"), save analysis
// ("Content to store:"), consolidation ("New content to consider storing:")
// and memory extraction ("Content:").
var preferredLabels = []string{
	"Current Task",
	"Query",
	"Content to store",
	"New content to consider storing",
	"Content",
	"Task",
}

// labelLine matches "Label: value" or a bare "Label:" heading at the start of
// a line.
var labelLine = regexp.MustCompile(`^([A-Z][A-Za-z0-9 _-]{0,40}):(?:\s+(.*))?$`)

// scorePrefix matches the "(score=0.61) " prefix CrewAI's MemoryMatch.format
// puts in front of every recalled memory.
var scorePrefix = regexp.MustCompile(`^\(score=[^)]*\)\s*`)

// subject returns the part of a prompt a model would answer about: the value
// of the first preferred label (its inline text plus the following lines up to
// a blank line), else of the first "Label:" line, else the first paragraph.
func subject(text string) string {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for _, want := range preferredLabels {
		for i, line := range lines {
			m := labelLine.FindStringSubmatch(strings.TrimSpace(line))
			if m != nil && strings.EqualFold(m[1], want) {
				if s := section(lines, i, m[2]); s != "" {
					return s
				}
			}
		}
	}
	for i, line := range lines {
		if m := labelLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			if s := section(lines, i, m[2]); s != "" {
				return s
			}
		}
	}
	// First non-empty paragraph.
	var para []string
	for _, line := range lines {
		t := strings.TrimSpace(line)
		if t == "" {
			if len(para) > 0 {
				break
			}
			continue
		}
		para = append(para, t)
	}
	return strings.Join(para, "\n")
}

// section joins inline with the lines after index i up to the next blank line.
func section(lines []string, i int, inline string) string {
	parts := []string{}
	if t := strings.TrimSpace(inline); t != "" {
		parts = append(parts, t)
	}
	for _, line := range lines[i+1:] {
		t := strings.TrimSpace(line)
		if t == "" {
			if len(parts) > 0 {
				break
			}
			continue
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, "\n")
}

// oneLine collapses all whitespace runs to single spaces and truncates the
// result to at most max runes (adding "..." when it cut).
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	if max <= 3 {
		return string(r[:max])
	}
	return strings.TrimSpace(string(r[:max-3])) + "..."
}

// stopwords are dropped from keywords and down-weighted out of embeddings.
var stopwords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a about above after again against all also am an and any are
	as at be because been before being below between both but by can could did do does doing done
	down during each either else etc ever every few for from further get gets got had has have having
	he her here hers herself him himself his how however i if in into is it its itself just let like
	may me might more most must my myself no nor not now of off on once only or other our ours
	ourselves out over own per please same shall she should so some such than that the their theirs
	them themselves then there these they this those through to too under until up upon us use used
	using very via was we were what when where which while who whom whose why will with within without
	would yet you your yours yourself yourselves one two make sure give best`) {
		stopwords[w] = true
	}
}

// words splits text into lowercase word tokens (letters and digits; inner
// apostrophes, dots and hyphens are separators).
func words(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// keywords returns up to n distinct non-stopword words of text, at least
// three characters long (or any digits), in order of first appearance.
func keywords(text string, n int) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range words(text) {
		if len(out) >= n {
			break
		}
		if stopwords[w] || seen[w] {
			continue
		}
		if utf8.RuneCountInString(w) < 3 && !isDigits(w) {
			continue
		}
		seen[w] = true
		out = append(out, w)
	}
	return out
}

func isDigits(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return s != ""
}

// recalledMemories returns the memory lines a prompt carries: the "- item"
// lines following a heading that mentions memories (a line containing
// "memor" that starts with '#' or ends with ':'), such as the block CrewAI
// appends to a task prompt:
//
//	# Memories from past conversations:
//	Relevant memories:
//	- (score=0.61) The deadline is March 5.
//	  categories: project
//
// The "(score=...)" prefix is removed; indented detail lines are skipped.
func recalledMemories(text string) []string {
	var out []string
	seen := map[string]bool{}
	in := false
	for _, raw := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		line := strings.TrimSpace(raw)
		lower := strings.ToLower(line)
		if strings.Contains(lower, "memor") && (strings.HasPrefix(line, "#") || strings.HasSuffix(line, ":")) {
			in = true
			continue
		}
		if !in {
			continue
		}
		switch {
		case line == "":
			// A blank line ends the block once it has items.
			if len(out) > 0 {
				in = false
			}
		case strings.HasPrefix(line, "- ") || strings.HasPrefix(line, "* "):
			item := strings.TrimSpace(scorePrefix.ReplaceAllString(strings.TrimSpace(line[2:]), ""))
			if item != "" && !seen[item] {
				seen[item] = true
				out = append(out, item)
			}
		case len(out) > 0 && (strings.HasPrefix(raw, " ") || strings.HasPrefix(raw, "\t")):
			// Indented detail ("  categories: ...") of the previous item.
		default:
			in = false
		}
	}
	return out
}

// slug turns s into a lowercase path segment of letters, digits and '-'.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
			dash = false
		} else if b.Len() > 0 && !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}
