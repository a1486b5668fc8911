package scenarios

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

//go:embed library/*.yaml
var libraryFS embed.FS

// LibraryFS is the built-in scenario library, one file per scenario.
func LibraryFS() fs.FS {
	sub, err := fs.Sub(libraryFS, "library")
	if err != nil {
		return libraryFS
	}
	return sub
}

// Parse decodes and validates one scenario document from data. file names
// the source in error positions. The error is an Errors list.
func Parse(file string, data []byte) (*Document, error) {
	doc, d := decodeDocument(file, data)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	v := &validator{file: file, pos: d.pos}
	v.document(doc)
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	doc.applyDefaults()
	doc.pos = d.pos
	return doc, nil
}

// LoadFile reads, decodes and validates a scenario file. A GameDay's
// references are checked too; they name library experiments or files in
// the game day's directory or below it.
func LoadFile(name string) (*Document, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, Errors{{File: name, Line: 0, Column: 0, Msg: fmt.Sprintf("cannot read the file: %v", errors.Unwrap(err)), Hint: "check the path"}}
	}
	return load(name, data, refScope{root: filepath.Dir(name), base: "."})
}

// LoadFileIn reads the scenario file name inside the directory dir (name is
// a relative path that must not leave dir, symbolic links included) and
// validates it like LoadFile. A GameDay's file references are confined to
// dir too.
func LoadFileIn(dir, name string) (*Document, error) {
	display := filepath.Join(dir, name)
	if !filepath.IsLocal(name) {
		return nil, Errors{{File: display, Msg: fmt.Sprintf("%s is not a file inside %s", quote(name), dir), Hint: "name a file of the directory, without .. or a leading /"}}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, Errors{{File: dir, Msg: fmt.Sprintf("cannot open the directory: %v", errors.Unwrap(err)), Hint: "check the path"}}
	}
	defer root.Close()
	data, err := readLimited(root, name)
	if err != nil {
		return nil, Errors{{File: display, Msg: fmt.Sprintf("cannot read the file: %v", err), Hint: "check the path"}}
	}
	return load(display, data, refScope{root: dir, base: filepath.Dir(name)})
}

