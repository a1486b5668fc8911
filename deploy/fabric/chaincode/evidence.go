// Package main is the chaosgate evidence chaincode: it stores the digests of
// evidence entries and anchors the signed checkpoints of chaosgate's embedded
// Merkle log, so a Fabric channel acts as an outside witness. A checkpoint is
// accepted only when its signed note verifies with the log's registered key,
// its tree never shrinks, and a size once anchored never changes root.
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
	"golang.org/x/mod/sumdb/note"
)

// EvidenceContract is the chaincode's only contract.
type EvidenceContract struct {
	contractapi.Contract
}

// LogRecord registers a log: its origin and the note verifier key of its
// checkpoints.
type LogRecord struct {
	Origin      string `json:"origin"`
	VerifierKey string `json:"verifier_key"`
}

// EvidenceRecord is the digest of one evidence entry.
type EvidenceRecord struct {
	Origin         string `json:"origin"`
	Index          uint64 `json:"index"`
	LeafHash       string `json:"leaf_hash"`
	EnvelopeSHA256 string `json:"envelope_sha256"`
	Revision       string `json:"revision"`
	TxID           string `json:"tx_id"`
}

// AnchoredCheckpoint is a verified checkpoint of a registered log.
type AnchoredCheckpoint struct {
	Origin string    `json:"origin"`
	Size   uint64    `json:"size"`
	Root   string    `json:"root"`
	Note   string    `json:"note"`
	TxID   string    `json:"tx_id"`
	Time   time.Time `json:"time"`
}

const (
	objLog        = "log"
	objEvidence   = "evidence"
	objCheckpoint = "checkpoint"
	objLatest     = "latest"
)

