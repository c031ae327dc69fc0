// xlcheck checks exchange-ledger's checkpoints and proofs with golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog, an implementation independent of the Python code under test.
//
// It reads one JSON document on stdin (see tests/witness/test_go_crosscheck.py), prints one line
// per check ("ok ..." or "FAIL ..."), and exits 1 if any check failed, 2 on unusable input.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	LogVkey      string   `json:"log_vkey"`
	WitnessVkeys []string `json:"witness_vkeys"`
	Checkpoints  []string `json:"checkpoints"`
	Cosignatures []int    `json:"cosignatures"` // expected valid cosignatures per checkpoint
	Inclusion    []struct {
		Checkpoint int      `json:"checkpoint"`
		Index      int64    `json:"index"`
		LeafHash   string   `json:"leaf_hash"`
		Proof      []string `json:"proof"`
	} `json:"inclusion"`
	Consistency []struct {
		Old   int      `json:"old"`
		New   int      `json:"new"`
		Proof []string `json:"proof"`
	} `json:"consistency"`
}

// cosignatureV1 verifies C2SP tlog-cosignature Ed25519 cosignatures (signature type 0x04).
type cosignatureV1 struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosignatureV1) Name() string    { return v.name }
func (v *cosignatureV1) KeyHash() uint32 { return v.hash }
func (v *cosignatureV1) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	if ts >= 1<<63 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", ts)), msg...)
	return ed25519.Verify(v.key, signed, sig[8:])
}

func witnessVerifier(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("bad witness vkey %q", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 0x04 {
		return nil, fmt.Errorf("witness vkey %q is not a cosignature/v1 key", vkey)
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	want, err := hex.DecodeString(parts[1])
	if err != nil || !bytes.Equal(h[:4], want) {
		return nil, fmt.Errorf("witness vkey %q: key hash does not match", vkey)
	}
	return &cosignatureV1{name: parts[0], hash: binary.BigEndian.Uint32(h[:4]), key: ed25519.PublicKey(raw[1:])}, nil
}

type tree struct {
	origin string
	size   int64
	hash   tlog.Hash
}

// parseCheckpoint reads the C2SP tlog-checkpoint note text: origin, size, base64 root (extension lines ignored).
func parseCheckpoint(text string) (tree, error) {
	lines := strings.Split(text, "\n")
	if len(lines) < 4 {
		return tree{}, fmt.Errorf("checkpoint has fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return tree{}, err
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		return tree{}, err
	}
	return tree{lines[0], size, h}, nil
}

func hashes(b64 []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Println("input:", err)
		os.Exit(2)
	}
	logVerifier, err := note.NewVerifier(in.LogVkey)
	if err != nil {
		fmt.Println("log vkey:", err)
		os.Exit(2)
	}
	verifiers := []note.Verifier{logVerifier}
	for _, vkey := range in.WitnessVkeys {
		v, err := witnessVerifier(vkey)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		verifiers = append(verifiers, v)
	}
	known := note.VerifierList(verifiers...)
	failed := false
	fail := func(format string, args ...interface{}) {
		failed = true
		fmt.Printf("FAIL "+format+"\n", args...)
	}
	trees := make([]tree, len(in.Checkpoints))
	for i, msg := range in.Checkpoints {
		n, err := note.Open([]byte(msg), known)
		if err != nil {
			fail("checkpoint %d: %v", i, err)
			continue
		}
		logSigned, cosigned := false, 0
		for _, s := range n.Sigs {
			if s.Name == logVerifier.Name() && s.Hash == logVerifier.KeyHash() {
				logSigned = true
			} else {
				cosigned++
			}
		}
		t, err := parseCheckpoint(n.Text)
		switch {
		case err != nil:
			fail("checkpoint %d: %v", i, err)
		case !logSigned:
			fail("checkpoint %d: not signed by the log key", i)
		case i < len(in.Cosignatures) && cosigned != in.Cosignatures[i]:
			fail("checkpoint %d: %d valid cosignatures, expected %d", i, cosigned, in.Cosignatures[i])
		default:
			trees[i] = t
			fmt.Printf("ok checkpoint %d: %s size %d, %d cosignature(s)\n", i, t.origin, t.size, cosigned)
		}
	}
	for _, c := range in.Inclusion {
		t := trees[c.Checkpoint]
		leaf, err1 := tlog.ParseHash(c.LeafHash)
		proof, err2 := hashes(c.Proof)
		if err1 != nil || err2 != nil {
			fail("inclusion %d: bad hash", c.Index)
			continue
		}
		if err := tlog.CheckRecord(tlog.RecordProof(proof), t.size, t.hash, c.Index, leaf); err != nil {
			fail("inclusion of leaf %d in size %d: %v", c.Index, t.size, err)
			continue
		}
		fmt.Printf("ok inclusion of leaf %d in size %d\n", c.Index, t.size)
	}
	for _, c := range in.Consistency {
		o, n := trees[c.Old], trees[c.New]
		proof, err := hashes(c.Proof)
		if err != nil {
			fail("consistency %d -> %d: bad hash", o.size, n.size)
			continue
		}
		if err := tlog.CheckTree(tlog.TreeProof(proof), n.size, n.hash, o.size, o.hash); err != nil {
			fail("consistency %d -> %d: %v", o.size, n.size, err)
			continue
		}
		fmt.Printf("ok consistency %d -> %d\n", o.size, n.size)
	}
	if failed {
		os.Exit(1)
	}
}
