// Package canary drives a canary through its traffic steps (default 5, 10,
// 25, 50, 100 percent): at each step it observes a window, asks the judge,
// and promotes to the next step, extends the window on HOLD up to the
// configured limit (then escalates per config), or rolls back on BLOCK.
// Observation, traffic shifting and rollback are functions supplied by the
// caller, so the controller runs the same against real faults or recorded
// windows.
package canary

import (
	"context"
	"errors"
	"fmt"

	"github.com/chaosgate/chaosgate/decision"
	"github.com/chaosgate/chaosgate/engine/report"
)

// DefaultSteps are the canary weights in percent.
var DefaultSteps = []int{5, 10, 25, 50, 100}

// Window names the observation the controller asks for.
type Window struct {
	Step   int // index into the steps
	Weight int // canary weight, percent
	// Extension is 0 for the step's first window and counts the windows
	// added by HOLD verdicts.
	Extension int
}

// Observe observes one window and returns the judge input. An error means
// the platform could not observe (never a pass, never a verdict).
type Observe func(ctx context.Context, w Window) (decision.Input, error)

// Judge is the verdict function (decision.Judge satisfies it).
type Judge interface {
	Judge(cfg *decision.Config, in decision.Input) decision.Verdict
}

// Controller runs the steps. Config is read at every judgement, so a
// hot-reloaded config applies to the next window.
type Controller struct {
	Steps   []int
	Judge   Judge
	Config  func() *decision.Config
	Observe Observe
	// SetWeight shifts traffic to the canary (optional).
	SetWeight func(ctx context.Context, weight int) error
	// Rollback sends all traffic back to the control (optional).
	Rollback func(ctx context.Context) error
	// OnJudged is told every verdict as it happens (optional).
	OnJudged func(w Window, v decision.Verdict)
}

// StepResult is the outcome of one step.
type StepResult struct {
	Weight   int
	Decision decision.Decision // after hold escalation
	Verdict  decision.Verdict  // the last verdict of the step
	Windows  int
}

// RolloutResult is the outcome of the whole canary.
type RolloutResult struct {
	Decision   decision.Decision
	Steps      []StepResult
	RolledBack bool
	Reason     string
}

// ErrObserve marks a failure to observe a window: the platform could not judge.
var ErrObserve = errors.New("canary: observation failed")

// Run drives the canary to a final decision. It returns an error (and no
// decision) when a window could not be observed, traffic could not be
// shifted, or a rollback failed; the caller then exits with code 2.
func (c *Controller) Run(ctx context.Context) (RolloutResult, error) {
	steps := c.Steps
	if len(steps) == 0 {
		steps = DefaultSteps
	}
	judge := c.Judge
	if judge == nil {
		judge = decision.Judge{}
	}
	if c.Observe == nil {
		return RolloutResult{}, fmt.Errorf("%w: no observe function", ErrObserve)
	}
	var res RolloutResult
	for i, weight := range steps {
		if c.SetWeight != nil {
			if err := c.SetWeight(ctx, weight); err != nil {
				return res, fmt.Errorf("canary: shifting traffic to %d%%: %w", weight, err)
			}
		}
		var prev *decision.Verdict
		for ext := 0; ; ext++ {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			cfg := decision.Default()
			if c.Config != nil {
				if x := c.Config(); x != nil {
					cfg = x
				}
			}
			w := Window{Step: i, Weight: weight, Extension: ext}
			in, err := c.Observe(ctx, w)
			if err != nil {
				return res, fmt.Errorf("%w at %d%% (window %d): %w", ErrObserve, weight, ext+1, err)
			}
			v := judge.Judge(cfg, in)
			if c.OnJudged != nil {
				c.OnJudged(w, v)
			}
			d, final := cfg.Hold.Escalate(v, ext, prev)
			if !final {
				prev = &v
				continue // HOLD: extend the window
			}
			res.Steps = append(res.Steps, StepResult{Weight: weight, Decision: d, Verdict: v, Windows: ext + 1})
			switch d {
			case decision.Promote:
			case decision.Block:
				res.Decision, res.RolledBack = decision.Block, true
				res.Reason = fmt.Sprintf("blocked at %d%%: %s", weight, v.Reason)
				if v.Decision == decision.Hold {
					res.Reason = fmt.Sprintf("held at %d%% for %d windows, escalated to block: %s", weight, ext+1, v.Reason)
				}
				if c.Rollback != nil {
					if err := c.Rollback(ctx); err != nil {
						return res, fmt.Errorf("canary: rollback after block failed: %w", err)
					}
				}
				return res, nil
			default:
				res.Decision = decision.Hold
				res.Reason = fmt.Sprintf("held at %d%% after %d windows: %s", weight, ext+1, v.Reason)
				return res, nil
			}
			break
		}
	}
	res.Decision = decision.Promote
	res.Reason = fmt.Sprintf("promoted through %v", steps)
	return res, nil
}

// ReportSteps converts the step results for report/v1.
func (r RolloutResult) ReportSteps() []report.Step {
	out := make([]report.Step, 0, len(r.Steps))
	for _, s := range r.Steps {
		out = append(out, report.StepFromVerdict(s.Weight, s.Decision, s.Verdict, s.Windows))
	}
	return out
}
