package promql

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/chaosgate/chaosgate/internal/textclip"
)

// ScrapeInterval returns the longest scrape interval of the targets that
// produce the series selector matches, as the server's targets API
// (/api/v1/targets, scrapeInterval) reports them. A window shorter than
// about three of them may hold fewer than two samples of a series, which
// increase() and deriv() cannot use: callers query at least that long.
// An error says which step failed: no up series for the selector, the
// targets API, or no active target carrying those series' labels.
func (s *Source) ScrapeInterval(ctx context.Context, selector string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, s.queries.Timeout)
	defer cancel()
	q := "up{ " + selector + " }"
	val, _, _, err := s.api.Query(ctx, q, time.Now(), v1.WithTimeout(s.queries.Timeout))
	if err != nil {
		return 0, fmt.Errorf("scrape interval: %s: %w", q, err)
	}
	vec, ok := val.(model.Vector)
	if !ok || len(vec) == 0 {
		return 0, fmt.Errorf("scrape interval: %s: no series (hint: the selector matches no scraped target)", q)
	}
	targets, err := s.activeTargets(ctx)
	if err != nil {
		return 0, err
	}
	var longest time.Duration
	for _, smp := range vec {
		for _, t := range targets {
			if !sameLabels(t.Labels, smp.Metric) {
				continue
			}
			d, err := model.ParseDuration(t.ScrapeInterval)
			if err != nil {
				return 0, fmt.Errorf("scrape interval: target %v: scrapeInterval %q: %w", t.Labels, t.ScrapeInterval, err)
			}
			longest = max(longest, time.Duration(d))
		}
	}
	if longest == 0 {
		return 0, fmt.Errorf("scrape interval: no active target in /api/v1/targets carries the labels of %s (hint: a server older than 2.32 reports no scrapeInterval)", q)
	}
	return longest, nil
}

// activeTarget is the part of an /api/v1/targets entry ScrapeInterval
// reads; client_golang's v1.ActiveTarget has no scrapeInterval.
type activeTarget struct {
	Labels         map[string]string `json:"labels"`
	ScrapeInterval string            `json:"scrapeInterval"`
}

func (s *Source) activeTargets(ctx context.Context) ([]activeTarget, error) {
	u := s.client.URL("/api/v1/targets", nil)
	u.RawQuery = url.Values{"state": {"active"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("scrape interval: targets API: %w", err)
	}
	resp, body, err := s.client.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("scrape interval: targets API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape interval: targets API: HTTP %d: %s", resp.StatusCode, clip(string(body)))
	}
	var doc struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []activeTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Status != "success" {
		return nil, fmt.Errorf("scrape interval: targets API: not a success document (%v): %s", err, clip(string(body)))
	}
	return doc.Data.ActiveTargets, nil
}

// sameLabels reports whether a target's labels are the labels of series m
// (m may carry __name__, which targets do not).
func sameLabels(target map[string]string, m model.Metric) bool {
	n := 0
	for k, v := range m {
		if k == model.MetricNameLabel {
			continue
		}
		if target[string(k)] != string(v) {
			return false
		}
		n++
	}
	return n == len(target)
}

func clip(s string) string { return textclip.String(s, 200) }
