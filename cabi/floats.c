// crewcore_f32_list: a CPython list of floats to little-endian float32, for
// the Python package's vector conversion (python/crewcore/_floats.py).
//
// CrewAI hands embeddings over as lists of Python floats: 307,200 of them
// for a batch of 100 records of 3072 dimensions. struct.pack spends about
// 20 ns on each (the list is first spread into an argument tuple); this
// reads the list's items in place, about 1 ns each.
//
// It reads CPython's object layout directly (the stable layout of a
// default build: PyObject_HEAD is a reference count and a type pointer,
// PyFloatObject adds the double, PyListObject adds ob_size, ob_item and
// allocated). The Python side only calls it where that holds: CPython with
// the GIL, after a self-test at load, holding the GIL (ctypes.PyDLL) so
// the list cannot change meanwhile. It never touches reference counts and
// never calls into Python.

#include <stdint.h>
#include <string.h>
#include <math.h>
#include <float.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "crewcore_f32_list writes float32 in the machine's byte order: little-endian only"
#endif

typedef struct {
	intptr_t refcnt;
	const void *type;
} cc_obj;

typedef struct {
	cc_obj head;
	double fval;
} cc_float;

typedef struct {
	cc_obj head;
	intptr_t size;
	cc_obj **items;
	intptr_t allocated;
} cc_list;

// convert writes the n float items of l to out as float32; n, or -1 - i for
// the first item i it does not accept (see crewcore_f32_list).
static int64_t convert(const cc_list *l, const void *float_type, uint8_t *o, int64_t n, int32_t check_finite) {
	for (int64_t i = 0; i < n; i++) {
		const cc_obj *it = l->items[i];
		if (it->type != float_type) {
			return -1 - i;
		}
		double d = ((const cc_float *)it)->fval;
		if (!isfinite(d)) {
			if (check_finite) {
				return -1 - i;
			}
		} else if (d > FLT_MAX || d < -FLT_MAX) {
			// struct.pack raises OverflowError unless rounding brings
			// it back to FLT_MAX: leave the judgement to it.
			return -1 - i;
		}
		float f = (float)d;
		memcpy(o + 4 * i, &f, 4); // x86-64 and arm64 are little-endian
	}
	return n;
}

// crewcore_f32_list writes the n items of list (which must be a list of
// length n whose items all have type float_type) to out as float32. It
// returns n, or -1 - i for the first item i that is not an exact float,
// overflows float32, or (with check_finite) is NaN or infinite; -1 - n
// when the list's length is not n. The caller then takes its slow path,
// which names the problem.
int64_t crewcore_f32_list(const void *list, const void *float_type, void *out, int64_t n, int32_t check_finite) {
	const cc_list *l = (const cc_list *)list;
	if (l->size != n) {
		return -1 - n;
	}
	return convert(l, float_type, (uint8_t *)out, n, check_finite);
}

// crewcore_f32_lists converts a batch: lists is a list of count items, each
// a list (type list_type) of n floats, written one after the other to out
// (count * n * 4 bytes). It returns count, or -1 - k for the first list k it
// does not accept (not a list, another length, or an item crewcore_f32_list
// would refuse); the caller then converts list by list, which names the
// problem. One call for a batch of 100 embeddings instead of a hundred.
int64_t crewcore_f32_lists(const void *lists, const void *list_type, const void *float_type, void *out,
                           int64_t count, int64_t n, int32_t check_finite) {
	const cc_list *outer = (const cc_list *)lists;
	if (outer->size != count) {
		return -1 - count;
	}
	uint8_t *o = (uint8_t *)out;
	for (int64_t k = 0; k < count; k++) {
		const cc_obj *it = outer->items[k];
		if (it->type != list_type || ((const cc_list *)it)->size != n) {
			return -1 - k;
		}
		if (convert((const cc_list *)it, float_type, o + 4 * n * k, n, check_finite) != n) {
			return -1 - k;
		}
	}
	return count;
}
