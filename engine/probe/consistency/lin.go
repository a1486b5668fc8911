package consistency

import (
	"fmt"
	"math"
	"sort"

	"github.com/anishathalye/porcupine"

	"github.com/chaosgate/chaosgate/engine/history"
)

type regInput struct {
	write bool
	value string
}

// registerModel is a single-key register: a key never written holds "".
var registerModel = porcupine.Model{
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output interface{}) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("write(%q)", in.value)
		}
		return fmt.Sprintf("read() -> %q", output)
	},
}

// checkLinearizability runs porcupine per key over ok reads, ok writes and
// timed-out writes (return time infinite).
func checkLinearizability(col *collector, evs []history.Line, cfg Config) string {
	byKey := map[string][]porcupine.Operation{}
	clients := map[string]int{}
	for _, ev := range evs {
		var op porcupine.Operation
		switch {
		case ev.Op == history.OpWrite && ev.Result == history.ResultOK:
			op = porcupine.Operation{Input: regInput{write: true, value: ev.Value}, Call: ev.Start.UnixNano(), Return: ev.End.UnixNano()}
		case ev.Op == history.OpWrite && ev.Result == history.ResultTimeout:
			op = porcupine.Operation{Input: regInput{write: true, value: ev.Value}, Call: ev.Start.UnixNano(), Return: math.MaxInt64}
		case ev.Op == history.OpRead && ev.Result == history.ResultOK:
			op = porcupine.Operation{Input: regInput{}, Output: ev.Value, Call: ev.Start.UnixNano(), Return: ev.End.UnixNano()}
		default:
			continue
		}
		id, ok := clients[ev.Client]
		if !ok {
			id = len(clients)
			clients[ev.Client] = id
		}
		op.ClientId = id
		byKey[ev.Key] = append(byKey[ev.Key], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	result := LinOK
	for _, k := range keys {
		ops := byKey[k]
		if !hasRead(ops) {
			continue // writes alone are always linearizable
		}
		switch porcupine.CheckOperationsTimeout(registerModel, ops, cfg.LinearizabilityTimeout) {
		case porcupine.Illegal:
			result = LinIllegal
			col.add("I9", "per-key reads and writes are not linearizable", fmt.Sprintf("key %s: %d operations admit no linearization", k, len(ops)))
		case porcupine.Unknown:
			if result == LinOK {
				result = LinUnknown
			}
		}
	}
	return result
}

func hasRead(ops []porcupine.Operation) bool {
	for _, op := range ops {
		if !op.Input.(regInput).write {
			return true
		}
	}
	return false
}
