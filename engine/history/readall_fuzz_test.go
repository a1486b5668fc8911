package history

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzReadAll reads any whole file as a history: it ends with the events
// read so far and either the end or one ParseError naming a line of the
// file; what it accepts, the writer writes back and the reader reads again
// to the same events.
func FuzzReadAll(f *testing.F) {
	var all bytes.Buffer
	for _, ev := range sampleEvents() {
		b, err := Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		all.Write(b)
		all.WriteByte('\n')
	}
	f.Add(all.Bytes())
	f.Add([]byte(""))
	f.Add([]byte("\n\n  \n"))
	f.Add([]byte(`{"op":"send"}` + "\n" + `{"op":`))
	f.Add([]byte(strings.Repeat("x", 70000) + "\n{}"))
	f.Add([]byte("\xff\xfe{\"op\":\"node\"}\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := ReadAll(bytes.NewReader(data))
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) && (pe.Line < 1 || pe.Line > lines) {
				t.Fatalf("error at line %d of a %d-line file: %v", pe.Line, lines, err)
			}
			if pe == nil && !strings.Contains(err.Error(), "history") {
				t.Fatalf("error without a position or a name: %v", err)
			}
		}
		var back bytes.Buffer
		w := NewWriter(&back)
		for _, ev := range evs {
			if err := w.Write(ev); err != nil {
				t.Fatalf("an event read cannot be written: %v", err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		again, err := ReadAll(&back)
		if err != nil || len(again) != len(evs) {
			t.Fatalf("written back: %d events of %d, %v", len(again), len(evs), err)
		}
	})
}
