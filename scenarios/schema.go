package scenarios

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// SchemaJSON is the JSON Schema (draft 2020-12) of scenario files. A test
// keeps it in sync with the Go types.
//
//go:embed schema.json
var SchemaJSON []byte

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

func compiledSchema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile("schema.json")
	})
	return schema, schemaErr
}

// ValidateSchema checks YAML scenario data against the JSON Schema. It is
// the looser, tool-friendly check (editors, CI linters); Parse is the strict
// one with positions and hints.
func ValidateSchema(data []byte) error {
	s, err := compiledSchema()
	if err != nil {
		return fmt.Errorf("scenario schema: %w", err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return err
	}
	// Round-trip through JSON so the value has JSON types only.
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}