func getJSON(ctx contractapi.TransactionContextInterface, key string, v any) (bool, error) {
	b, err := ctx.GetStub().GetState(key)
	if err != nil {
		return false, fmt.Errorf("read %q: %w", key, err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

func putJSON(ctx contractapi.TransactionContextInterface, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ctx.GetStub().PutState(key, b)
}

func key(ctx contractapi.TransactionContextInterface, obj string, attrs ...string) (string, error) {
	return ctx.GetStub().CreateCompositeKey(obj, attrs)
}

// RegisterLog registers the checkpoint verifier key of a log. Registering
// the same key again is a no-op; another key for a registered origin is
// refused.
func (c *EvidenceContract) RegisterLog(ctx contractapi.TransactionContextInterface, verifierKey string) (*LogRecord, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	k, err := key(ctx, objLog, v.Name())
	if err != nil {
		return nil, err
	}
	var existing LogRecord
	found, err := getJSON(ctx, k, &existing)
	if err != nil {
		return nil, err
	}
	rec := LogRecord{Origin: v.Name(), VerifierKey: strings.TrimSpace(verifierKey)}
	if found {
		if existing.VerifierKey != rec.VerifierKey {
			return nil, fmt.Errorf("log %q is registered with another key", v.Name())
		}
		return &existing, nil
	}
	return &rec, putJSON(ctx, k, rec)
}

// parseCheckpoint parses a C2SP checkpoint body: origin, size, base64 root.
func parseCheckpoint(text string) (string, uint64, string, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return "", 0, "", errors.New("checkpoint body needs origin, size and root lines")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return "", 0, "", fmt.Errorf("checkpoint size %q: %w", lines[1], err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return "", 0, "", fmt.Errorf("checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	return lines[0], size, lines[2], nil
}

// AnchorCheckpoint verifies a signed checkpoint note of a registered log and
// anchors it. The tree may only grow; a size anchored before must have the
// same root (a different one proves the log forked).
func (c *EvidenceContract) AnchorCheckpoint(ctx contractapi.TransactionContextInterface, signedNote string) (*AnchoredCheckpoint, error) {
	origin, _, _, err := parseCheckpoint(strings.SplitN(signedNote, "\n\n", 2)[0] + "\n")
	if err != nil {
		return nil, err
	}
	lk, err := key(ctx, objLog, origin)
	if err != nil {
		return nil, err
	}
	var lr LogRecord
	found, err := getJSON(ctx, lk, &lr)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("log %q is not registered: call RegisterLog with its verifier key first", origin)
	}
	v, err := note.NewVerifier(lr.VerifierKey)
	if err != nil {
		return nil, err
	}
	n, err := note.Open([]byte(signedNote), note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signature: %w", err)
	}
	origin2, size, root, err := parseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	if origin2 != origin {
		return nil, fmt.Errorf("checkpoint origin %q is signed by %q", origin2, origin)
	}
	ck, err := key(ctx, objCheckpoint, origin, fmt.Sprintf("%020d", size))
	if err != nil {
		return nil, err
	}
	var prev AnchoredCheckpoint
	if found, err := getJSON(ctx, ck, &prev); err != nil {
		return nil, err
	} else if found {
		if prev.Root != root {
			return nil, fmt.Errorf("log %q forked: size %d was anchored with root %s, now %s", origin, size, prev.Root, root)
		}
		return &prev, nil
	}
	latestKey, err := key(ctx, objLatest, origin)
	if err != nil {
		return nil, err
	}
	var latest AnchoredCheckpoint
	hasLatest, err := getJSON(ctx, latestKey, &latest)
	if err != nil {
		return nil, err
	}
	ts, err := ctx.GetStub().GetTxTimestamp()
	if err != nil {
		return nil, err
	}
	ac := AnchoredCheckpoint{Origin: origin, Size: size, Root: root, Note: signedNote, TxID: ctx.GetStub().GetTxID(), Time: ts.AsTime().UTC()}
	if err := putJSON(ctx, ck, ac); err != nil {
		return nil, err
	}
	if hasLatest && latest.Size > size {
		return &ac, nil // an older checkpoint anchored late: kept, latest unchanged
	}
	return &ac, putJSON(ctx, latestKey, ac)
}

// RecordEvidence stores the digest of entry index of a registered log. An
// entry is written once; recording the same digest again is a no-op.
func (c *EvidenceContract) RecordEvidence(ctx contractapi.TransactionContextInterface, origin string, index uint64, leafHash, envelopeSHA256, revision string) (*EvidenceRecord, error) {
	if leafHash == "" || envelopeSHA256 == "" {
		return nil, errors.New("leaf hash and envelope SHA-256 are required")
	}
	lk, err := key(ctx, objLog, origin)
	if err != nil {
		return nil, err
	}
	var lr LogRecord
	if found, err := getJSON(ctx, lk, &lr); err != nil {
		return nil, err
	} else if !found {
		return nil, fmt.Errorf("log %q is not registered", origin)
	}
	ek, err := key(ctx, objEvidence, origin, fmt.Sprintf("%020d", index))
	if err != nil {
		return nil, err
	}
	rec := EvidenceRecord{Origin: origin, Index: index, LeafHash: leafHash, EnvelopeSHA256: envelopeSHA256, Revision: revision, TxID: ctx.GetStub().GetTxID()}
	var existing EvidenceRecord
	if found, err := getJSON(ctx, ek, &existing); err != nil {
		return nil, err
	} else if found {
		if existing.LeafHash != leafHash || existing.EnvelopeSHA256 != envelopeSHA256 {
			return nil, fmt.Errorf("entry %d of %q was recorded with other digests", index, origin)
		}
		return &existing, nil
	}
	return &rec, putJSON(ctx, ek, rec)
}

// Anchor records one entry's digests and anchors the checkpoint that covers
// it, in one transaction.
func (c *EvidenceContract) Anchor(ctx contractapi.TransactionContextInterface, origin string, index uint64, leafHash, envelopeSHA256, revision, signedNote string) (*AnchoredCheckpoint, error) {
	if _, err := c.RecordEvidence(ctx, origin, index, leafHash, envelopeSHA256, revision); err != nil {
		return nil, err
	}
	ac, err := c.AnchorCheckpoint(ctx, signedNote)
	if err != nil {
		return nil, err
	}
	if ac.Size <= index {
		return nil, fmt.Errorf("checkpoint of size %d does not cover entry %d", ac.Size, index)
	}
	return ac, nil
}

// GetEvidence returns the digests recorded for entry index.
func (c *EvidenceContract) GetEvidence(ctx contractapi.TransactionContextInterface, origin string, index uint64) (*EvidenceRecord, error) {
	ek, err := key(ctx, objEvidence, origin, fmt.Sprintf("%020d", index))
	if err != nil {
		return nil, err
	}
	var rec EvidenceRecord
	found, err := getJSON(ctx, ek, &rec)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("entry %d of %q is not recorded", index, origin)
	}
	return &rec, nil
}

// LatestCheckpoint returns the largest anchored checkpoint of origin.
func (c *EvidenceContract) LatestCheckpoint(ctx contractapi.TransactionContextInterface, origin string) (*AnchoredCheckpoint, error) {
	lk, err := key(ctx, objLatest, origin)
	if err != nil {
		return nil, err
	}
	var ac AnchoredCheckpoint
	found, err := getJSON(ctx, lk, &ac)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("no checkpoint of %q is anchored", origin)
	}
	return &ac, nil
}

// GetCheckpoint returns the anchored checkpoint of origin at size.
func (c *EvidenceContract) GetCheckpoint(ctx contractapi.TransactionContextInterface, origin string, size uint64) (*AnchoredCheckpoint, error) {
	ck, err := key(ctx, objCheckpoint, origin, fmt.Sprintf("%020d", size))
	if err != nil {
		return nil, err
	}
	var ac AnchoredCheckpoint
	found, err := getJSON(ctx, ck, &ac)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("no checkpoint of %q at size %d", origin, size)
	}
	return &ac, nil
}
