package evidence

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleAnchor(size uint64, tx string) Anchor {
	return Anchor{V: AnchorsSchema, Origin: "example.test/anchors", TreeSize: size, Root: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		TxID: tx, Block: size + 10, Backend: "fabric", Channel: "evidence", Chaincode: "chaosgate", Recorded: 1,
		Time: time.Date(2026, 12, 4, 10, 0, int(size), 0, time.UTC)}
}

func TestAnchorsFileRoundTripAndCoverage(t *testing.T) {
	dir := t.TempDir()
	if as, err := ReadAnchors(dir); err != nil || as != nil {
		t.Fatalf("no file: %v %v", as, err)
	}
	for i, size := range []uint64{2, 5, 5, 9} {
		if err := AppendAnchor(dir, sampleAnchor(size, "tx"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, AnchorsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("anchors file mode: %v %v", st, err)
	}
	as, err := ReadAnchors(dir)
	if err != nil || len(as) != 4 {
		t.Fatalf("read: %d %v", len(as), err)
	}
	if as[1].TxID != "txb" || !as[1].Time.Equal(sampleAnchor(5, "").Time) || as[1].Block != 15 {
		t.Fatalf("record 1 = %+v", as[1])
	}
	for _, c := range []struct {
		index uint64
		tx    string
		ok    bool
	}{{0, "txa", true}, {1, "txa", true}, {2, "txb", true}, {4, "txb", true}, {5, "txd", true}, {8, "txd", true}, {9, "", false}} {
		a, ok := CoveringAnchor(as, c.index)
		if ok != c.ok || a.TxID != c.tx {
			t.Errorf("entry %d covered by %q (%v), want %q (%v)", c.index, a.TxID, ok, c.tx, c.ok)
		}
	}
	if l, ok := LatestAnchor(as); !ok || l.TxID != "txd" || l.TreeSize != 9 {
		t.Fatalf("latest = %+v", l)
	}
}

// TestAnchorsTornRecordIsCutOff: a crash during an append leaves a last
// line without its newline; readers ignore it and the next append cuts it
// off, so every earlier record survives and the file stays whole lines.
func TestAnchorsTornRecordIsCutOff(t *testing.T) {
	dir := t.TempDir()
	if err := AppendAnchor(dir, sampleAnchor(3, "tx-ok")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, AnchorsFile)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"v":1,"origin":"example.test/anchors","tree_si`)
	f.Close()
	as, err := ReadAnchors(dir)
	if err != nil || len(as) != 1 || as[0].TxID != "tx-ok" {
		t.Fatalf("with a torn record: %+v %v", as, err)
	}
	if err := AppendAnchor(dir, sampleAnchor(4, "tx-next")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if bytes.Contains(data, []byte("tree_si\n")) || bytes.Count(data, []byte("\n")) != 2 {
		t.Fatalf("the torn record was not cut off:\n%s", data)
	}
	as, err = ReadAnchors(dir)
	if err != nil || len(as) != 2 || as[1].TxID != "tx-next" {
		t.Fatalf("after the next append: %+v %v", as, err)
	}
}

func TestAnchorsBadInputNamesLineAndColumn(t *testing.T) {
	good := `{"v":1,"origin":"o","tree_size":1,"root":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","tx_id":"t","block":3,"backend":"fabric","entries_recorded":0,"time":"2026-12-04T10:00:00Z"}`
	for _, c := range []struct{ name, data, want string }{
		{"syntax", good + "\n{\"v\":1,,}\n", "anchors.jsonl:2:8: invalid character ','"},
		{"unknown field", good + "\n" + strings.Replace(good, `"block"`, `"blok"`, 1) + "\n", `anchors.jsonl:2:101: json: unknown field "blok"`},
		{"wrong type", strings.Replace(good, `"tree_size":1`, `"tree_size":"1"`, 1) + "\n", "anchors.jsonl:1:"},
		{"empty tree", strings.Replace(good, `"tree_size":1`, `"tree_size":0`, 1) + "\n", "tree_size must be at least 1"},
		{"bad root", strings.Replace(good, `47DEQ`, `!!`, 1) + "\n", "is not a base64 SHA-256 hash"},
		{"version", strings.Replace(good, `"v":1`, `"v":2`, 1) + "\n", "v 2: want 1"},
		{"two values", good + " {}\n", "more than one JSON value"},
	} {
		_, err := ParseAnchors([]byte(c.data), "anchors.jsonl")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "hint:") || KindOf(err) != KindInvalid {
			t.Errorf("%s: %v, want %q with a hint", c.name, err, c.want)
		}
	}
	if err := AppendAnchor(t.TempDir(), Anchor{V: 1}); err == nil || KindOf(err) != KindInvalid {
		t.Fatalf("an incomplete anchor was recorded: %v", err)
	}
}

func FuzzParseAnchors(f *testing.F) {
	var buf bytes.Buffer
	dir := f.TempDir()
	for _, s := range []uint64{1, 7} {
		if err := AppendAnchor(dir, sampleAnchor(s, "tx")); err != nil {
			f.Fatal(err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, AnchorsFile))
	buf.Write(data)
	f.Add(buf.Bytes())
	f.Add([]byte("{}\n"))
	f.Add([]byte("\n\n{\"v\":1}"))
	f.Add([]byte(`{"v":1,"origin":"o","tree_size":18446744073709551615,"root":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","tx_id":"t","block":0,"backend":"fabric","entries_recorded":0,"time":"2026-12-04T10:00:00Z"}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		as, err := ParseAnchors(data, "anchors.jsonl")
		if err != nil {
			if KindOf(err) != KindInvalid || !strings.HasPrefix(err.Error(), "anchors.jsonl:") {
				t.Fatalf("error without its place: %v", err)
			}
			return
		}
		// What decodes is valid and survives a write and a re-read.
		d := t.TempDir()
		for _, a := range as {
			if err := a.Check(); err != nil {
				t.Fatalf("decoded an invalid anchor %+v: %v", a, err)
			}
			if err := AppendAnchor(d, a); err != nil {
				t.Fatal(err)
			}
		}
		again, err := ReadAnchors(d)
		if err != nil || len(again) != len(as) {
			t.Fatalf("re-read %d of %d: %v", len(again), len(as), err)
		}
		for i := range as {
			if again[i].TxID != as[i].TxID || again[i].TreeSize != as[i].TreeSize || !again[i].Time.Equal(as[i].Time) {
				t.Fatalf("record %d changed: %+v -> %+v", i, as[i], again[i])
			}
		}
	})
}
