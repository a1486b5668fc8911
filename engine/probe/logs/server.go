package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chaosgate/chaosgate/engine"
)

// ServerKind names the query language of a log server. Both kinds accept
// Loki's push API.
type ServerKind string

const (
	// VictoriaLogs answers LogsQL (/select/logsql/query) and takes Loki's
	// push API at /insert/loki/api/v1/push.
	VictoriaLogs ServerKind = "victorialogs"
	// Loki answers LogQL (/loki/api/v1/query, /loki/api/v1/query_range)
	// and takes pushes at /loki/api/v1/push.
	Loki ServerKind = "loki"
)

// Server is a log server chaosgate pushes lines to (Loki's push API) and
// asks how many lines matched a guard (LogsQL or LogQL).
type Server struct {
	Kind ServerKind
	// URL is the server's base URL, e.g. http://127.0.0.1:9428.
	URL string
	// Timeout bounds each request (default 10 s).
	Timeout time.Duration
	// Client is the HTTP client (default: one with Timeout).
	Client *http.Client
	// Header is added to every request (e.g. X-Scope-OrgID, Authorization).
	Header http.Header
}

// ParseServer reads a --log-server value: KIND=URL with KIND victorialogs
// or loki, e.g. victorialogs=http://127.0.0.1:9428.
func ParseServer(s string) (*Server, error) {
	kind, raw, ok := strings.Cut(s, "=")
	if !ok {
		return nil, engine.E(engine.KindInvalid, "log server", fmt.Errorf("%q is not KIND=URL (hint: victorialogs=http://HOST:9428 or loki=http://HOST:3100)", s))
	}
	k := ServerKind(strings.ToLower(strings.TrimSpace(kind)))
	if k != VictoriaLogs && k != Loki {
		return nil, engine.E(engine.KindInvalid, "log server", fmt.Errorf("kind %q in %q is not victorialogs or loki", kind, s))
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, engine.E(engine.KindInvalid, "log server", fmt.Errorf("URL %q in %q is not an http(s) URL with a host", raw, s))
	}
	return &Server{Kind: k, URL: strings.TrimRight(u.String(), "/")}, nil
}

// String names the server without credentials.
func (s *Server) String() string {
	u, err := url.Parse(s.URL)
	if err != nil {
		return string(s.Kind)
	}
	u.User = nil
	return string(s.Kind) + "=" + u.String()
}

func (s *Server) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: s.timeout()}
}

func (s *Server) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 10 * time.Second
}

// Entry is one log line and its time. Labels are the stream's labels when
// the entry was read from a server.
type Entry struct {
	Time   time.Time
	Line   string
	Labels map[string]string
}

// Stream is a set of entries sharing labels.
type Stream struct {
	Labels  map[string]string
	Entries []Entry
}

// PushPath is the path of Loki's push API on a server of kind k.
func PushPath(k ServerKind) string {
	if k == VictoriaLogs {
		return "/insert/loki/api/v1/push"
	}
	return "/loki/api/v1/push"
}

