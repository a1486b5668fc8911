// Package crdgen derives Kubernetes CustomResourceDefinitions from
// chaosgate's JSON Schemas (draft 2020-12), so that the documents chaosgate
// reads as files can be stored, listed and validated by a kube-apiserver
// (kubectl, GitOps) with the same rules.
//
// The result is a structural schema, as apiextensions.k8s.io/v1 demands:
// every $ref is inlined, every node is typed (or says
// x-kubernetes-preserve-unknown-fields where the JSON Schema allows values of
// several types), additionalProperties is never given beside properties, and
// uniqueItems becomes x-kubernetes-list-type: set. A keyword the converter
// does not know is an error naming its JSON path, never silently dropped.
package crdgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Converter turns parts of one JSON Schema document into structural
// OpenAPI v3 schemas.
type Converter struct {
	root map[string]any
}

// NewConverter parses a JSON Schema document.
func NewConverter(schemaJSON []byte) (*Converter, error) {
	dec := json.NewDecoder(bytes.NewReader(schemaJSON))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("crdgen: the JSON Schema is not JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("crdgen: the JSON Schema has data after its document")
	}
	m, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("crdgen: the JSON Schema is a %s, want an object", jsonType(root))
	}
	return &Converter{root: m}, nil
}

// Structural converts the schema that ref points to ("#" for the root,
// "#/$defs/Name" for a definition) into a structural schema.
func (c *Converter) Structural(ref string) (*apiextv1.JSONSchemaProps, error) {
	node, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	return c.convert(node, ref, map[string]bool{ref: true})
}

// Pointer returns the raw JSON Schema node ref points to, for callers that
// take a single keyword from it (e.g. a name pattern).
func (c *Converter) Pointer(ref string) (map[string]any, error) { return c.resolve(ref) }

func (c *Converter) resolve(ref string) (map[string]any, error) {
	if ref == "#" {
		return c.root, nil
	}
	if !strings.HasPrefix(ref, "#/") {
		return nil, fmt.Errorf("crdgen: $ref %q: only references inside the document (#/...) are supported", ref)
	}
	var cur any = c.root
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("crdgen: $ref %q: %q is not inside an object", ref, tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("crdgen: $ref %q: no %q", ref, tok)
		}
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("crdgen: $ref %q is a %s, want a schema object", ref, jsonType(cur))
	}
	return m, nil
}

// Keywords that carry no validation a CRD can express or needs.
var ignored = map[string]bool{"$schema": true, "$id": true, "$defs": true, "definitions": true, "title": true, "$comment": true, "examples": true}

