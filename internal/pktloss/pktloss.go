// Package pktloss drops a share of the TCP packets to and from chosen
// loopback ports in the kernel, with nftables (programmed over netlink by
// github.com/google/nftables; no nft or iptables binary is needed). It is
// how the local target loses real packets: the nodes and their proxies
// listen on 127.0.0.1, and every packet one of them sends or receives
// passes the output hook once.
//
// Each loss is one table of its own (family inet) holding one output
// chain: per port, a counting rule and a dropping rule for each direction
// (destination port and source port). Removing the loss deletes the table,
// so nothing of it outlives a Remove, and a table left by a crashed
// process is found by its name.
package pktloss

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TablePrefix starts the name of every table this package creates.
const TablePrefix = "chaosgate_loss_"

// resolution is the denominator of the drop share: the kernel draws a
// random number below it for every packet.
const resolution = 1_000_000

// Counts are the packets a loss saw on its ports and the ones it dropped.
type Counts struct {
	Seen, Dropped uint64
}

// Ratio is the observed share of dropped packets (0 when none were seen).
func (c Counts) Ratio() float64 {
	if c.Seen == 0 {
		return 0
	}
	return float64(c.Dropped) / float64(c.Seen)
}

var (
	availOnce sync.Once
	availErr  error
)

// Available reports whether this process may program nftables here (root
// or CAP_NET_ADMIN, a kernel with nf_tables): it creates and deletes a
// probe table once and remembers the answer.
func Available() error {
	availOnce.Do(func() {
		name := TablePrefix + "probe_" + strconv.Itoa(os.Getpid())
		c, err := nftables.New()
		if err != nil {
			availErr = fmt.Errorf("open netlink: %w", err)
			return
		}
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
		if err := c.Flush(); err != nil {
			availErr = fmt.Errorf("create an nftables table: %w", err)
			return
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil {
			availErr = fmt.Errorf("delete the probe nftables table %s: %w", name, err)
		}
	})
	return availErr
}

// Apply drops share (0 < share < 1) of the TCP packets to and from each
// port, in the table named name (which must start with TablePrefix). A
// table of that name that already exists is left as it is: applying the
// same loss twice applies it once.
func Apply(name string, ports []int, share float64) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !(share > 0 && share < 1) {
		return fmt.Errorf("loss share %v is not between 0 and 1", share)
	}
	if len(ports) == 0 {
		return errors.New("no ports to lose packets on")
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	if t, _ := c.ListTableOfFamily(name, nftables.TableFamilyINet); t != nil {
		return nil
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: name})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	below := uint32(math.Round(share * resolution))
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return fmt.Errorf("port %d is outside 1..65535", p)
		}
		for _, offset := range []uint32{0, 2} { // source port, destination port
			match := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(p))},
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: []byte("seen"), Exprs: append(append([]expr.Any{}, match...), &expr.Counter{})})
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: []byte("dropped"), Exprs: append(append([]expr.Any{}, match...),
				&expr.Numgen{Register: 1, Modulus: resolution, Type: unix.NFT_NG_RANDOM},
				// cmp compares the register's bytes in order: the
				// random number is turned big-endian first, as nft
				// itself does for a host-order value.
				&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
				&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(below)},
				&expr.Counter{},
				&expr.Verdict{Kind: expr.VerdictDrop},
			)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("create nftables table %s: %w", name, err)
	}
	return nil
}

// Remove deletes the loss's table; a table that is not there is not an
// error (recovery is idempotent).
func Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	t, err := c.ListTableOfFamily(name, nftables.TableFamilyINet)
	if t == nil || err != nil {
		return nil
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("delete nftables table %s: %w", name, err)
	}
	return nil
}

// ErrNoTable is returned by Read when the loss's table is not there.
var ErrNoTable = errors.New("no such loss table")

// Read returns the packets the loss saw and dropped so far.
func Read(name string) (Counts, error) {
	if err := checkName(name); err != nil {
		return Counts{}, err
	}
	c, err := nftables.New()
	if err != nil {
		return Counts{}, fmt.Errorf("open netlink: %w", err)
	}
	t, err := c.ListTableOfFamily(name, nftables.TableFamilyINet)
	if t == nil || err != nil {
		return Counts{}, fmt.Errorf("%s: %w", name, ErrNoTable)
	}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "output", Table: t})
	if err != nil {
		return Counts{}, fmt.Errorf("read nftables table %s: %w", name, err)
	}
	var n Counts
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ct, ok := e.(*expr.Counter); ok {
				switch string(r.UserData) {
				case "seen":
					n.Seen += ct.Packets
				case "dropped":
					n.Dropped += ct.Packets
				}
			}
		}
	}
	return n, nil
}

// Tables lists the loss tables present now (the reaper's and the tests'
// view of what is left).
func Tables() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var out []string
	for _, t := range ts {
		if len(t.Name) > len(TablePrefix) && t.Name[:len(TablePrefix)] == TablePrefix {
			out = append(out, t.Name)
		}
	}
	return out, nil
}

func checkName(name string) error {
	if len(name) <= len(TablePrefix) || name[:len(TablePrefix)] != TablePrefix || len(name) > 200 {
		return fmt.Errorf("loss table name %q does not start with %s", name, TablePrefix)
	}
	return nil
}
