package memory

import (
	"context"
	"time"
)

// Backend is the API every crewcore memory store offers: the embedded Store
// and the PostgreSQL store of package pgmemory. Code written against Backend
// (the C bridge, `crewcore memory migrate`, tests) runs on either with the
// same semantics: scope prefixes match whole path segments, category filters
// match any of the given categories, metadata filters require every key
// equal, filters apply before top-k, and scores follow the store's Metric.
type Backend interface {
	Save(ctx context.Context, recs []Record) error
	Update(ctx context.Context, r Record) error
	Search(ctx context.Context, q Query) ([]Match, error)
	Delete(ctx context.Context, f Filter) (int, error)
	Get(ctx context.Context, id string) (Record, bool, error)
	List(ctx context.Context, prefix string, limit, offset int) ([]Record, error)
	ListWithVectors(ctx context.Context, prefix string, limit, offset int) ([]Record, error)
	Count(ctx context.Context, prefix string) (int, error)
	ListCategories(ctx context.Context, prefix string) (map[string]int, error)
	ListScopes(ctx context.Context, parent string) ([]string, error)
	ScopeInfo(ctx context.Context, scope string) (ScopeInfo, error)
	Reset(ctx context.Context, prefix string) error
	Touch(ctx context.Context, ids []string) error
	Optimize(ctx context.Context) error
	Dim() int
	Close() error
}

var _ Backend = (*Store)(nil)

// ValidateRecord checks r as Save does and returns it in canonical form:
// scope normalized, metadata a JSON object ("{}" for none), categories
// non-nil, timestamps in UTC truncated to microseconds (a zero time becomes
// now). Errors wrap ErrInvalidRecord or ErrInvalidScope. Other backends call
// it so that a record one store refuses is refused by every store.
func ValidateRecord(r Record) (Record, error) {
	p, err := prepare(&r)
	if err != nil {
		return Record{}, err
	}
	out := r
	out.Scope = p.scope
	out.Categories = p.cats
	out.Metadata = []byte(p.meta)
	out.CreatedAt = parseTime(p.created)
	out.LastAccessed = parseTime(p.accessed)
	return out, nil
}

// CheckVector refuses a vector holding NaN or Inf with ErrInvalidRecord;
// what names the vector in the message.
func CheckVector(v []float32, what string) error { return checkVector(v, what) }

// NormalizePrefix is NormalizeScope for filters: "" and "/" mean no filter
// and come back as "".
func NormalizePrefix(prefix string) (string, error) { return normalizePrefix(prefix) }

// FormatTime renders t in the stored form (naive UTC, microseconds).
func FormatTime(t time.Time) string { return formatTime(t) }