// Push sends streams with Loki's JSON push API
// ({"streams":[{"stream":{labels},"values":[["<unix ns>","line"]]}]}).
func (s *Server) Push(ctx context.Context, streams []Stream) error {
	type wire struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	body := struct {
		Streams []wire `json:"streams"`
	}{}
	for _, st := range streams {
		if len(st.Entries) == 0 {
			continue
		}
		w := wire{Stream: st.Labels}
		for _, e := range st.Entries {
			w.Values = append(w.Values, [2]string{strconv.FormatInt(e.Time.UnixNano(), 10), e.Line})
		}
		body.Streams = append(body.Streams, w)
	}
	if len(body.Streams) == 0 {
		return nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return engine.E(engine.KindInternal, "log push", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+PushPath(s.Kind), bytes.NewReader(b))
	if err != nil {
		return engine.E(engine.KindInvalid, "log push", err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.addHeader(req)
	resp, err := s.client().Do(req)
	if err != nil {
		return engine.E(engine.KindUnavailable, "log push", fmt.Errorf("%s: %w", s, err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return engine.E(engine.KindUnavailable, "log push", fmt.Errorf("%s%s: HTTP %d: %s", s, PushPath(s.Kind), resp.StatusCode, strings.TrimSpace(string(msg))))
	}
	return nil
}

func (s *Server) addHeader(req *http.Request) {
	for k, vs := range s.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
}

// Guard is one log guard asked of the server: lines of the streams with
// Labels (and whose labels in LabelRegex match those RE2 expressions), in
// [Start, End], whose text matches Pattern (RE2).
type Guard struct {
	Labels     map[string]string
	LabelRegex map[string]string
	Pattern    string
	Start, End time.Time
}

// QueryError is a guard query that failed: it names the resolved query so
// that a hold explains itself.
type QueryError struct {
	Query string
	Err   error
}

// Error names the query and the cause.
func (e *QueryError) Error() string { return fmt.Sprintf("log query %s: %v", e.Query, e.Err) }

// Unwrap returns the cause.
func (e *QueryError) Unwrap() error { return e.Err }

// CountQuery is the resolved query text that counts g's lines.
func (s *Server) CountQuery(g Guard) string {
	if s.Kind == Loki {
		secs := int64(math.Ceil(g.End.Sub(g.Start).Seconds()))
		return fmt.Sprintf("sum(count_over_time(%s |~ %s [%ds]))", selector(g.Labels, g.LabelRegex), strconv.Quote(g.Pattern), max(secs, 1))
	}
	return linesLogsQL(g) + " | stats count() matches"
}

// LinesQuery is the resolved query text that returns g's lines.
func (s *Server) LinesQuery(g Guard) string {
	if s.Kind == Loki {
		return fmt.Sprintf("%s |~ %s", selector(g.Labels, g.LabelRegex), strconv.Quote(g.Pattern))
	}
	return linesLogsQL(g)
}

func linesLogsQL(g Guard) string {
	return fmt.Sprintf("%s _time:[%s, %s] ~%s", selector(g.Labels, g.LabelRegex),
		g.Start.UTC().Format(time.RFC3339Nano), g.End.UTC().Format(time.RFC3339Nano), strconv.Quote(g.Pattern))
}

// selector writes labels and label regexes as a stream selector
// {a="x",b=~"y|z"} (sorted by label), the same in LogQL and LogsQL.
func selector(labels, regex map[string]string) string {
	type matcher struct{ label, op, value string }
	var ms []matcher
	for k, v := range labels {
		ms = append(ms, matcher{k, "=", v})
	}
	for k, v := range regex {
		ms = append(ms, matcher{k, "=~", v})
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].label != ms[j].label {
			return ms[i].label < ms[j].label
		}
		return ms[i].op < ms[j].op
	})
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.label + m.op + strconv.Quote(m.value))
	}
	b.WriteByte('}')
	return b.String()
}

// Count asks the server how many lines g matched. It returns the resolved
// query with every answer; a failure is a *QueryError.
func (s *Server) Count(ctx context.Context, g Guard) (int, string, error) {
	q := s.CountQuery(g)
	var body []byte
	var err error
	if s.Kind == Loki {
		v := url.Values{"query": {q}, "time": {strconv.FormatInt(g.End.UnixNano(), 10)}}
		body, err = s.get(ctx, "/loki/api/v1/query", v)
	} else {
		body, err = s.get(ctx, "/select/logsql/query", url.Values{"query": {q}})
	}
	if err != nil {
		return 0, q, &QueryError{Query: q, Err: err}
	}
	var n int
	if s.Kind == Loki {
		n, err = DecodeLokiCount(body)
	} else {
		n, err = DecodeLogsQLCount(body, "matches")
	}
	if err != nil {
		return 0, q, &QueryError{Query: q, Err: err}
	}
	return n, q, nil
}

// Lines asks the server for at most limit of g's lines, oldest first.
func (s *Server) Lines(ctx context.Context, g Guard, limit int) ([]Entry, string, error) {
	q := s.LinesQuery(g)
	var body []byte
	var err error
	if s.Kind == Loki {
		v := url.Values{"query": {q}, "start": {strconv.FormatInt(g.Start.UnixNano(), 10)},
			"end": {strconv.FormatInt(g.End.UnixNano()+1, 10)}, "limit": {strconv.Itoa(limit)}, "direction": {"forward"}}
		body, err = s.get(ctx, "/loki/api/v1/query_range", v)
	} else {
		body, err = s.get(ctx, "/select/logsql/query", url.Values{"query": {q + " | sort by (_time)"}, "limit": {strconv.Itoa(limit)}})
	}
	if err != nil {
		return nil, q, &QueryError{Query: q, Err: err}
	}
	var es []Entry
	if s.Kind == Loki {
		es, err = DecodeLokiStreams(body)
	} else {
		es, err = DecodeLogsQLLines(body)
	}
	if err != nil {
		return nil, q, &QueryError{Query: q, Err: err}
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Time.Before(es[j].Time) })
	if len(es) > limit {
		es = es[:limit]
	}
	return es, q, nil
}

// Query runs a raw LogsQL query (VictoriaLogs) and returns its rows, one
// map of fields per line: what tests and operators use to find decision
// lines by decision_id.
func (s *Server) Query(ctx context.Context, logsql string, limit int) ([]map[string]string, error) {
	if s.Kind != VictoriaLogs {
		return nil, engine.E(engine.KindInvalid, "log query", fmt.Errorf("raw queries are LogsQL: %s is %s", s, s.Kind))
	}
	body, err := s.get(ctx, "/select/logsql/query", url.Values{"query": {logsql}, "limit": {strconv.Itoa(limit)}})
	if err != nil {
		return nil, &QueryError{Query: logsql, Err: err}
	}
	return decodeJSONLines(body)
}

