package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// Role is what a bearer token may do.
type Role int

// Roles. A viewer reads runs, the dashboard and gate verdicts; an operator
// also starts and aborts runs and manages schedules; an auditor also reads
// the ledger and the block explorer.
const (
	RoleViewer Role = 1 + iota
	RoleOperator
	RoleAuditor
)

// String names the role.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAuditor:
		return "auditor"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleViewer, RoleOperator, RoleAuditor} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, operator or auditor)", s)
}

// allows reports whether a caller with role r may do what needs requires.
func (r Role) allows(need Role) bool {
	return r == need || need == RoleViewer && (r == RoleOperator || r == RoleAuditor)
}

// Token is one bearer token.
type Token struct {
	Name string
	Role Role
	hash [32]byte
}

// Tokens is the set of accepted bearer tokens.
type Tokens struct {
	list []Token
}

// Lookup returns the token matching secret. Every token is compared, in
// constant time over SHA-256 digests, so timing says nothing about which
// one matched or how much of a secret was right.
func (ts *Tokens) Lookup(secret string) (Token, bool) {
	h := sha256.Sum256([]byte(secret))
	var found Token
	ok := 0
	for _, t := range ts.list {
		if subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 {
			found = t
			ok = 1
		}
	}
	return found, ok == 1
}

// Len is the number of tokens.
func (ts *Tokens) Len() int { return len(ts.list) }

// minTokenLen is the shortest accepted secret.
const minTokenLen = 16

// ParseTokens parses a tokens file:
//
//	tokens:
//	  - {name: ci, role: viewer, token: "..."}
//
// Errors carry file:line:col.
func ParseTokens(data []byte, file string) (*Tokens, error) {
	top, err := parseDoc(data, file)
	if err != nil {
		return nil, err
	}
	if top == nil {
		return nil, &ConfigError{File: file, Line: 1, Col: 1, Msg: "no tokens", Hint: "tokens: [{name: ci, role: viewer, token: <at least 16 characters>}]"}
	}
	ts := &Tokens{}
	names := map[string]bool{}
	secrets := map[[32]byte]bool{}
	err = fields(file, "", top, []string{"tokens"}, func(_ string, v *yaml.Node) error {
		if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
			return nodeErr(file, v, "tokens", "want a non-empty list of tokens", "- {name: ci, role: viewer, token: ...}")
		}
		for i, item := range v.Content {
			p := fmt.Sprintf("tokens[%d]", i)
			var name, role, secret string
			var roleNode, secretNode *yaml.Node
			if err := fields(file, p, item, []string{"name", "role", "token"}, func(k string, v *yaml.Node) error {
				switch k {
				case "name":
					return str(file, p+".name", v, &name)
				case "role":
					roleNode = v
					return str(file, p+".role", v, &role)
				default:
					secretNode = v
					return str(file, p+".token", v, &secret)
				}
			}); err != nil {
				return err
			}
			if name == "" || roleNode == nil || secretNode == nil {
				return nodeErr(file, item, p, "name, role and token are required", "")
			}
			r, err := ParseRole(role)
			if err != nil {
				return nodeErr(file, roleNode, p+".role", err.Error(), "")
			}
			if len(secret) < minTokenLen || strings.TrimSpace(secret) != secret {
				return nodeErr(file, secretNode, p+".token", fmt.Sprintf("token must be at least %d characters without surrounding spaces", minTokenLen), "generate one with: openssl rand -hex 24")
			}
			h := sha256.Sum256([]byte(secret))
			if names[name] || secrets[h] {
				return nodeErr(file, item, p, "duplicate token name or secret", "each token needs its own name and secret")
			}
			names[name], secrets[h] = true, true
			ts.list = append(ts.list, Token{Name: name, Role: r, hash: h})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ts.list) == 0 {
		return nil, &ConfigError{File: file, Line: 1, Col: 1, Msg: "no tokens", Hint: "add a tokens: list"}
	}
	return ts, nil
}

// LoadOrCreateTokens reads the tokens file at path; when it does not exist
// and create is set, it writes one (mode 0600) with a fresh random token
// per role, so a fresh machine works without setup. It reports whether
// the file was created. A tokens file that group or others may read or
// write is refused, as private keys are.
func LoadOrCreateTokens(path string, create bool) (*Tokens, bool, error) {
	data, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		var b strings.Builder
		b.WriteString("# chaosgate serve bearer tokens (Authorization: Bearer <token>).\n# Roles: viewer < operator, auditor.\ntokens:\n")
		for _, r := range []Role{RoleViewer, RoleOperator, RoleAuditor} {
			buf := make([]byte, 24)
			if _, err := rand.Read(buf); err != nil {
				return nil, false, err
			}
			fmt.Fprintf(&b, "  - {name: %s, role: %s, token: %q}\n", r, r, hex.EncodeToString(buf))
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, err
		}
		if err := writeAtomic(path, []byte(b.String()), 0o600); err != nil {
			return nil, false, err
		}
		ts, err := ParseTokens([]byte(b.String()), path)
		return ts, err == nil, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("tokens file: %w", err)
	}
	ts, err := ParseTokens(data, path)
	return ts, false, err
}

