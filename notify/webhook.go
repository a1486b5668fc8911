package notify

import (
	"encoding/json"
	"errors"
	"fmt"
)

// MinSecretLen is the shortest HMAC secret a webhook accepts, in bytes.
const MinSecretLen = 16

// NewWebhook is a generic webhook sink: it posts the notification as JSON
// (chaosgate.notification/v1) to rawURL, signed with secret:
//
//	X-Chaosgate-Timestamp: <unix seconds>
//	X-Chaosgate-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//	X-Chaosgate-Delivery:  <delivery id, the same in every attempt>
//
// Errors and dead letters show the URL without credentials, query or
// fragment, and never the secret.
func NewWebhook(name, rawURL string, secret []byte, o Options) (*HTTPSink, error) {
	u, err := ParseEndpoint(rawURL)
	if err != nil {
		return nil, fmt.Errorf("webhook URL: %w", err)
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("webhook secret: at least %d bytes, to sign with (hint: openssl rand -hex 32 > secret; chmod 600 secret)", MinSecretLen)
	}
	if name == "" {
		name = "webhook"
	}
	s := newHTTPSink(name, u, publicURL(u), encodeNotification, o)
	s.secret = append([]byte(nil), secret...)
	return s, nil
}

// encodeNotification is the webhook body: the notification as JSON.
func encodeNotification(n Notification) ([]byte, error) {
	if n.Schema == "" {
		return nil, errors.New("notification without schema")
	}
	if n.Failing == nil {
		n.Failing = []string{}
	}
	return json.Marshal(n)
}
