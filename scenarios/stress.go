package scenarios

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultMaxClockOffset is the reference aggregator's --max-clock-offset:
// the largest lead of a received HLC timestamp a node merges. A clock skew
// must stay within it, or the correct build refuses its peers' stamps and
// the fault tests the refusal instead of the clock.
const DefaultMaxClockOffset = 500 * time.Millisecond

// ClockSkewFault moves one node's physical clock by a signed offset: behind
// (negative) or ahead. With handover, once the skew is in force the skewed
// node is handed the leadership of one partition it follows, as a failover
// onto a node whose clock runs behind would: a correct build merges its
// predecessor's stamps, a build that ignores received timestamps stamps
// records below them.
type ClockSkewFault struct {
	// Offset is the signed skew, e.g. "-300ms"; its size must stay below
	// the target's max clock offset.
	Offset SignedDuration `yaml:"offset" json:"offset"`
	// Handover hands the skewed node the leadership of a partition it
	// follows once the skew is in force.
	Handover bool `yaml:"handover,omitempty" json:"handover,omitempty"`
	// Mode is one (a node chosen by the engine, default) or fixed.
	Mode  string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// OverloadFault sends a burst far above the sustainable rate to each arm in
// turn, for the fault's duration, through the load generator. A correct
// build sheds the excess explicitly (HTTP 429); the burst's messages are
// recorded in the arm's history like any other.
type OverloadFault struct {
	// Rate is the burst's offered load per arm in messages per second,
	// written 4000 or "4000/s".
	Rate Rate `yaml:"rate" json:"rate"`
	// Batch is the messages per request (default 20).
	Batch int `yaml:"batch,omitempty" json:"batch,omitempty"`
	// Payload is the payload size of each message in bytes (default 128):
	// what a node holds per message it queues.
	Payload int `yaml:"payload,omitempty" json:"payload,omitempty"`
}

// CPUStressFault takes a share of one CPU away from nodes for the fault's
// duration. Locally the node's process is held to the rest of one CPU by a
// CFS quota in a cgroup of its own; on Kubernetes a Chaos Mesh StressChaos
// runs a CPU stressor worker at that load inside the pod, where it competes
// with the application for the pod's CPU limit.
type CPUStressFault struct {
	// Load is the share of one CPU taken away, "1%" to "95%".
	Load Percent `yaml:"load" json:"load"`
	// Mode is one (a node chosen by the engine, default), leader or
	// fixed (the nodes listed in nodes).
	Mode  string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// MemoryStressFault takes memory from nodes for the fault's duration: a
// stressor holds Size bytes beside the node under one memory limit, so the
// node has only the rest of it. On Kubernetes it is a Chaos Mesh
// StressChaos memory stressor in the pod, under the pod's own memory
// limit. Locally the nodes run without a limit, so the fault gives the
// node one: it moves into a memory cgroup of its own limited to Limit,
// and Size of it is taken by tmpfs pages written from inside that cgroup
// (charged to it and, with no swap, never reclaimed), exactly as a
// stressor's heap would be.
type MemoryStressFault struct {
	// Size is the memory taken, with a unit: B, KB/KiB, MB/MiB, GB/GiB
	// ("256MiB").
	Size ByteSize `yaml:"size" json:"size"`
	// Limit (local target only) is the memory limit the node and the
	// stressor share during the fault: the node may take Limit − Size of
	// new memory before the kernel's OOM killer ends it. Default: Size +
	// 64MiB. On Kubernetes the pod's resources.limits.memory is the
	// limit.
	Limit ByteSize `yaml:"limit,omitempty" json:"limit,omitzero"`
	// Mode is one (a node chosen by the engine, default), leader or
	// fixed (the nodes listed in nodes).
	Mode  string   `yaml:"mode,omitempty" json:"mode,omitempty"`
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// Bounds of a memoryStress: at least 1 MiB taken, at most 16 GiB; the
// default room a local node keeps beside the taken memory.
const (
	MinMemoryStress       = 1 << 20
	MaxMemoryStress       = 16 << 30
	DefaultMemoryHeadroom = 64 << 20
)

// LimitOrDefault is the local limit: Limit, or Size + 64MiB.
func (m MemoryStressFault) LimitOrDefault() int64 {
	if m.Limit.Bytes > 0 {
		return m.Limit.Bytes
	}
	return m.Size.Bytes + DefaultMemoryHeadroom
}

// ByteSize is an amount of memory written with a unit, as Chaos Mesh
// takes it: B, KB/KiB, MB/MiB, GB/GiB, TB/TiB (KB is 1000 bytes, KiB 1024).
type ByteSize struct {
	Bytes int64
	// Text is the size as written.
	Text string
}

// byteUnits are Chaos Mesh's memory units, longest suffix first.
var byteUnits = []unit{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

// ParseByteSize reads a whole number with a unit into bytes.
func ParseByteSize(s string) (int64, error) { return parseWithUnit(s, byteUnits) }

func (b *ByteSize) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write a whole number with a unit: B, KB, KiB, MB, MiB, GB or GiB, such as "256MiB"`
	if n.Tag != "!!str" && n.Tag != "!!int" {
		return fmt.Sprintf("expected a size, found %s", describe(n)), hint
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Sprintf("bad size %s: %v", quote(n.Value), err), hint
	}
	b.Bytes, b.Text = v, strings.TrimSpace(n.Value)
	return "", ""
}

// String writes the size as written, or in MiB when whole, else bytes.
func (b ByteSize) String() string {
	if b.Text != "" {
		return b.Text
	}
	if b.Bytes%(1<<20) == 0 {
		return strconv.FormatInt(b.Bytes>>20, 10) + "MiB"
	}
	return strconv.FormatInt(b.Bytes, 10) + "B"
}

// MarshalText writes the size as written.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// IsZero reports an unset size.
func (b ByteSize) IsZero() bool { return b.Bytes == 0 }

// MaxCPUStressLoad is the largest share of a CPU a cpuStress takes away: a
// node left with less than 5 % of a CPU is a paused node (use podPause).
const MaxCPUStressLoad = 0.95

// MaxOverloadRate bounds an overload burst's rate; MaxOverloadPayload its
// messages' payload size.
const (
	MaxOverloadRate    = 1_000_000
	MaxOverloadPayload = 64 << 10
)

// SignedDuration is a Go duration with a unit that may be negative
// ("-300ms", "1.5s").
type SignedDuration struct{ time.Duration }

func (d *SignedDuration) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write a signed duration with a unit, such as "-300ms" (behind) or "250ms" (ahead)`
	if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
		return fmt.Sprintf("expected a duration, found %s", describe(n)), hint
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return fmt.Sprintf("duration %s has no unit", quote(n.Value)), hint
		}
		return fmt.Sprintf("bad duration %s", quote(n.Value)), hint
	}
	d.Duration = v
	return "", ""
}

// MarshalYAML writes the duration in Go notation.
func (d SignedDuration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText writes the duration in Go notation (JSON uses it too).
func (d SignedDuration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Rate is a load in messages per second: a plain number or "N/s".
type Rate struct {
	Value float64
}

func (r *Rate) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write messages per second as a number, such as 4000 or "4000/s"`
	s := strings.TrimSpace(n.Value)
	if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
		return fmt.Sprintf("expected a rate, found %s", describe(n)), hint
	}
	num := strings.TrimSpace(strings.TrimSuffix(s, "/s"))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("rate %s is not a number", quote(s)), hint
	}
	r.Value = v
	return "", ""
}

// MarshalText writes the rate as "N/s".
func (r Rate) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(r.Value, 'f', -1, 64) + "/s"), nil
}

// MaxClockOffset is the nodes' max clock offset on the target: the local
// target's maxClockOffset, else DefaultMaxClockOffset.
func (t Target) MaxClockOffset() time.Duration {
	if t.Local != nil && t.Local.MaxClockOffset.Duration > 0 {
		return t.Local.MaxClockOffset.Duration
	}
	return DefaultMaxClockOffset
}

func (v *validator) stressFault(p, kind string, f Fault, n int, t Target) {
	local := t.Local != nil
	switch kind {
	case "clockSkew":
		q := p + ".clockSkew"
		d := f.ClockSkew
		off := d.Offset.Duration
		maxOff := t.MaxClockOffset()
		switch {
		case off == 0:
			v.at(q+".offset", "offset is zero: the fault would do nothing", `e.g. offset: "-300ms" (behind)`)
		case off.Abs() >= maxOff:
			v.at(q+".offset", fmt.Sprintf("offset %s is beyond the nodes' max clock offset %s", off, maxOff),
				fmt.Sprintf("keep |offset| below %s: beyond it a correct node refuses its peers' timestamps (the aggregator's --max-clock-offset; a local target may raise it with maxClockOffset)", maxOff))
		}
		switch d.Mode {
		case "", ModeOne:
			if len(d.Nodes) > 0 {
				v.at(q+".nodes", "nodes are only used with mode: fixed", "set mode: fixed or remove nodes")
			}
		case ModeFixed:
			if len(d.Nodes) != 1 {
				v.at(q+".nodes", fmt.Sprintf("mode fixed names %d nodes; a clock skew acts on one", len(d.Nodes)), "name one node, e.g. nodes: [n2]")
			}
			for i, x := range d.Nodes {
				v.node(fmt.Sprintf("%s.nodes[%d]", q, i), x, n, local)
			}
		default:
			v.at(q+".mode", fmt.Sprintf("unknown mode %s", quote(d.Mode)), oneOfHint(d.Mode, []string{ModeOne, ModeFixed}))
		}
		if d.Handover && n > 0 && n < 2 {
			v.at(q+".handover", "handover needs at least 2 nodes", "a leadership handover moves a partition to another node")
		}
	case "cpuStress":
		q := p + ".cpuStress"
		c := f.CPUStress
		if c.Load.Value < 0.01 || c.Load.Value > MaxCPUStressLoad {
			v.at(q+".load", fmt.Sprintf("load %s is outside 1%%..%.0f%% of one CPU", c.Load.String(), MaxCPUStressLoad*100),
				`e.g. load: "60%" (the node keeps 40% of one CPU); to stop a node, use podPause`)
		}
	case "memoryStress":
		q := p + ".memoryStress"
		m := f.MemoryStress
		if m.Size.Bytes < MinMemoryStress || m.Size.Bytes > MaxMemoryStress {
			v.at(q+".size", fmt.Sprintf("size %s is outside 1MiB..16GiB", m.Size), `e.g. size: 256MiB`)
		}
		switch {
		case !local && !m.Limit.IsZero():
			v.at(q+".limit", "limit is the local target's", "on Kubernetes the pod's resources.limits.memory is the limit the stressor takes its size from; remove limit")
		case local && !m.Limit.IsZero() && m.Limit.Bytes < m.Size.Bytes+MinMemoryStress:
			v.at(q+".limit", fmt.Sprintf("limit %s leaves the node less than 1MiB beside size %s", m.Limit, m.Size), "the node keeps limit − size; e.g. limit: "+ByteSize{Bytes: m.Size.Bytes + DefaultMemoryHeadroom}.String()+" (the default, size + 64MiB)")
		}
	case "overload":
		q := p + ".overload"
		o := f.Overload
		if o.Rate.Value <= 0 || o.Rate.Value > MaxOverloadRate {
			v.at(q+".rate", fmt.Sprintf("rate %g is outside 1..%d messages per second", o.Rate.Value, MaxOverloadRate), "e.g. rate: 4000")
		}
		if o.Batch < 0 || o.Batch > 1000 {
			v.at(q+".batch", fmt.Sprintf("batch %d is outside 1..1000", o.Batch), "the aggregator takes at most 1000 messages per request")
		}
		if o.Payload < 0 || o.Payload > MaxOverloadPayload {
			v.at(q+".payload", fmt.Sprintf("payload %d is outside 1..%d bytes", o.Payload, MaxOverloadPayload), "e.g. payload: 2048")
		}
		if o.Batch > 0 && o.Payload*o.Batch > MaxOverloadPayload*8 {
			v.at(q+".payload", fmt.Sprintf("batch × payload is %d bytes, above the aggregator's request limit", o.Batch*o.Payload), "send fewer or smaller messages per request")
		}
	}
}

// BandwidthFault caps the throughput of the chosen edges at a rate, in
// each direction. Locally every proxied connection on an edge is held to
// the rate (Toxiproxy's bandwidth toxic); on Kubernetes a Chaos Mesh
// NetworkChaos bandwidth action shapes the sending pods' traffic with a
// token bucket.
type BandwidthFault struct {
	// Rate is the cap in Chaos Mesh's (tc's) units: bit, kbit, mbit,
	// gbit are bits per second, bps, kbps, mbps, gbps bytes per second
	// ("1mbit" is 125000 bytes/s, "64kbps" 64000 bytes/s).
	Rate  BandwidthRate `yaml:"rate" json:"rate"`
	Edges Edges         `yaml:"edges" json:"edges"`
}

// PacketLossFault loses a share of the packets on the chosen edges, in
// each direction. On Kubernetes it is a Chaos Mesh NetworkChaos loss
// action (netem in the sending pods). Locally the edges are TCP proxies,
// which relay a byte stream and cannot drop a packet: they play what the
// loss does to the TCP connection — each segment lost with this
// probability holds the stream for a retransmission timeout (200 ms,
// doubling for losses in a row) — so the application sees loss as it
// would, stalls and all.
type PacketLossFault struct {
	Loss  Percent `yaml:"loss" json:"loss"`
	Edges Edges   `yaml:"edges" json:"edges"`
}

// CorruptFault corrupts a share of the packets on the chosen edges, in
// each direction: on Kubernetes a Chaos Mesh NetworkChaos corrupt action.
// A TCP receiver drops a corrupted segment on its checksum and the sender
// retransmits it, so locally it is played as the same share of segment
// loss (PacketLossFault), and reported as corruption.
type CorruptFault struct {
	Corrupt Percent `yaml:"corrupt" json:"corrupt"`
	Edges   Edges   `yaml:"edges" json:"edges"`
}

// MaxPacketLoss bounds packetLoss and corrupt: past half the packets a
// TCP connection all but stops (use partition for a cut edge).
const MaxPacketLoss = 0.5

// Bounds of a bandwidth fault's rate in bytes per second: below 1 kB/s an
// edge is all but cut (use partition), above 10 Gbit/s no edge here is
// slowed.
const (
	MinBandwidth = 1000
	MaxBandwidth = 10_000_000_000 / 8
)

// BandwidthRate is a throughput written with a tc unit ("1mbit",
// "64kbps"); BytesPerSecond is its value.
type BandwidthRate struct {
	BytesPerSecond int64
	// Text is the rate as written.
	Text string
}

// unit is a suffix and the bytes one of it stands for.
type unit struct {
	suffix string
	bytes  float64
}

// bandwidthUnits are tc's rate units, longest suffix first, with their
// value in bytes per second.
var bandwidthUnits = []unit{
	{"kbit", 1e3 / 8}, {"mbit", 1e6 / 8}, {"gbit", 1e9 / 8}, {"tbit", 1e12 / 8},
	{"kbps", 1e3}, {"mbps", 1e6}, {"gbps", 1e9}, {"tbps", 1e12},
	{"bit", 1.0 / 8}, {"bps", 1},
}

// ParseBandwidthRate reads a rate with a tc unit into bytes per second.
func ParseBandwidthRate(s string) (int64, error) { return parseWithUnit(s, bandwidthUnits) }

// parseWithUnit reads a whole number followed by one of units (matched
// case-insensitively, longest suffix first) into bytes.
func parseWithUnit(s string, units []unit) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range units {
		if !strings.HasSuffix(t, u.suffix) {
			continue
		}
		num := strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number of %s", num, u.suffix)
		}
		b := float64(v) * u.bytes
		if b > math.MaxInt64/2 {
			return 0, errors.New("too large")
		}
		return int64(b), nil
	}
	return 0, errors.New("no unit")
}

func (r *BandwidthRate) decodeScalar(n *yaml.Node) (string, string) {
	const hint = `write a whole number with a unit: bit, kbit, mbit, gbit (bits per second) or bps, kbps, mbps, gbps (bytes per second), such as "1mbit"`
	if n.Tag != "!!str" && n.Tag != "!!int" {
		return fmt.Sprintf("expected a rate, found %s", describe(n)), hint
	}
	v, err := ParseBandwidthRate(n.Value)
	if err != nil {
		return fmt.Sprintf("bad rate %s: %v", quote(n.Value), err), hint
	}
	r.BytesPerSecond, r.Text = v, strings.TrimSpace(n.Value)
	return "", ""
}

// String writes the rate as written, or in bytes per second.
func (r BandwidthRate) String() string {
	if r.Text != "" {
		return r.Text
	}
	return strconv.FormatInt(r.BytesPerSecond, 10) + "bps"
}

// MarshalText writes the rate as written.
func (r BandwidthRate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
