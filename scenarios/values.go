package scenarios

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// scalar is implemented by the value types that decode themselves from one
// YAML scalar. It returns a message and a hint when the scalar is bad.
type scalar interface {
	decodeScalar(n *yaml.Node) (msg, hint string)
}

// Duration is a Go duration written with a unit ("30s", "1m30s", "250ms").
type Duration struct{ time.Duration }

func (d *Duration) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write a duration with a unit, such as "30s", "1m30s" or "250ms"`
	if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
		return fmt.Sprintf("expected a duration, found %s", describe(n)), hint
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return fmt.Sprintf("duration %s has no unit", quote(n.Value)), hint
		}
		return fmt.Sprintf("bad duration %s", quote(n.Value)), hint
	}
	if v < 0 {
		return fmt.Sprintf("duration %s is negative", quote(n.Value)), "durations are zero or more"
	}
	d.Duration = v
	return "", ""
}

// MarshalYAML writes the duration in Go notation.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes the duration in Go notation (JSON uses it too).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// IsZero reports whether the duration is unset.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// Percent is a share written as "25%" (0 to 100 percent); Value is 0..1.
type Percent struct{ Value float64 }

func (p *Percent) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write a percentage with a % sign between 0% and 100%, such as "25%"`
	s := strings.TrimSpace(n.Value)
	if n.Tag != "!!str" || !strings.HasSuffix(s, "%") {
		return fmt.Sprintf("expected a percentage, found %s", describe(n)), hint
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("bad percentage %s", quote(n.Value)), hint
	}
	if v < 0 || v > 100 {
		return fmt.Sprintf("percentage %s is outside 0%%..100%%", quote(n.Value)), hint
	}
	p.Value = v / 100
	return "", ""
}

// MarshalText writes the percentage with a % sign.
func (p Percent) MarshalText() ([]byte, error) {
	return []byte(p.String()), nil
}

// String writes the percentage with its sign ("60%", "0.5%").
func (p Percent) String() string {
	return strconv.FormatFloat(p.Value*100, 'f', -1, 64) + "%"
}

// IsZero reports whether the percentage is unset or zero.
func (p Percent) IsZero() bool { return p.Value == 0 }

// Number is a threshold: a plain number, a percentage ("95%" is 0.95) or a
// duration ("250ms" is 250, in milliseconds).
type Number struct {
	Value float64
	// Text is the value as written.
	Text string
}

func (x *Number) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write a number (0.95), a percentage ("95%") or a duration in milliseconds ("250ms")`
	s := strings.TrimSpace(n.Value)
	x.Text = s
	switch {
	case n.Tag == "!!int" || n.Tag == "!!float":
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Sprintf("bad number %s", quote(s)), hint
		}
		x.Value = v
	case n.Tag == "!!str" && strings.HasSuffix(s, "%"):
		var p Percent
		if msg, h := p.decodeScalar(n); msg != "" {
			return msg, h
		}
		x.Value = p.Value
	case n.Tag == "!!str":
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Sprintf("bad threshold %s", quote(s)), hint
		}
		x.Value = float64(d) / float64(time.Millisecond)
	default:
		return fmt.Sprintf("expected a number, found %s", describe(n)), hint
	}
	return "", ""
}

// MarshalText writes the threshold as written.
func (x Number) MarshalText() ([]byte, error) {
	if x.Text != "" {
		return []byte(x.Text), nil
	}
	return []byte(strconv.FormatFloat(x.Value, 'g', -1, 64)), nil
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!int", "!!float":
			return "the number " + short(n.Value)
		case "!!bool":
			return "the boolean " + short(n.Value)
		}
		return "the string " + quote(n.Value)
	}
	return "an unsupported YAML node"
}
