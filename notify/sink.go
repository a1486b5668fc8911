package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/chaosgate/chaosgate/internal/waitctx"
	"io"
	randv2 "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Sink delivers notifications somewhere. Send must return once ctx is
// done.
type Sink interface {
	Name() string
	Send(ctx context.Context, n Notification) error
}

// Deliverer is a Sink that also says how a delivery went: attempts, the
// last HTTP status, the time it took.
type Deliverer interface {
	Sink
	Deliver(ctx context.Context, n Notification) Delivery
}

// Delivery is how one sink's delivery of one notification went.
type Delivery struct {
	Sink string
	// ID is the delivery id (X-Chaosgate-Delivery), the same in every
	// attempt.
	ID       string
	Attempts int
	// Status is the last response's HTTP status (0: none).
	Status  int
	Elapsed time.Duration
	// Err is nil when the notification was delivered, else a
	// *DeliveryError.
	Err error
}

// String is the line a command prints about the delivery.
func (d Delivery) String() string {
	if d.Err != nil {
		return d.Err.Error()
	}
	if d.Attempts == 0 {
		return "notified " + d.Sink
	}
	return fmt.Sprintf("notified %s (%s)", d.Sink, plural(d.Attempts, "attempt"))
}

// DeliveryError is a notification that was not delivered.
type DeliveryError struct {
	Sink     string
	Attempts int
	// Permanent: the receiver refused it (a 4xx other than 408 and 429,
	// or a redirect); retrying would not help.
	Permanent bool
	// DeadLetter is the file the notification was written to ("": not
	// written; DeadLetterErr says why when writing failed).
	DeadLetter    string
	DeadLetterErr error
	// Err is the last attempt's error; it never carries a secret.
	Err error
}

func (e *DeliveryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "notification to %s failed after %s", e.Sink, plural(e.Attempts, "attempt"))
	switch {
	case e.DeadLetter != "":
		fmt.Fprintf(&b, "; dead-lettered to %s", e.DeadLetter)
	case e.DeadLetterErr != nil:
		fmt.Fprintf(&b, "; dead letter not written: %v", e.DeadLetterErr)
	}
	fmt.Fprintf(&b, " (%v)", e.Err)
	return b.String()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Policy is how a sink retries.
type Policy struct {
	// Attempts is the number of attempts in all (default 4).
	Attempts int
	// Initial is the wait before the first retry (default 500 ms); it
	// doubles at every retry up to Max (default 10 s). Each wait is
	// jittered: between half of it and all of it.
	Initial, Max time.Duration
	// AttemptTimeout bounds one attempt (default 10 s).
	AttemptTimeout time.Duration
	// MaxRetryAfter caps the wait a receiver asks for with Retry-After
	// (default 60 s). A wait past the context's deadline ends the
	// delivery at once.
	MaxRetryAfter time.Duration
}

// DefaultPolicy is the policy of a zero Policy.
var DefaultPolicy = Policy{Attempts: 4, Initial: 500 * time.Millisecond, Max: 10 * time.Second,
	AttemptTimeout: 10 * time.Second, MaxRetryAfter: time.Minute}

func (p Policy) withDefaults() Policy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultPolicy.Attempts
	}
	if p.Initial <= 0 {
		p.Initial = DefaultPolicy.Initial
	}
	if p.Max <= 0 {
		p.Max = DefaultPolicy.Max
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = DefaultPolicy.AttemptTimeout
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultPolicy.MaxRetryAfter
	}
	return p
}

// backoff is the wait after the n-th failed attempt (n ≥ 1): Initial
// doubled n-1 times, capped at Max, then jittered into [d/2, d] by u in
// [0, 1).
func (p Policy) backoff(n int, u float64) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d/2 + time.Duration(u*float64(d/2))
}

// ParseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): a number
// of seconds or an HTTP date, relative to now. ok is false when v is
// neither. A date in the past is a wait of 0; the wait is at most a day.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	const maxWait = 24 * time.Hour
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return 0, false
			}
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxWait/time.Second) {
			return maxWait, true // all digits, too large to count: the cap
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d = t.Sub(now)
	return max(0, min(d, maxWait)), true
}

