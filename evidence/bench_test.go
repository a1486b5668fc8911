package evidence

import (
	"context"
	"testing"
)

func BenchmarkVerifyEnvelope(b *testing.B) {
	k := newKeys(b, "example.test/bench")
	st, _ := BuildStatement("v1", samplePredicate(1))
	env, _ := k.SignStatement(context.Background(), st)
	pub := k.Verifier()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pub.VerifyEnvelope(context.Background(), env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseStatement(b *testing.B) {
	st, _ := BuildStatement("v1", samplePredicate(1))
	for i := 0; i < b.N; i++ {
		if _, err := ParseStatement(st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel measures durable appends from many goroutines
// (group commit).
func BenchmarkAppendParallel(b *testing.B) {
	k := newKeys(b, "example.test/bench")
	l := openLedger(b, b.TempDir(), k)
	defer l.Close()
	st, _ := BuildStatement("v1", samplePredicate(1))
	env, _ := k.SignStatement(context.Background(), st)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(context.Background(), env); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(l.BlockCount()), "appends/commit")
}

// BenchmarkVerify20k measures Verify over a ledger of 20,000 entries.
func BenchmarkVerify20k(b *testing.B) {
	for _, fromScratch := range []bool{false, true} {
		b.Run(map[bool]string{false: "default", true: "from-scratch"}[fromScratch], func(b *testing.B) {
			k := newKeys(b, "example.test/bench")
			l := openLedger(b, b.TempDir(), k)
			defer l.Close()
			st, _ := BuildStatement("v1", samplePredicate(1))
			env, _ := k.SignStatement(context.Background(), st)
			_, _, err := runParallel(20000, 512, func() error { _, err := l.Append(context.Background(), env); return err })
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := l.Verify(context.Background(), fromScratch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func runParallel(n, workers int, fn func() error) (int, int, error) {
	errc := make(chan error, workers)
	per := n / workers
	for w := 0; w < workers; w++ {
		go func() {
			for i := 0; i < per; i++ {
				if err := fn(); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return n, workers, first
}
