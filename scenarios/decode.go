package scenarios

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds a scenario file; larger inputs are refused.
const maxFileSize = 1 << 20

// position is where a field sits in the file.
type position struct{ line, col int }

// decoder walks a yaml.Node tree into Go values, strictly: unknown fields,
// duplicate keys, wrong node kinds and bad scalars are errors with their
// position. It records each field path's position for later validation.
type decoder struct {
	file string
	errs Errors
	pos  map[string]position
}

func (d *decoder) errAt(n *yaml.Node, path, msg, hint string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Column: n.Column, Path: path, Msg: msg, Hint: hint})
}

// fieldInfo is one struct field as seen from YAML.
type fieldInfo struct {
	name     string
	index    int
	required bool
}

func structFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = strings.ToLower(f.Name[:1]) + f.Name[1:]
		}
		out = append(out, fieldInfo{name: name, index: i, required: !strings.Contains(opts, "omitempty")})
	}
	return out
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		d.errAt(n, path, "YAML aliases are not supported in scenario files", "write the value out in full")
		return
	}
	d.pos[path] = position{n.Line, n.Column}
	if v.CanAddr() {
		if s, ok := v.Addr().Interface().(scalar); ok {
			if n.Kind != yaml.ScalarNode {
				d.errAt(n, path, "expected a single value, found "+describe(n), "")
				return
			}
			if msg, hint := s.decodeScalar(n); msg != "" {
				d.errAt(n, path, msg, hint)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && v.Type().Elem().Kind() == reflect.Struct {
			return // "podKill:" with no body means the defaults
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errAt(n, path, "expected a list, found "+describe(n), "write a YAML list, e.g. [a, b] or one '- item' a line")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errAt(n, path, "expected a mapping, found "+describe(n), "write key: value pairs")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.errAt(k, path, "a key must be a plain string", "")
				continue
			}
			if seen[k.Value] {
				d.errAt(k, path+"."+short(k.Value), "duplicate key "+quote(k.Value), "keep one of them")
				continue
			}
			seen[k.Value] = true
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, path+"."+short(k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errAt(n, path, "expected a string, found "+describe(n), "")
			return
		}
		if n.Tag != "!!str" {
			d.errAt(n, path, "expected a string, found "+describe(n), "quote it: "+quote(n.Value))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.errAt(n, path, "expected a whole number, found "+describe(n), "")
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 32)
		if err != nil {
			d.errAt(n, path, fmt.Sprintf("number %s is out of range", quote(n.Value)), "")
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.errAt(n, path, "expected true or false, found "+describe(n), "")
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err != nil {
			d.errAt(n, path, "expected true or false, found "+describe(n), "write true or false")
			return
		}
		v.SetBool(b)
	default:
		d.errAt(n, path, "unsupported field type "+v.Type().String(), "")
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errAt(n, path, "expected a mapping, found "+describe(n), "write key: value pairs")
		return
	}
	fields := structFields(v.Type())
	names := make([]string, len(fields))
	byName := map[string]fieldInfo{}
	for i, f := range fields {
		names[i] = f.name
		byName[f.name] = f
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errAt(k, path, "a key must be a plain string", "")
			continue
		}
		sub := join(path, short(k.Value))
		f, ok := byName[k.Value]
		if !ok {
			hint := "accepted fields: " + strings.Join(names, ", ")
			if s := suggest(k.Value, names); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			d.errAt(k, sub, fmt.Sprintf("unknown field %s", quote(k.Value)), hint)
			continue
		}
		if seen[k.Value] {
			d.errAt(k, sub, fmt.Sprintf("duplicate field %s", quote(k.Value)), "keep one of them")
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(f.index), sub)
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			d.errAt(n, join(path, f.name), fmt.Sprintf("missing required field %q", f.name), fmt.Sprintf("add %s: <value> here", f.name))
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// decodeDocument parses data (one YAML document) into a Document.
func decodeDocument(file string, data []byte) (*Document, *decoder) {
	d := &decoder{file: file, pos: map[string]position{}}
	if len(data) > maxFileSize {
		d.errs = append(d.errs, &Error{File: file, Line: 1, Column: 1, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize), Hint: "split it into several files"})
		return nil, d
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		line, col := 1, 1
		msg := err.Error()
		if err == io.EOF {
			msg = "the file is empty"
		} else if l, rest, ok := parseYAMLErrLine(msg); ok {
			line, msg = l, rest
		}
		d.errs = append(d.errs, &Error{File: file, Line: line, Column: col, Msg: msg, Hint: "fix the YAML syntax"})
		return nil, d
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		line := 1
		if err == nil {
			line = extra.Line
		}
		d.errs = append(d.errs, &Error{File: file, Line: line, Column: 1, Msg: "more than one YAML document in the file", Hint: "put one document per file"})
		return nil, d
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	doc := &Document{Source: file}
	d.decode(n, reflect.ValueOf(doc).Elem(), "")
	return doc, d
}

// parseYAMLErrLine extracts "line N" from a yaml error message.
func parseYAMLErrLine(msg string) (int, string, bool) {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if !strings.HasPrefix(msg, "line ") {
		return 0, msg, false
	}
	rest := strings.TrimPrefix(msg, "line ")
	num, tail, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, msg, false
	}
	l, err := strconv.Atoi(num)
	if err != nil {
		return 0, msg, false
	}
	return l, strings.TrimSpace(tail), true
}