// HTTPSink posts notifications to one URL, retrying and dead-lettering as
// its Policy says. NewWebhook and NewSlack build one; they differ in the
// body they post and in whether requests are signed.
type HTTPSink struct {
	name     string
	endpoint *url.URL
	// display is the endpoint as errors and dead letters show it.
	display   string
	secret    []byte // nil: unsigned
	encode    func(Notification) ([]byte, error)
	userAgent string
	// header is added to every request: an API's credentials, media type
	// and version (GitHub, GitLab, Jira).
	header http.Header
	// credentials are secrets that errors and dead letters must never
	// show (API tokens, their Basic encoding), besides secret.
	credentials []string
	// rateLimited says whether an answer that is otherwise final (a 4xx)
	// is a rate limit to wait out, and how long (-1: the usual backoff).
	// nil: only 408, 429 and 5xx are retried.
	rateLimited func(resp *http.Response, now time.Time) (wait time.Duration, ok bool)
	policy      Policy
	dead        *DeadLetters
	client      *http.Client

	// Tests replace these.
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func() float64
}

// Options are what every HTTP sink shares.
type Options struct {
	// Policy is the retry policy (zero fields: DefaultPolicy's).
	Policy Policy
	// DeadLetters receives what could not be delivered (nil: nothing is
	// kept).
	DeadLetters *DeadLetters
	// Version is chaosgate's version, sent as User-Agent chaosgate/<Version>
	// (default "dev").
	Version string
}

