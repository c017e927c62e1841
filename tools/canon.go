package tools

import (
	"bytes"
	"fmt"
	"math"
	"sort"

	"github.com/tinylib/msgp/msgp"
)

// MaxNesting is the deepest nesting of maps and arrays Canonical accepts.
const MaxNesting = 64

// Canonical appends to dst the canonical encoding of the single MessagePack
// value at the start of src and returns it with the number of bytes of src
// consumed. Map keys are sorted by their canonical encoding; integers use
// the shortest signed encoding; floats with an integral value in the int64
// range are written as integers, other floats as float64; strings and
// binaries are written with their shortest headers. Two values that a JSON
// round trip would make equal get the same encoding. Extension types and
// nesting deeper than MaxNesting are refused with ErrInvalidArgs.
func Canonical(dst, src []byte) ([]byte, int, error) {
	out, rest, err := canon(dst, src, 0)
	if err != nil {
		return dst, 0, fmt.Errorf("%w: %v", ErrInvalidArgs, err)
	}
	return out, len(src) - len(rest), nil
}

type kv struct{ k, v []byte }

func canon(dst, b []byte, depth int) ([]byte, []byte, error) {
	if depth > MaxNesting {
		return dst, b, fmt.Errorf("nested deeper than %d levels", MaxNesting)
	}
	if len(b) == 0 {
		return dst, b, msgp.ErrShortBytes
	}
	switch msgp.NextType(b) {
	case msgp.NilType:
		rest, err := msgp.ReadNilBytes(b)
		return msgp.AppendNil(dst), rest, err
	case msgp.BoolType:
		v, rest, err := msgp.ReadBoolBytes(b)
		return msgp.AppendBool(dst, v), rest, err
	case msgp.IntType:
		v, rest, err := msgp.ReadInt64Bytes(b)
		return msgp.AppendInt64(dst, v), rest, err
	case msgp.UintType:
		v, rest, err := msgp.ReadUint64Bytes(b)
		if err != nil {
			return dst, b, err
		}
		if v <= math.MaxInt64 {
			return msgp.AppendInt64(dst, int64(v)), rest, nil
		}
		return msgp.AppendUint64(dst, v), rest, nil
	case msgp.Float32Type, msgp.Float64Type:
		v, rest, err := msgp.ReadFloat64Bytes(b)
		if err != nil {
			f, rest2, err2 := msgp.ReadFloat32Bytes(b)
			if err2 != nil {
				return dst, b, err
			}
			v, rest = float64(f), rest2
		}
		if v == math.Trunc(v) && v >= -9.2e18 && v <= 9.2e18 {
			return msgp.AppendInt64(dst, int64(v)), rest, nil
		}
		return msgp.AppendFloat64(dst, v), rest, nil
	case msgp.StrType:
		s, rest, err := msgp.ReadStringZC(b)
		return msgp.AppendStringFromBytes(dst, s), rest, err
	case msgp.BinType:
		s, rest, err := msgp.ReadBytesZC(b)
		return msgp.AppendBytes(dst, s), rest, err
	case msgp.ArrayType:
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return dst, b, err
		}
		if int(n) > len(rest) {
			return dst, b, fmt.Errorf("array of %d elements in %d bytes", n, len(rest))
		}
		dst = msgp.AppendArrayHeader(dst, n)
		for range n {
			if dst, rest, err = canon(dst, rest, depth+1); err != nil {
				return dst, b, err
			}
		}
		return dst, rest, nil
	case msgp.MapType:
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return dst, b, err
		}
		if 2*int(n) > len(rest) {
			return dst, b, fmt.Errorf("map of %d pairs in %d bytes", n, len(rest))
		}
		pairs := make([]kv, n)
		var scratch []byte
		for i := range pairs {
			start := len(scratch)
			if scratch, rest, err = canon(scratch, rest, depth+1); err != nil {
				return dst, b, err
			}
			mid := len(scratch)
			if scratch, rest, err = canon(scratch, rest, depth+1); err != nil {
				return dst, b, err
			}
			pairs[i] = kv{k: scratch[start:mid:mid], v: scratch[mid:len(scratch):len(scratch)]}
		}
		// scratch may have moved while growing: re-slice from offsets.
		off := 0
		for i := range pairs {
			kl, vl := len(pairs[i].k), len(pairs[i].v)
			pairs[i].k = scratch[off : off+kl]
			pairs[i].v = scratch[off+kl : off+kl+vl]
			off += kl + vl
		}
		sort.Slice(pairs, func(i, j int) bool { return bytes.Compare(pairs[i].k, pairs[j].k) < 0 })
		dst = msgp.AppendMapHeader(dst, n)
		for _, p := range pairs {
			dst = append(dst, p.k...)
			dst = append(dst, p.v...)
		}
		return dst, rest, nil
	default:
		return dst, b, fmt.Errorf("unsupported MessagePack type %v", msgp.NextType(b))
	}
}
