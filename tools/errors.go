package tools

import "errors"

var (
	// ErrInvalidPolicy reports a Policy field with a nonsensical value (a
	// negative timeout, a loop threshold above its window, ...).
	ErrInvalidPolicy = errors.New("invalid tool policy")
	// ErrInvalidArgs reports tool arguments that cannot be canonicalized:
	// not a MessagePack map, nested too deeply, or truncated.
	ErrInvalidArgs = errors.New("invalid tool arguments")
	// ErrRefused reports a fetch or file access the built-in tools refuse:
	// a private address, a path outside the root, a disallowed scheme.
	ErrRefused = errors.New("refused")
	// ErrTooLarge reports a response or file larger than the configured cap.
	ErrTooLarge = errors.New("too large")
	// ErrTimeout reports a built-in tool call that passed its deadline.
	ErrTimeout = errors.New("deadline exceeded")
)