func load(file string, data []byte, refs refScope) (*Document, error) {
	doc, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	doc.refs = refs
	if doc.Kind == KindGameDay {
		if _, err := Resolve(doc); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// readLimited reads a regular file of at most maxFileSize bytes through
// root.
func readLimited(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, unwrapPath(err)
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Library returns a built-in scenario by name (e.g. "pod-kill").
func Library(name string) (*Document, error) {
	data, err := fs.ReadFile(LibraryFS(), name+".yaml")
	if err != nil {
		hint := "list the library with: chaosgate scenarios list"
		if s := suggest(name, LibraryNames()); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		return nil, Errors{{File: "library:" + name, Msg: fmt.Sprintf("no library scenario %q", name), Hint: hint}}
	}
	return Parse("library:"+name, data)
}

// LibraryNames lists the built-in scenarios, sorted.
func LibraryNames() []string {
	entries, err := fs.ReadDir(LibraryFS(), ".")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Open loads a scenario by file path, or by library name when the argument
// is not an existing file and has no path separator or extension.
func Open(ref string) (*Document, error) {
	if _, err := os.Stat(ref); err == nil {
		return LoadFile(ref)
	}
	if !strings.ContainsAny(ref, `/\`) && path.Ext(ref) == "" {
		return Library(ref)
	}
	return LoadFile(ref)
}

func (d *Document) applyDefaults() {
	if l := d.Spec.Target.Local; l != nil && l.Partitions == 0 {
		l.Partitions = DefaultPartitions
	}
	if len(d.Spec.Canary.Steps) == 0 && d.Spec.Canary.Increment.IsZero() {
		d.Spec.Canary.Steps = append([]int(nil), DefaultSteps...)
	}
	if d.Spec.Decision.Policy == "" {
		d.Spec.Decision.Policy = "default"
	}
	for i := range d.Spec.Faults {
		f := &d.Spec.Faults[i]
		for _, nf := range []*NodeFault{f.PodKill, f.PodPause} {
			if nf != nil && nf.Mode == "" {
				nf.Mode = ModeOne
			}
		}
		if f.Name == "" {
			f.Name = fmt.Sprintf("%s-%d", strings.ToLower(f.Kind()), i+1)
		}
	}
	for i := range d.Spec.Abort {
		if d.Spec.Abort[i].Arm == "" {
			d.Spec.Abort[i].Arm = ArmAny
		}
	}
}

// Resolve returns the experiments a document runs: the document itself for
// an Experiment; for a GameDay, each referenced experiment with the game
// day's target, canary steps, decision, blast radius, probes and abort
// conditions (when set) applied, and its duration override applied. Every
// resolved experiment is validated again against the game day's target.
func Resolve(doc *Document) ([]*Document, error) {
	if doc.Kind == KindExperiment {
		return []*Document{doc}, nil
	}
	if doc.pos == nil {
		doc.pos = map[string]position{}
	}
	var out []*Document
	var errs Errors
	for i, ref := range doc.Spec.Experiments {
		where := fmt.Sprintf("spec.experiments[%d].ref", i)
		exp, err := openRef(doc, ref.Ref)
		if err != nil {
			pp := doc.pos[where]
			e := &Error{File: doc.Source, Line: pp.line, Column: pp.col, Path: where, Msg: fmt.Sprintf("cannot load %s: %v", quote(ref.Ref), err), Hint: "name a library experiment (chaosgate scenarios list) or a file next to the game day"}
			var re refError
			var es Errors
			switch {
			case errors.As(err, &re):
				e.Msg, e.Hint = re.msg, re.hint
			case errors.As(err, &es) && len(es) == 1 && es[0].Line == 0:
				e.Msg, e.Hint = es[0].Msg, es[0].Hint
			}
			errs = append(errs, e)
			continue
		}
		if exp.Kind != KindExperiment {
			pp := doc.pos[where]
			errs = append(errs, &Error{File: doc.Source, Line: pp.line, Column: pp.col, Path: where, Msg: fmt.Sprintf("%s is a %s, not an Experiment", quote(ref.Ref), exp.Kind), Hint: "game days do not nest"})
			continue
		}
		m := *exp
		m.Spec.Target = doc.Spec.Target
		m.Spec.Canary = doc.Spec.Canary
		m.Spec.Decision = doc.Spec.Decision
		m.Spec.BlastRadius = doc.Spec.BlastRadius
		if doc.Spec.SteadyState.Duration > 0 {
			m.Spec.SteadyState = doc.Spec.SteadyState
		}
		if doc.Spec.Probes != (Probes{}) {
			m.Spec.Probes = doc.Spec.Probes
		}
		if len(doc.Spec.Abort) > 0 {
			m.Spec.Abort = append([]AbortCondition(nil), doc.Spec.Abort...)
		}
		m.Spec.Faults = append([]Fault(nil), exp.Spec.Faults...)
		m.RunAt = append([]int(nil), ref.Steps...)
		if ref.Duration.Duration > 0 {
			for j := range m.Spec.Faults {
				m.Spec.Faults[j].Duration = ref.Duration
			}
		}
		v := &validator{file: doc.Source, pos: map[string]position{}}
		v.document(&m)
		pp := doc.pos[where]
		for _, e := range v.errs {
			e.Path = where + " (" + exp.Metadata.Name + ": " + e.Path + ")"
			e.Line, e.Column = pp.line, pp.col
			errs = append(errs, e)
		}
		if len(v.errs) == 0 {
			out = append(out, &m)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// openRef loads the experiment a game day references: a library name, or
// a file inside the game day's reference scope. An error never quotes the
// referenced file: only whether it could be read and where its first
// problem is.
func openRef(doc *Document, ref string) (*Document, error) {
	isName := !strings.ContainsAny(ref, `/\`) && path.Ext(ref) == ""
	if isName {
		return Library(ref)
	}
	if doc.refs.root == "" {
		hint := "put the game day and its experiments in the experiments directory and name it, or reference library experiments (chaosgate scenarios list)"
		if strings.HasPrefix(doc.Source, "library:") {
			hint = "library game days reference library names only"
		}
		return nil, refError{msg: fmt.Sprintf("%s is not a library experiment, and this game day was not loaded from a file: it may reference library experiments only", quote(ref)), hint: hint}
	}
	rel := filepath.Join(doc.refs.base, filepath.FromSlash(ref))
	if filepath.IsAbs(ref) || !filepath.IsLocal(rel) {
		return nil, refError{msg: fmt.Sprintf("%s is outside the game day's directory", quote(ref)), hint: "reference files next to the game day or below it, by a relative path without .."}
	}
	root, err := os.OpenRoot(doc.refs.root)
	if err != nil {
		return nil, refError{msg: fmt.Sprintf("cannot open %s: %v", doc.refs.root, unwrapPath(err)), hint: "check the directory"}
	}
	defer root.Close()
	data, err := readLimited(root, rel)
	if err != nil {
		return nil, refError{msg: fmt.Sprintf("cannot read %s: %v", quote(ref), err), hint: "reference files next to the game day or below it; symbolic links must stay inside its directory"}
	}
	display := filepath.Join(doc.refs.root, rel)
	exp, err := Parse(display, data)
	if err != nil {
		var es Errors
		if errors.As(err, &es) && len(es) > 0 {
			return nil, refError{msg: fmt.Sprintf("%s is not a valid scenario file (%d problem(s), the first at line %d, column %d)", quote(ref), len(es), es[0].Line, es[0].Column),
				hint: "chaosgate scenarios validate " + display + " shows them"}
		}
		return nil, refError{msg: fmt.Sprintf("%s is not a valid scenario file", quote(ref)), hint: "chaosgate scenarios validate " + display}
	}
	return exp, nil
}

// refError is a reference that cannot be loaded, with a hint.
type refError struct{ msg, hint string }

func (e refError) Error() string { return e.msg }

// RunsAt reports whether a resolved experiment runs at canary weight w.
func (d *Document) RunsAt(w int) bool {
	if len(d.RunAt) == 0 {
		return true
	}
	for _, x := range d.RunAt {
		if x == w {
			return true
		}
	}
	return false
}

// EstimatedDuration is how long the fault phases of a document take over
// all its canary steps: per step, each experiment that runs at it spends a
// steady-state window before and after each fault plus the fault duration.
// Process start-up and recovery waits come on top.
func EstimatedDuration(doc *Document) (time.Duration, error) {
	exps, err := Resolve(doc)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, w := range doc.Spec.Canary.StepsOrDefault() {
		for _, e := range exps {
			if !e.RunsAt(w) {
				continue
			}
			for _, f := range e.Spec.Faults {
				total += 2*e.Spec.SteadyState.Duration + f.Duration.Duration
			}
		}
	}
	return total, nil
}