func (c *Converter) convert(node map[string]any, path string, refs map[string]bool) (*apiextv1.JSONSchemaProps, error) {
	if r, ok := node["$ref"]; ok {
		ref, ok := r.(string)
		if !ok {
			return nil, fmt.Errorf("crdgen: %s: $ref is a %s, want a string", path, jsonType(r))
		}
		for k := range node {
			if k != "$ref" && k != "description" && !ignored[k] {
				return nil, fmt.Errorf("crdgen: %s: %q beside $ref is not supported (hint: move it into %s)", path, k, ref)
			}
		}
		if refs[ref] {
			return nil, fmt.Errorf("crdgen: %s: $ref %s is recursive: a CRD schema cannot express it", path, ref)
		}
		target, err := c.resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("%w (at %s)", err, path)
		}
		next := make(map[string]bool, len(refs)+1)
		for k := range refs {
			next[k] = true
		}
		next[ref] = true
		out, err := c.convert(target, path, next)
		if err != nil {
			return nil, err
		}
		if d, ok := node["description"].(string); ok {
			out.Description = d
		}
		return out, nil
	}

	out := &apiextv1.JSONSchemaProps{}
	for k := range node {
		switch k {
		case "type", "properties", "additionalProperties", "required", "items", "enum", "const", "oneOf", "anyOf", "not",
			"pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
			"minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "description", "format":
		default:
			if !ignored[k] {
				return nil, fmt.Errorf("crdgen: %s: keyword %q is not supported", path, k)
			}
		}
	}
	if d, ok := node["description"]; ok {
		s, ok := d.(string)
		if !ok {
			return nil, fmt.Errorf("crdgen: %s: description is a %s, want a string", path, jsonType(d))
		}
		out.Description = s
	}

	types, nullable, err := typesOf(node, path)
	if err != nil {
		return nil, err
	}
	out.Nullable = nullable

	// Branches of oneOf/anyOf: either required-only (which a structural
	// schema keeps as a value validation), or whole schemas of their own —
	// then the value may be one of several types.
	for _, kw := range []string{"oneOf", "anyOf"} {
		raw, ok := node[kw]
		if !ok {
			continue
		}
		list, ok := raw.([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("crdgen: %s.%s: want a non-empty array of schemas", path, kw)
		}
		requiredOnly := true
		var branches []apiextv1.JSONSchemaProps
		for i, b := range list {
			bm, ok := b.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("crdgen: %s.%s[%d]: want a schema object", path, kw, i)
			}
			v, only := validationOnly(bm)
			if !only {
				requiredOnly = false
				break
			}
			branches = append(branches, *v)
		}
		if requiredOnly {
			if kw == "oneOf" {
				out.OneOf = branches
			} else {
				out.AnyOf = branches
			}
			continue
		}
		bt, err := c.branchTypes(list, path+"."+kw, refs)
		if err != nil {
			return nil, err
		}
		if len(types) == 0 {
			types = bt
		}
	}

	if raw, ok := node["not"]; ok {
		m, _ := raw.(map[string]any)
		v, only := validationOnly(m)
		if !only {
			return nil, fmt.Errorf("crdgen: %s.not: only required/not/anyOf/oneOf/allOf inside not can be kept in a CRD", path)
		}
		out.Not = v
	}

	if len(types) == 0 {
		types = inferTypes(node)
	}
	if len(types) == 1 && types[0] == "any" {
		types = nil
	}
	if len(types) > 1 {
		// Values of several types (e.g. 0.5 or "50%"): a structural schema
		// cannot type them; the API server keeps any value, chaosgate's own
		// loader checks it.
		out.XPreserveUnknownFields = ptr(true)
		out.Description = strings.TrimSpace(out.Description + " (" + strings.Join(types, " or ") + ")")
		out.Description = strings.ReplaceAll(out.Description, "any or ", "")
		out.Nullable = false
		return out, nil
	}
	if len(types) == 0 {
		out.XPreserveUnknownFields = ptr(true)
		return out, nil
	}
	out.Type = types[0]

	if err := c.scalarRules(node, out, path); err != nil {
		return nil, err
	}
	switch out.Type {
	case "object":
		if err := c.objectRules(node, out, path, refs); err != nil {
			return nil, err
		}
	case "array":
		if err := c.arrayRules(node, out, path, refs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// branchTypes returns the distinct types of whole-schema branches (each
// branch is converted too, so that its keywords are checked).
func (c *Converter) branchTypes(list []any, path string, refs map[string]bool) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for i, b := range list {
		bp := fmt.Sprintf("%s[%d]", path, i)
		bm := b.(map[string]any)
		if _, err := c.convert(bm, bp, refs); err != nil {
			return nil, err
		}
		ts, err := c.rawTypes(bm, bp, refs)
		if err != nil {
			return nil, err
		}
		if len(ts) == 0 {
			ts = []string{"any"}
		}
		for _, t := range ts {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// rawTypes returns the types a JSON Schema node admits (none: any).
func (c *Converter) rawTypes(node map[string]any, path string, refs map[string]bool) ([]string, error) {
	if r, ok := node["$ref"].(string); ok {
		if refs[r] {
			return nil, fmt.Errorf("crdgen: %s: $ref %s is recursive: a CRD schema cannot express it", path, r)
		}
		t, err := c.resolve(r)
		if err != nil {
			return nil, err
		}
		next := map[string]bool{r: true}
		for k := range refs {
			next[k] = true
		}
		return c.rawTypes(t, path, next)
	}
	types, _, err := typesOf(node, path)
	if err != nil || len(types) > 0 {
		return types, err
	}
	for _, kw := range []string{"oneOf", "anyOf"} {
		list, _ := node[kw].([]any)
		for i, b := range list {
			bm, ok := b.(map[string]any)
			if !ok {
				continue
			}
			if _, only := validationOnly(bm); only {
				continue
			}
			ts, err := c.rawTypes(bm, fmt.Sprintf("%s.%s[%d]", path, kw, i), refs)
			if err != nil {
				return nil, err
			}
			if len(ts) == 0 {
				return nil, nil
			}
			types = append(types, ts...)
		}
	}
	if len(types) > 0 {
		return types, nil
	}
	return inferTypes(node), nil
}

// validationOnly converts a schema made only of required, not, anyOf,
// oneOf and allOf (each of the same kind): the value validations a
// structural schema keeps inside its branches. ok is false for anything
// else (a branch with a type or properties of its own).
func validationOnly(b map[string]any) (v *apiextv1.JSONSchemaProps, ok bool) {
	if len(b) == 0 {
		return nil, false
	}
	v = &apiextv1.JSONSchemaProps{}
	for k, raw := range b {
		switch k {
		case "required":
			list, ok := raw.([]any)
			if !ok {
				return nil, false
			}
			for _, r := range list {
				s, ok := r.(string)
				if !ok {
					return nil, false
				}
				v.Required = append(v.Required, s)
			}
		case "not":
			m, ok := raw.(map[string]any)
			if !ok {
				return nil, false
			}
			n, ok := validationOnly(m)
			if !ok {
				return nil, false
			}
			v.Not = n
		case "anyOf", "oneOf", "allOf":
			list, ok := raw.([]any)
			if !ok || len(list) == 0 {
				return nil, false
			}
			var bs []apiextv1.JSONSchemaProps
			for _, e := range list {
				m, ok := e.(map[string]any)
				if !ok {
					return nil, false
				}
				n, ok := validationOnly(m)
				if !ok {
					return nil, false
				}
				bs = append(bs, *n)
			}
			switch k {
			case "anyOf":
				v.AnyOf = bs
			case "oneOf":
				v.OneOf = bs
			default:
				v.AllOf = bs
			}
		default:
			return nil, false
		}
	}
	return v, true
}

func typesOf(node map[string]any, path string) (types []string, nullable bool, err error) {
	raw, ok := node["type"]
	if !ok {
		return nil, false, nil
	}
	var list []any
	switch v := raw.(type) {
	case string:
		list = []any{v}
	case []any:
		list = v
	default:
		return nil, false, fmt.Errorf("crdgen: %s: type is a %s, want a string or an array", path, jsonType(raw))
	}
	for _, t := range list {
		s, ok := t.(string)
		if !ok {
			return nil, false, fmt.Errorf("crdgen: %s: type has a %s, want type names", path, jsonType(t))
		}
		switch s {
		case "null":
			nullable = true
		case "object", "array", "string", "integer", "number", "boolean":
			types = append(types, s)
		default:
			return nil, false, fmt.Errorf("crdgen: %s: unknown type %q", path, s)
		}
	}
	if len(types) == 0 && nullable {
		return nil, false, fmt.Errorf("crdgen: %s: a value that can only be null cannot be stored", path)
	}
	return types, nullable, nil
}

// inferTypes types an untyped node from its enum or const values, or its
// object keywords.
func inferTypes(node map[string]any) []string {
	var vals []any
	if e, ok := node["enum"].([]any); ok {
		vals = e
	}
	if cv, ok := node["const"]; ok {
		vals = append(vals, cv)
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range vals {
		t := jsonType(v)
		if t == "null" {
			continue
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		if _, ok := node["properties"]; ok {
			return []string{"object"}
		}
		if _, ok := node["items"]; ok {
			return []string{"array"}
		}
	}
	sort.Strings(out)
	return out
}

func (c *Converter) scalarRules(node map[string]any, out *apiextv1.JSONSchemaProps, path string) error {
	var enum []any
	if e, ok := node["enum"]; ok {
		list, ok := e.([]any)
		if !ok || len(list) == 0 {
			return fmt.Errorf("crdgen: %s.enum: want a non-empty array", path)
		}
		enum = list
	}
	if cv, ok := node["const"]; ok {
		enum = []any{cv}
	}
	for _, v := range enum {
		if v == nil {
			continue // null is allowed by nullable
		}
		if !typeAllows(out.Type, v) {
			return fmt.Errorf("crdgen: %s: enum value %v is not a %s", path, v, out.Type)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("crdgen: %s.enum: %w", path, err)
		}
		out.Enum = append(out.Enum, apiextv1.JSON{Raw: b})
	}
	if p, ok := node["pattern"]; ok {
		s, ok := p.(string)
		if !ok {
			return fmt.Errorf("crdgen: %s.pattern: want a string", path)
		}
		if _, err := regexp.Compile(s); err != nil {
			return fmt.Errorf("crdgen: %s.pattern %q: the API server (Go regexp) cannot compile it: %w", path, s, err)
		}
		if out.Type != "string" {
			return fmt.Errorf("crdgen: %s: pattern on a %s", path, out.Type)
		}
		out.Pattern = s
	}
	if f, ok := node["format"]; ok {
		s, ok := f.(string)
		if !ok {
			return fmt.Errorf("crdgen: %s.format: want a string", path)
		}
		out.Format = s
	}
	ints := []struct {
		kw  string
		dst **int64
		typ string
	}{
		{"minLength", &out.MinLength, "string"}, {"maxLength", &out.MaxLength, "string"},
		{"minItems", &out.MinItems, "array"}, {"maxItems", &out.MaxItems, "array"},
		{"minProperties", &out.MinProperties, "object"}, {"maxProperties", &out.MaxProperties, "object"},
	}
	for _, r := range ints {
		v, ok := node[r.kw]
		if !ok {
			continue
		}
		n, err := number(v)
		if err != nil || n < 0 || n != float64(int64(n)) {
			return fmt.Errorf("crdgen: %s.%s: want a non-negative integer, got %v", path, r.kw, v)
		}
		if out.Type != r.typ {
			return fmt.Errorf("crdgen: %s: %s on a %s", path, r.kw, out.Type)
		}
		*r.dst = ptr(int64(n))
	}
	bounds := []struct {
		kw        string
		dst       **float64
		exclusive *bool
	}{
		{"minimum", &out.Minimum, nil}, {"maximum", &out.Maximum, nil},
		{"exclusiveMinimum", &out.Minimum, &out.ExclusiveMinimum}, {"exclusiveMaximum", &out.Maximum, &out.ExclusiveMaximum},
	}
	for _, r := range bounds {
		v, ok := node[r.kw]
		if !ok {
			continue
		}
		n, err := number(v)
		if err != nil {
			return fmt.Errorf("crdgen: %s.%s: %w", path, r.kw, err)
		}
		if out.Type != "number" && out.Type != "integer" {
			return fmt.Errorf("crdgen: %s: %s on a %s", path, r.kw, out.Type)
		}
		if *r.dst != nil {
			return fmt.Errorf("crdgen: %s: %s beside its inclusive bound is not supported", path, r.kw)
		}
		*r.dst = ptr(n)
		if r.exclusive != nil {
			*r.exclusive = true // draft 2020-12's number becomes OpenAPI 3.0's bound + flag
		}
	}
	return nil
}

func (c *Converter) objectRules(node map[string]any, out *apiextv1.JSONSchemaProps, path string, refs map[string]bool) error {
	if p, ok := node["properties"]; ok {
		props, ok := p.(map[string]any)
		if !ok {
			return fmt.Errorf("crdgen: %s.properties: want an object", path)
		}
		out.Properties = map[string]apiextv1.JSONSchemaProps{}
		for name, raw := range props {
			pm, ok := raw.(map[string]any)
			if !ok {
				return fmt.Errorf("crdgen: %s.%s: want a schema object", path, name)
			}
			s, err := c.convert(pm, path+"."+name, refs)
			if err != nil {
				return err
			}
			out.Properties[name] = *s
		}
	}
	if r, ok := node["required"]; ok {
		list, ok := r.([]any)
		if !ok {
			return fmt.Errorf("crdgen: %s.required: want an array of names", path)
		}
		for _, n := range list {
			s, ok := n.(string)
			if !ok {
				return fmt.Errorf("crdgen: %s.required: want names, got a %s", path, jsonType(n))
			}
			out.Required = append(out.Required, s)
		}
	}
	ap, hasAP := node["additionalProperties"]
	switch v := ap.(type) {
	case nil:
		if hasAP {
			return fmt.Errorf("crdgen: %s.additionalProperties: want a boolean or a schema", path)
		}
		// Open object: unknown fields are kept.
		out.XPreserveUnknownFields = ptr(true)
	case bool:
		if v {
			out.XPreserveUnknownFields = ptr(true)
		}
		// false: the API server refuses (strict field validation) or prunes unknown fields.
	case map[string]any:
		if len(out.Properties) > 0 {
			return fmt.Errorf("crdgen: %s: additionalProperties with properties is not structural (hint: one or the other)", path)
		}
		s, err := c.convert(v, path+".*", refs)
		if err != nil {
			return err
		}
		out.AdditionalProperties = &apiextv1.JSONSchemaPropsOrBool{Allows: true, Schema: s}
	default:
		return fmt.Errorf("crdgen: %s.additionalProperties: want a boolean or a schema, got a %s", path, jsonType(ap))
	}
	if out.XPreserveUnknownFields != nil && len(out.Properties) == 0 && out.AdditionalProperties == nil && len(out.OneOf) == 0 {
		out.Required = nil // nothing to require of an open map beyond what it keeps
	}
	return nil
}

func (c *Converter) arrayRules(node map[string]any, out *apiextv1.JSONSchemaProps, path string, refs map[string]bool) error {
	raw, ok := node["items"]
	if !ok {
		out.Items = &apiextv1.JSONSchemaPropsOrArray{Schema: &apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}}
	} else {
		im, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("crdgen: %s.items: want one schema object", path)
		}
		s, err := c.convert(im, path+"[]", refs)
		if err != nil {
			return err
		}
		out.Items = &apiextv1.JSONSchemaPropsOrArray{Schema: s}
	}
	if u, ok := node["uniqueItems"]; ok {
		b, ok := u.(bool)
		if !ok {
			return fmt.Errorf("crdgen: %s.uniqueItems: want a boolean", path)
		}
		if b {
			switch out.Items.Schema.Type {
			case "string", "integer", "number", "boolean":
				out.XListType = ptr("set")
			default:
				return fmt.Errorf("crdgen: %s: uniqueItems of %q items: a CRD can only keep scalar items unique (x-kubernetes-list-type: set)", path, out.Items.Schema.Type)
			}
		}
	}
	return nil
}

// CRD describes a cluster's copy of one kind of chaosgate document.
type CRD struct {
	Group, Kind, Plural, Singular, Version string
	ShortNames, Categories                 []string
	// Scope is Namespaced or Cluster.
	Scope apiextv1.ResourceScope
	// Spec is the schema of the object's spec.
	Spec *apiextv1.JSONSchemaProps
	// NamePattern, when set, restricts metadata.name (e.g. a DNS label).
	NamePattern string
	// Description says what the resource is.
	Description string
	// Columns are extra printer columns (kubectl get).
	Columns []apiextv1.CustomResourceColumnDefinition
	// Annotations go on the CustomResourceDefinition itself.
	Annotations map[string]string
}

// Definition builds the CustomResourceDefinition: one served and stored
// version, the given spec schema, spec required.
func (d CRD) Definition() *apiextv1.CustomResourceDefinition {
	meta := apiextv1.JSONSchemaProps{Type: "object"}
	if d.NamePattern != "" {
		meta.Properties = map[string]apiextv1.JSONSchemaProps{
			"name": {Type: "string", Pattern: d.NamePattern, MaxLength: ptr(int64(63))},
		}
	}
	root := apiextv1.JSONSchemaProps{
		Type:        "object",
		Description: d.Description,
		Required:    []string{"spec"},
		Properties: map[string]apiextv1.JSONSchemaProps{
			"apiVersion": {Type: "string", Description: "APIVersion defines the versioned schema of this representation of an object."},
			"kind":       {Type: "string", Description: "Kind is a string value representing the REST resource this object represents."},
			"metadata":   meta,
			"spec":       *d.Spec,
		},
	}
	return &apiextv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Plural + "." + d.Group, Annotations: d.Annotations},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: d.Group,
			Names: apiextv1.CustomResourceDefinitionNames{
				Kind: d.Kind, ListKind: d.Kind + "List", Plural: d.Plural, Singular: d.Singular,
				ShortNames: d.ShortNames, Categories: d.Categories,
			},
			Scope: d.Scope,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: d.Version, Served: true, Storage: true,
				Schema:                   &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &root},
				AdditionalPrinterColumns: d.Columns,
			}},
		},
	}
}

