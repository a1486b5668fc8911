package node

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/coder/websocket"
)

// wsConns tracks the open WebSocket ingest connections, so that Close can
// end them (hijacked connections outlive http.Server.Shutdown).
type wsConns struct {
	mu     sync.Mutex
	n      int
	closed bool
	cancel map[*websocket.Conn]context.CancelFunc
	wg     sync.WaitGroup
}

func (w *wsConns) add(c *websocket.Conn, cancel context.CancelFunc, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.n >= limit {
		return false
	}
	if w.cancel == nil {
		w.cancel = map[*websocket.Conn]context.CancelFunc{}
	}
	w.cancel[c] = cancel
	w.n++
	w.wg.Add(1)
	return true
}

func (w *wsConns) remove(c *websocket.Conn) {
	w.mu.Lock()
	delete(w.cancel, c)
	w.n--
	w.mu.Unlock()
	w.wg.Done()
}

func (w *wsConns) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// closeAll ends every connection and waits for their handlers.
func (w *wsConns) closeAll() {
	w.mu.Lock()
	w.closed = true
	for _, cancel := range w.cancel {
		cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// handleWebSocket is GET /v1/ws: one ingest stream per client. Each text or
// binary frame is a body of POST /v1/messages (one message or
// {"messages":[...]}); each is answered, in order, by one frame with the
// body POST would return ({"results":[...]}, or an error body with
// "kind" and "path"). The connection has its own token bucket (charged per
// message, forgotten when it closes); its one goroutine ends when the client
// goes away or the node stops.
func (n *Node) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	if n.ws.count() >= n.cfg.WebSocketMax {
		n.metrics.rejects.WithLabelValues("websocket_connections").Inc()
		writeErr(w, errorf(KindOverload, "overloaded: %d WebSocket connections open", n.cfg.WebSocketMax))
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept wrote the HTTP error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !n.ws.add(c, cancel, n.cfg.WebSocketMax) {
		c.Close(websocket.StatusTryAgainLater, "node stopping or at its connection limit")
		return
	}
	defer n.ws.remove(c)
	conn := "ws:" + r.RemoteAddr
	defer n.conns.Forget(conn)
	n.metrics.wsOpened.Inc()
	c.SetReadLimit(MaxBodyBytes)
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			status := websocket.CloseStatus(err)
			if status == -1 && ctx.Err() != nil {
				c.Close(websocket.StatusGoingAway, "node stopping")
			} else {
				c.CloseNow()
			}
			return
		}
		var reply []byte
		msgs, err := DecodeMessages(data)
		if err != nil {
			reply = errorJSON(err)
		} else {
			ictx, icancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
			res := n.Ingest(ictx, msgs, IngestOptions{Conn: conn})
			icancel()
			reply, _ = json.Marshal(IngestResponse{Results: res})
		}
		if err := c.Write(ctx, websocket.MessageText, reply); err != nil {
			c.CloseNow()
			return
		}
	}
}

// errorJSON is the error body writeErr would send, for a WebSocket frame.
func errorJSON(err error) []byte {
	var ie *InputError
	body := ErrorBody{Error: err.Error(), Kind: kindName(KindOf(err))}
	if errors.As(err, &ie) {
		body = ErrorBody{Error: ie.Error(), Kind: "invalid", Path: ie.Path, Hint: ie.Hint}
	}
	b, _ := json.Marshal(body)
	return b
}

// WebSocketConns is the number of open WebSocket ingest connections.
func (n *Node) WebSocketConns() int { return n.ws.count() }