func newHTTPSink(name string, u *url.URL, display string, encode func(Notification) ([]byte, error), o Options) *HTTPSink {
	v := o.Version
	if v == "" {
		v = "dev"
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// One request per attempt, a few per run: no idle connections (and
	// no goroutines) outlive a delivery.
	tr.DisableKeepAlives = true
	return &HTTPSink{name: name, endpoint: u, display: display, encode: encode, userAgent: "chaosgate/" + v,
		policy: o.Policy.withDefaults(), dead: o.DeadLetters,
		client: &http.Client{Transport: tr,
			// A redirect is not followed: the signed body goes to the
			// configured URL only. A 3xx is a permanent failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		now: time.Now, sleep: waitctx.Sleep, jitter: randv2.Float64}
}

// Name is the sink's name in output, logs and dead letters.
func (s *HTTPSink) Name() string { return s.name }

// Endpoint is the sink's URL as errors show it (no secret part).
func (s *HTTPSink) Endpoint() string { return s.display }

// Send delivers n; see Deliver.
func (s *HTTPSink) Send(ctx context.Context, n Notification) error { return s.Deliver(ctx, n).Err }

// Deliver posts n, retrying transient failures (network errors, 408, 429,
// 5xx) as the policy says, and writes n to the dead letters when it could
// not be delivered.
func (s *HTTPSink) Deliver(ctx context.Context, n Notification) Delivery {
	start := s.now()
	d := Delivery{Sink: s.name, ID: newDeliveryID()}
	body, err := s.encode(n)
	if err != nil {
		return s.fail(d, start, n, true, fmt.Errorf("encoding the notification: %s", s.scrub(err.Error())))
	}
	p := s.policy
	for {
		d.Attempts++
		status, wait, err := s.attempt(ctx, d.ID, body)
		d.Status = status
		if err == nil {
			d.Elapsed = s.now().Sub(start)
			return d
		}
		var perm *permanentError
		switch {
		case errors.As(err, &perm):
			return s.fail(d, start, n, true, perm.err)
		case ctx.Err() != nil:
			return s.fail(d, start, n, false, err)
		case d.Attempts >= p.Attempts:
			return s.fail(d, start, n, false, err)
		}
		if wait < 0 {
			wait = p.backoff(d.Attempts, s.jitter())
		} else {
			wait = min(wait, p.MaxRetryAfter)
		}
		if dl, ok := ctx.Deadline(); ok && s.now().Add(wait).After(dl) {
			return s.fail(d, start, n, false, fmt.Errorf("%w; the next attempt (in %s) would be past the delivery deadline", err, wait.Round(time.Millisecond)))
		}
		if serr := s.sleep(ctx, wait); serr != nil {
			return s.fail(d, start, n, false, fmt.Errorf("%w; then %v", err, serr))
		}
	}
}

// fail ends a delivery that did not succeed: the dead letter, then the
// error.
func (s *HTTPSink) fail(d Delivery, start time.Time, n Notification, permanent bool, err error) Delivery {
	de := &DeliveryError{Sink: s.name, Attempts: d.Attempts, Permanent: permanent, Err: err}
	if s.dead != nil {
		rec := DeadLetter{Time: s.now().UTC(), Sink: s.name, Endpoint: s.display, DeliveryID: d.ID,
			Attempts: d.Attempts, Error: err.Error(), Notification: n}
		if werr := s.dead.Append(rec); werr != nil {
			de.DeadLetterErr = werr
		} else {
			de.DeadLetter = s.dead.Path()
		}
	}
	d.Err, d.Elapsed = de, s.now().Sub(start)
	return d
}

// permanentError is a failure that retrying would not change.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

// attempt posts body once. wait is the receiver's Retry-After (-1: none).
func (s *HTTPSink) attempt(ctx context.Context, id string, body []byte) (status int, wait time.Duration, err error) {
	wait = -1
	actx, cancel := context.WithTimeout(ctx, s.policy.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return 0, wait, &permanentError{fmt.Errorf("POST %s: building the request failed", s.display)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	req.Header.Set("X-Chaosgate-Delivery", id)
	for k, v := range s.header {
		req.Header[k] = v
	}
	if s.secret != nil {
		ts := strconv.FormatInt(s.now().Unix(), 10)
		req.Header.Set("X-Chaosgate-Timestamp", ts)
		req.Header.Set("X-Chaosgate-Signature", "sha256="+sign(s.secret, ts, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error would quote the whole URL
		}
		msg := s.scrub(err.Error())
		if actx.Err() != nil && ctx.Err() == nil {
			msg = fmt.Sprintf("no answer within %s", s.policy.AttemptTimeout)
		}
		return 0, wait, fmt.Errorf("POST %s: %s", s.display, msg)
	}
	defer resp.Body.Close()
	// Enough of the body that a credential it echoes is whole when it is
	// scrubbed, before the hint is cut to length.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, wait, nil
	}
	err = fmt.Errorf("POST %s: %s%s", s.display, resp.Status, bodyHint([]byte(s.scrub(string(head)))))
	c := resp.StatusCode
	switch {
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		if ra, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), s.now()); ok {
			wait = ra
		}
		return c, wait, err
	case s.rateLimited != nil:
		if rl, ok := s.rateLimited(resp, s.now()); ok {
			return c, rl, err
		}
	}
	return c, wait, &permanentError{err}
}

// scrub removes the secret parts of the endpoint from text a lower layer
// or the receiver wrote (a network error, a response body that echoes the
// request): the URL becomes its public form; credentials, query, the
// path of a secret URL and the HMAC secret become "…".
func (s *HTTPSink) scrub(text string) string {
	if full := s.endpoint.String(); full != s.display {
		text = strings.ReplaceAll(text, full, s.display)
	}
	for _, secret := range append([]string{s.endpoint.RawQuery, s.endpoint.User.String(), string(s.secret)}, s.credentials...) {
		if len(secret) > 1 {
			text = strings.ReplaceAll(text, secret, "…")
		}
	}
	if s.display == secretURL(s.endpoint) {
		for _, p := range []string{s.endpoint.EscapedPath(), s.endpoint.Path} {
			if len(p) > 1 {
				text = strings.ReplaceAll(text, p, "/…")
			}
		}
	}
	return text
}

// bodyHint is the start of a response body for an error message:
// printable text only, one line.
func bodyHint(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, string(b))
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	return ": " + clip(s, 120)
}

// sign is the hex HMAC-SHA256 of timestamp + "." + body.
func sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func newDeliveryID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
