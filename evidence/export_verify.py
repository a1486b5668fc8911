#!/usr/bin/env python3
"""Verify a chaosgate audit bundle with the Python standard library and openssl.

Checks: every entry's RFC 6962 inclusion proof against the bundle checkpoint,
the checkpoint in each proof, every envelope's SHA-256 against its entry,
every blob's SHA-256 (named as the signed statement names it), and (with openssl >= 3) the Ed25519 signatures of the
checkpoint note and of every DSSE envelope. Exit 0 when all verify, 1 otherwise.
Usage: python3 verify.py [BUNDLE_DIR]
"""
import base64, hashlib, json, os, shutil, subprocess, sys, tempfile

D = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
fail = []

def rd(p, mode="rb"):
    with open(os.path.join(D, p), mode) as f:
        return f.read()

def leaf_hash(b): return hashlib.sha256(b"\x00" + b).digest()
def node_hash(l, r): return hashlib.sha256(b"\x01" + l + r).digest()

def root_from_inclusion(index, size, lh, proof):
    # RFC 9162 section 2.1.3.2
    if index >= size: return None
    fn, sn, r = index, size - 1, lh
    for p in proof:
        if sn == 0: return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1; sn >>= 1
                    if fn & 1 or fn == 0: break
        else:
            r = node_hash(r, p)
        fn >>= 1; sn >>= 1
    return r if sn == 0 else None

def split_note(note):
    body, _, sigs = note.partition("\n\n")
    return body + "\n", [l for l in sigs.split("\n") if l]

def ed25519_pem(raw32):
    der = bytes.fromhex("302a300506032b6570032100") + raw32
    return b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END PUBLIC KEY-----\n"

OPENSSL = shutil.which("openssl")
tmp = tempfile.mkdtemp()

def ossl_verify(pem, msg, sig):
    if not OPENSSL: return None
    files = {}
    for n, b in (("k.pem", pem), ("m", msg), ("s", sig)):
        files[n] = os.path.join(tmp, n)
        with open(files[n], "wb") as f: f.write(b)
    r = subprocess.run([OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey", files["k.pem"], "-rawin", "-in", files["m"], "-sigfile", files["s"]], capture_output=True)
    return r.returncode == 0

vkey = rd("checkpoint.vkey", "r").strip()
name, _, rest = vkey.partition("+")
khash, _, kb64 = rest.partition("+")
kraw = base64.b64decode(kb64)
cp_pem = ed25519_pem(kraw[1:])
ev_pem = rd("evidence.pub")

cp_text = rd("checkpoint", "r")
body, sigs = split_note(cp_text)
origin, size_s, root_b64 = body.split("\n")[:3]
size, root = int(size_s), base64.b64decode(root_b64)
if origin != name: fail.append("checkpoint: origin %r does not match key name %r" % (origin, name))
for s in sigs:
    parts = s.split(" ")
    if len(parts) == 3 and parts[1] == name:
        sig = base64.b64decode(parts[2])
        if sig[:4] != bytes.fromhex(khash): continue
        ok = ossl_verify(cp_pem, body.encode(), sig[4:])
        if ok is False: fail.append("checkpoint: note signature does not verify")
        print("checkpoint signature:", {True: "ok", None: "skipped (no openssl)"}.get(ok, "FAILED"))

def pae(t, b): return b"DSSEv1 %d %s %d %s" % (len(t), t.encode(), len(b), b)

def check_entry(i):
    e = "entries/%d" % i
    leaf = rd(e + ".leaf")
    rec = json.loads(leaf)
    proof = rd(e + ".tlog-proof", "r")
    head, _, pcp = proof.partition("\n\n")
    lines = head.split("\n")
    idx_line = [l for l in lines if l.startswith("index ")][0]
    hashes = [base64.b64decode(l) for l in lines[lines.index(idx_line) + 1:]]
    if int(idx_line[6:]) != i: fail.append("%s: proof is for index %s" % (e, idx_line[6:]))
    if pcp != cp_text: fail.append("%s: proof checkpoint differs from the bundle checkpoint" % e)
    if root_from_inclusion(i, size, leaf_hash(leaf), hashes) != root:
        fail.append("%s: inclusion proof does not lead to the checkpoint root" % e)
    env_bytes = rd(e + ".envelope.json")
    if hashlib.sha256(env_bytes).hexdigest() != rec["envelope_sha256"]:
        fail.append("%s: envelope SHA-256 does not match the entry" % e)
    env = json.loads(env_bytes)
    payload = base64.b64decode(env["payload"])
    ok = ossl_verify(ev_pem, pae(env["payloadType"], payload), base64.b64decode(env["signatures"][0]["sig"]))
    if ok is False: fail.append("%s: DSSE signature does not verify" % e)
    names = blob_names(payload)
    for d in rec.get("blobs") or []:
        h = d.split(":", 1)[1]
        what = "blob %s (%s)" % (names[d], d) if d in names else "blob %s" % d
        try:
            data = rd("blobs/sha256/" + h)
        except OSError:
            fail.append("%s: missing from the bundle (blobs/sha256/%s)" % (what, h))
            continue
        if hashlib.sha256(data).hexdigest() != h:
            fail.append("%s: content does not match its digest" % what)

def blob_names(payload):
    """digest -> name of every blob the statement's predicate references."""
    try:
        pred = json.loads(payload).get("predicate") or {}
    except ValueError:
        return {}
    refs = list(pred.get("blobs") or [])
    for pr in pred.get("probes") or []:
        refs += pr.get("blobs") or []
    return {r.get("digest"): r.get("name") for r in refs if isinstance(r, dict) and r.get("name")}

for i in range(size):
    try:
        check_entry(i)
    except Exception as ex:  # malformed files are failures, not crashes
        fail.append("entries/%d: %s: %s" % (i, type(ex).__name__, ex))

shutil.rmtree(tmp, ignore_errors=True)
print("entries checked:", size)
for f in fail: print("FAILED:", f)
print("OK" if not fail else "NOT OK")
sys.exit(1 if fail else 0)