func (s *Server) get(ctx context.Context, path string, v url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path+"?"+v.Encode(), nil)
	if err != nil {
		return nil, engine.E(engine.KindInvalid, "log query", err)
	}
	s.addHeader(req)
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, engine.E(engine.KindUnavailable, "log query", fmt.Errorf("%s unreachable: %w", s, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, engine.E(engine.KindUnavailable, "log query", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 400 {
			msg = msg[:400] + "…"
		}
		kind := engine.KindUnavailable
		if resp.StatusCode == http.StatusBadRequest {
			kind = engine.KindInvalid // a syntax error: retrying will not help
		}
		return nil, engine.E(kind, "log query", fmt.Errorf("%s%s: HTTP %d: %s", s, path, resp.StatusCode, msg))
	}
	return body, nil
}

// DecodeLogsQLCount reads the answer of a LogsQL "| stats count() FIELD"
// query: one JSON line {"FIELD":"N"}. No line means no match.
func DecodeLogsQLCount(body []byte, field string) (int, error) {
	rows, err := decodeJSONLines(body)
	if err != nil {
		return 0, err
	}
	switch len(rows) {
	case 0:
		return 0, nil
	case 1:
	default:
		return 0, fmt.Errorf("%d rows where one count was expected (hint: the query must end in a single | stats count())", len(rows))
	}
	raw, ok := rows[0][field]
	if !ok {
		return 0, fmt.Errorf("row %v has no field %q", rows[0], field)
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("field %q = %q is not a count", field, raw)
	}
	return int(n), nil
}

// DecodeLogsQLLines reads the answer of a LogsQL line query: one JSON
// object per line with _time and _msg.
func DecodeLogsQLLines(body []byte) ([]Entry, error) {
	rows, err := decodeJSONLines(body)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(rows))
	for i, r := range rows {
		t, err := time.Parse(time.RFC3339Nano, r["_time"])
		if err != nil {
			return nil, fmt.Errorf("line %d: _time %q: %w", i+1, r["_time"], err)
		}
		labels := map[string]string{}
		for k, v := range r {
			if !strings.HasPrefix(k, "_") {
				labels[k] = v
			}
		}
		out = append(out, Entry{Time: t, Line: r["_msg"], Labels: labels})
	}
	return out, nil
}

// decodeJSONLines reads JSON lines of string fields (LogsQL's answer).
func decodeJSONLines(body []byte) ([]map[string]string, error) {
	var rows []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("answer line %d: %w (hint: is this a VictoriaLogs /select/logsql endpoint?)", n, err)
		}
		row := make(map[string]string, len(raw))
		for k, v := range raw {
			switch x := v.(type) {
			case string:
				row[k] = x
			default:
				b, _ := json.Marshal(x)
				row[k] = string(b)
			}
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	return rows, nil
}

// lokiResponse is Loki's query answer envelope
// (https://grafana.com/docs/loki/latest/reference/loki-http-api/).
type lokiResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

func decodeLoki(body []byte, want string) (json.RawMessage, error) {
	var r lokiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("answer: %w (hint: is this a Loki /loki/api/v1 endpoint?)", err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("status %q: %s", r.Status, r.Error)
	}
	if r.Data.ResultType != want {
		return nil, fmt.Errorf("result type %q, want %q", r.Data.ResultType, want)
	}
	return r.Data.Result, nil
}

// DecodeLokiCount reads a LogQL instant query's vector answer holding one
// count. An empty vector is zero matches (count_over_time has no series
// where no line matched); several series are an error.
func DecodeLokiCount(body []byte) (int, error) {
	res, err := decodeLoki(body, "vector")
	if err != nil {
		return 0, err
	}
	var vec []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`
	}
	if err := json.Unmarshal(res, &vec); err != nil {
		return 0, fmt.Errorf("vector: %w", err)
	}
	switch len(vec) {
	case 0:
		return 0, nil
	case 1:
	default:
		return 0, fmt.Errorf("%d series where one was expected (hint: wrap the query in sum(...))", len(vec))
	}
	if len(vec[0].Value) != 2 {
		return 0, fmt.Errorf("sample %v is not [time, value]", vec[0].Value)
	}
	s, ok := vec[0].Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", vec[0].Value[1])
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("sample value %q is not a count", s)
	}
	return int(f), nil
}

// DecodeLokiStreams reads a LogQL range query's streams answer.
func DecodeLokiStreams(body []byte) ([]Entry, error) {
	res, err := decodeLoki(body, "streams")
	if err != nil {
		return nil, err
	}
	var streams []struct {
		Stream map[string]string `json:"stream"`
		Values [][]string        `json:"values"`
	}
	if err := json.Unmarshal(res, &streams); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	var out []Entry
	for i, st := range streams {
		for j, v := range st.Values {
			if len(v) < 2 {
				return nil, fmt.Errorf("stream %d value %d: %d fields, want [ns, line]", i, j, len(v))
			}
			ns, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("stream %d value %d: time %q: %w", i, j, v[0], err)
			}
			out = append(out, Entry{Time: time.Unix(0, ns).UTC(), Line: v[1], Labels: st.Stream})
		}
	}
	return out, nil
}