// readPrivateFile reads a file that holds secrets, refusing one that
// others may read, or group may write. Group read is allowed only when the
// file's group is this process's own group: what Kubernetes does to a
// Secret volume under the pod's fsGroup (mode 0440, group fsGroup), which
// nobody outside the pod's own group can read.
func readPrivateFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	perm := st.Mode().Perm()
	groupReadOnly := perm&0o077 == 0o040
	if perm&0o077 != 0 && !(groupReadOnly && ownGroup(st)) {
		return nil, fmt.Errorf("%s has mode %04o: a file of bearer tokens must not be readable or writable by group or others (hint: chmod 600 %s; a Kubernetes Secret volume may be group-readable when its group is the pod's fsGroup, the process's own group)", path, perm, path)
	}
	return os.ReadFile(path)
}

// ownGroup reports whether a file's group is the process's effective
// group.
func ownGroup(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Gid) == os.Getegid()
}

type ctxKey struct{}

// caller returns the authenticated token of a request.
func caller(ctx context.Context) (Token, bool) {
	t, ok := ctx.Value(ctxKey{}).(Token)
	return t, ok
}

// credential is the bearer secret of r and where it came from: the
// Authorization header, or for browser pages the chaosgate_token cookie
// set by the login form.
func credential(r *http.Request) (secret string, fromCookie bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if s, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(s), false
		}
		return "", false
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return c.Value, true
	}
	return "", false
}

const tokenCookie = "chaosgate_token"

// safeMethod reports whether a request cannot change anything.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// require wraps h so only callers whose role allows need reach it: no or
// an unknown token is 401, a known token without the role is 403. The
// login cookie authenticates pages, the dashboard's forms (/ui/...) and
// reads; an API request that changes something takes the Authorization
// header, which a browser never sends on its own. Cross-origin requests
// that change something never get here (see crossOrigin).
func (s *Server) require(need Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, fromCookie, ok := s.authenticate(r)
		if ok && fromCookie && !safeMethod(r.Method) && strings.HasPrefix(r.URL.Path, "/api/") {
			deny(w, http.StatusUnauthorized, "unauthorized", "the login cookie does not authorize API requests that change something", "send Authorization: Bearer <token>; the dashboard's own forms post to /ui/...")
			return
		}
		if !ok {
			if wantsHTML(r) && safeMethod(r.Method) {
				http.Redirect(w, r, "/login?next="+urlEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="chaosgate"`)
			deny(w, http.StatusUnauthorized, "unauthorized", "missing or unknown bearer token", "send Authorization: Bearer <token> from the tokens file")
			return
		}
		if !t.Role.allows(need) {
			deny(w, http.StatusForbidden, "forbidden", fmt.Sprintf("token %q has role %s; this needs %s", t.Name, t.Role, need), "")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, t)))
	}
}

// deny answers a refused request and closes the connection: a body the
// caller is still sending (slowly, perhaps) is never read.
func deny(w http.ResponseWriter, code int, kind, detail, hint string) {
	w.Header().Set("Connection", "close")
	writeErr(w, code, kind, detail, hint)
}

func (s *Server) authenticate(r *http.Request) (Token, bool, bool) {
	sec, fromCookie := credential(r)
	if sec == "" {
		return Token{}, false, false
	}
	t, ok := s.opt.Tokens.Lookup(sec)
	return t, fromCookie, ok
}

func wantsHTML(r *http.Request) bool {
	return !strings.HasPrefix(r.URL.Path, "/api/") && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// crossOrigin refuses, before anything else runs, every request that
// changes something and that a browser marks as coming from another
// origin (Sec-Fetch-Site, else Origin against Host; net/http's
// CrossOriginProtection): a page elsewhere — another port on the same
// host included — cannot make a signed-in browser start, abort or
// schedule runs. Clients that are not browsers send neither header.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := cop.Check(r); err != nil {
			s.metrics.crossOrigin.Inc()
			deny(w, http.StatusForbidden, "cross_origin", "cross-origin request refused: "+err.Error(), "use the dashboard on this server's own address, or a client that is not a browser with Authorization: Bearer <token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}
