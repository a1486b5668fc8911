package logs

import "testing"

func FuzzDecodeLokiCount(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1733400000.123,"7"]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	f.Add([]byte(`{"status":"error","error":"parse error"}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"NaN"]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := DecodeLokiCount(b)
		if err == nil && n < 0 {
			t.Fatalf("negative count %d from %q", n, b)
		}
	})
}

func FuzzDecodeLokiStreams(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"streams","result":[{"stream":{"a":"b"},"values":[["1733400000000000000","line"]]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["x"]]}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := DecodeLokiStreams(b)
		if err != nil && es != nil {
			t.Fatalf("entries %v with error %v", es, err)
		}
	})
}

func FuzzDecodeLogsQL(f *testing.F) {
	f.Add([]byte("{\"matches\":\"3\"}\n"))
	f.Add([]byte("{\"_time\":\"2026-12-05T12:00:00Z\",\"_msg\":\"dropped\",\"node\":\"n1\"}\n{\"_time\":\"bad\"}\n"))
	f.Add([]byte("{\"matches\":-1}\n\n{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := DecodeLogsQLCount(b, "matches"); err == nil && n < 0 {
			t.Fatalf("negative count %d", n)
		}
		if es, err := DecodeLogsQLLines(b); err != nil && es != nil {
			t.Fatalf("entries %v with error %v", es, err)
		}
	})
}

func FuzzParseServer(f *testing.F) {
	for _, s := range []string{"victorialogs=http://127.0.0.1:9428", "loki=https://u:p@h/x", "=", "loki=", "x=http://h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		srv, err := ParseServer(s)
		if err == nil && (srv.Kind != Loki && srv.Kind != VictoriaLogs || srv.URL == "") {
			t.Fatalf("ParseServer(%q) = %+v without error", s, srv)
		}
	})
}