// YAML renders a CustomResourceDefinition as a YAML document (no status,
// no creationTimestamp), with a comment header.
func YAML(crd *apiextv1.CustomResourceDefinition, header string) ([]byte, error) {
	b, err := json.Marshal(crd)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	y, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		if header == "" {
			break
		}
		out.WriteString(strings.TrimRight("# "+l, " ") + "\n")
	}
	out.WriteString("---\n")
	out.Write(y)
	return out.Bytes(), nil
}

func typeAllows(t string, v any) bool {
	switch t {
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	}
	return false
}

func number(v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("want a number, got a %s", jsonType(v))
	}
	return n.Float64()
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func ptr[T any](v T) *T { return &v }

// CheckStructural lists where s breaks the rules of a structural schema
// that the generator promises: every node typed (or keeping unknown
// fields), no additionalProperties beside properties, no uniqueItems, no
// types or properties inside oneOf/anyOf branches.
func CheckStructural(s *apiextv1.JSONSchemaProps) []string {
	var out []string
	var walk func(path string, s *apiextv1.JSONSchemaProps)
	walk = func(path string, s *apiextv1.JSONSchemaProps) {
		if s.Type == "" && !s.XIntOrString && (s.XPreserveUnknownFields == nil || !*s.XPreserveUnknownFields) {
			out = append(out, path+": no type")
		}
		if s.Ref != nil {
			out = append(out, path+": $ref")
		}
		if s.UniqueItems {
			out = append(out, path+": uniqueItems")
		}
		if len(s.Properties) > 0 && s.AdditionalProperties != nil {
			out = append(out, path+": additionalProperties beside properties")
		}
		for kw, bs := range map[string][]apiextv1.JSONSchemaProps{"oneOf": s.OneOf, "anyOf": s.AnyOf, "allOf": s.AllOf} {
			for i, b := range bs {
				if b.Type != "" || len(b.Properties) > 0 || b.Items != nil || b.AdditionalProperties != nil {
					out = append(out, fmt.Sprintf("%s.%s[%d]: a type or properties inside a branch", path, kw, i))
				}
			}
		}
		if s.Type == "array" && (s.Items == nil || s.Items.Schema == nil) {
			out = append(out, path+": array without an items schema")
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(path+"[]", s.Items.Schema)
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
			walk(path+".*", s.AdditionalProperties.Schema)
		}
		names := make([]string, 0, len(s.Properties))
		for n := range s.Properties {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p := s.Properties[n]
			walk(path+"."+n, &p)
		}
	}
	walk("", s)
	return out
}
