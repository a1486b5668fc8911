package crdgen

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConversions(t *testing.T) {
	const doc = `{
	  "$defs": {
	    "D": {"type": "string", "pattern": "^[0-9]+s$"},
	    "Spec": {
	      "type": "object", "additionalProperties": false, "required": ["a"],
	      "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
	      "properties": {
	        "a": {"$ref": "#/$defs/D", "description": "a duration"},
	        "x": {"type": ["object", "null"], "additionalProperties": false, "properties": {"m": {"enum": ["one", "two"]}}},
	        "y": {"type": "object", "additionalProperties": {"type": "string"}},
	        "n": {"oneOf": [{"type": "number"}, {"$ref": "#/$defs/D"}]},
	        "k": {"const": "v1"},
	        "r": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
	        "s": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "minItems": 1},
	        "o": {"type": "object"},
	        "t": {"type": "object", "additionalProperties": false,
	          "oneOf": [{"required": ["c"], "not": {"required": ["r"]}}, {"required": ["r"], "not": {"anyOf": [{"required": ["c"]}]}}],
	          "properties": {"c": {"type": "string"}, "r": {"type": "string"}}}
	      }
	    }
	  }
	}`
	c, err := NewConverter([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Structural("#/$defs/Spec")
	if err != nil {
		t.Fatal(err)
	}
	if p := CheckStructural(s); len(p) > 0 {
		t.Fatalf("not structural: %v", p)
	}
	p := s.Properties
	if p["a"].Type != "string" || p["a"].Pattern != "^[0-9]+s$" || p["a"].Description != "a duration" {
		t.Errorf("a ($ref inlined): %+v", p["a"])
	}
	if !p["x"].Nullable || p["x"].Type != "object" || p["x"].Properties["m"].Type != "string" || len(p["x"].Properties["m"].Enum) != 2 {
		t.Errorf("x (nullable object, typed enum): %+v", p["x"])
	}
	if p["y"].AdditionalProperties == nil || p["y"].AdditionalProperties.Schema.Type != "string" {
		t.Errorf("y (map of strings): %+v", p["y"])
	}
	if p["n"].Type != "" || p["n"].XPreserveUnknownFields == nil || !strings.Contains(p["n"].Description, "number or string") {
		t.Errorf("n (number or string): %+v", p["n"])
	}
	if p["k"].Type != "string" || len(p["k"].Enum) != 1 || string(p["k"].Enum[0].Raw) != `"v1"` {
		t.Errorf("k (const): %+v", p["k"])
	}
	if *p["r"].Minimum != 0 || !p["r"].ExclusiveMinimum || *p["r"].Maximum != 10 {
		t.Errorf("r (exclusiveMinimum): %+v", p["r"])
	}
	if p["s"].XListType == nil || *p["s"].XListType != "set" || *p["s"].MinItems != 1 {
		t.Errorf("s (uniqueItems -> set): %+v", p["s"])
	}
	if p["o"].XPreserveUnknownFields == nil || !*p["o"].XPreserveUnknownFields {
		t.Errorf("o (open object): %+v", p["o"])
	}
	if len(s.OneOf) != 2 || s.OneOf[0].Required[0] != "x" {
		t.Errorf("oneOf of required: %+v", s.OneOf)
	}
	if b := p["t"].OneOf; len(b) != 2 || b[0].Not == nil || b[0].Not.Required[0] != "r" || b[1].Not == nil || len(b[1].Not.AnyOf) != 1 {
		t.Errorf("t (oneOf with not): %+v", p["t"].OneOf)
	}
	if s.XPreserveUnknownFields != nil {
		t.Errorf("a closed object keeps unknown fields")
	}
}

func TestErrorsNameThePath(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"type": "object", "properties": {"a": {"type": "string", "if": {}}}}`, `#.a: keyword "if"`},
		{`{"$defs": {"L": {"type": "object", "properties": {"next": {"$ref": "#/$defs/L"}}}}, "$ref": "#/$defs/L"}`, "recursive"},
		{`{"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}}`, "only references inside the document"},
		{`{"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}`, "additionalProperties with properties"},
		{`{"type": "array", "items": {"type": "object"}, "uniqueItems": true}`, "scalar items"},
		{`{"type": "string", "pattern": "(?<=a)b"}`, "cannot compile"},
		{`{"type": "string", "enum": [1]}`, "not a string"},
		{`{"type": "null"}`, "only be null"},
		{`{"type": "object", "not": {"type": "string"}}`, "inside not"},
		{`[1]`, "want an object"},
		{`{"type": "object"} {}`, "after its document"},
	} {
		c, err := NewConverter([]byte(tc.doc))
		if err == nil {
			_, err = c.Structural("#")
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// FuzzStructural: any JSON Schema either converts to a structural schema
// or is refused with an error; never a panic.
func FuzzStructural(f *testing.F) {
	f.Add([]byte(`{"type": "object", "properties": {"a": {"type": ["string", "null"], "minLength": 1}}}`))
	f.Add([]byte(`{"$defs": {"X": {"oneOf": [{"type": "number"}, {"type": "string"}]}}, "$ref": "#/$defs/X"}`))
	f.Add([]byte(`{"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": true}`))
	f.Add([]byte(`{"type": "object", "oneOf": [{"required": ["a"]}], "additionalProperties": {"type": "integer", "exclusiveMinimum": 0}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := NewConverter(data)
		if err != nil {
			return
		}
		s, err := c.Structural("#")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if p := CheckStructural(s); len(p) > 0 {
			t.Fatalf("%s converted to a schema that is not structural: %v", data, p)
		}
	})
}
