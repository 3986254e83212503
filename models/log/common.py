"""Log-line model: the feature recipe (mirrored byte for byte by
edge-agent/src/classify/log_recipe.rs), the severity mapping and the Loghub readers.

Recipe (all on the UTF-8 bytes of the CONTENT string, never on the header):
  1. keep the first CAP_BYTES bytes;
  2. tokens = maximal runs of bytes that are ASCII letters/digits or >= 0x80 (any non-ASCII
     byte, so multi-byte UTF-8 characters stay inside tokens); ASCII letters are lower-cased;
     at most MAX_TOKENS tokens are used;
  3. mask each token: all digits -> "<num>"; "0x" + >=1 hex digit -> "<hex>"; >= 6 chars, all
     hex digits, with a digit and a letter -> "<hex>"; else every run of digits -> "0"
     (e.g. "t761" -> "t0", "ipv4" -> "ipv0"); tokens longer than 40 bytes -> "<long>";
  4. hashed block, width D: for each masked unigram u and each bigram "a b" (a, b joined by
     one space): h = FNV-1a 32-bit of the bytes; bucket = h % D; add +1 if bit 31 of h is 0
     else -1; then L2-normalize the block (left all-zero if there are no tokens);
  5. NUMERIC extra features, appended after the block (computed in float64, stored float32):
     ln(1+full byte length)/8, ln(1+tokens)/5, masked tokens/max(tokens,1),
     ASCII upper-case letters/max(ASCII letters,1) [on the capped bytes, before lower-casing],
     non-ASCII bytes/max(capped length,1), 1.0 if there are no tokens else 0.0.
"""
import csv
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LOGHUB_ROOT = os.environ.get("LOGHUB_ROOT", os.path.join(REPO, "..", "shared", "data", "loghub"))

CAP_BYTES = 4096
MAX_TOKENS = 512
LONG_TOKEN = 40
N_NUMERIC = 6
NUMERIC_NAMES = ["ln1p_bytes_over_8", "ln1p_tokens_over_5", "masked_fraction", "upper_fraction",
                 "non_ascii_fraction", "empty"]
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193

SEVERITIES = ["debug", "info", "warn", "error", "fatal"]
# Each system's level names -> index into SEVERITIES (systems absent here carry no level:
# Linux's "Level" column is the host name "combo", OpenSSH has none).
LEVEL_MAP = {
    "Android": {"V": 0, "D": 0, "I": 1, "W": 2, "E": 3, "F": 4, "A": 4},
    "Apache": {"debug": 0, "info": 1, "notice": 1, "warn": 2, "error": 3, "crit": 4, "alert": 4, "emerg": 4},
    "BGL": {"DEBUG": 0, "INFO": 1, "WARNING": 2, "SEVERE": 3, "ERROR": 3, "FAILURE": 4, "FATAL": 4},
    "HDFS": {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3, "FATAL": 4},
    "Hadoop": {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3, "FATAL": 4},
    "Spark": {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3, "FATAL": 4},
    "Zookeeper": {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3, "FATAL": 4},
}
SYSTEMS = ["Android", "Apache", "BGL", "HDFS", "Hadoop", "Linux", "OpenSSH", "Spark", "Zookeeper"]


def fnv1a(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFF
    return h


def _is_tok(b: int) -> bool:
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b >= 0x80


def _is_digit(b: int) -> bool:
    return 48 <= b <= 57


def _is_hex(b: int) -> bool:
    return _is_digit(b) or 97 <= b <= 102


def mask(tok: bytes):
    """-> (masked token, whether it was masked)."""
    if len(tok) > LONG_TOKEN:
        return b"<long>", True
    if all(_is_digit(b) for b in tok):
        return b"<num>", True
    if len(tok) > 2 and tok[:2] == b"0x" and all(_is_hex(b) for b in tok[2:]):
        return b"<hex>", True
    if len(tok) >= 6 and all(_is_hex(b) for b in tok) and any(_is_digit(b) for b in tok) \
            and any(b >= 97 for b in tok):
        return b"<hex>", True
    if any(_is_digit(b) for b in tok):
        out = bytearray()
        prev_digit = False
        for b in tok:
            d = _is_digit(b)
            if d and not prev_digit:
                out.append(48)
            elif not d:
                out.append(b)
            prev_digit = d
        return bytes(out), True
    return tok, False


def tokens(content: str):
    """-> (masked tokens, masked count, capped bytes, full byte length)."""
    raw = content.encode("utf-8")
    data = raw[:CAP_BYTES]
    toks, cur = [], bytearray()
    for b in data:
        if _is_tok(b):
            cur.append(b + 32 if 65 <= b <= 90 else b)
        elif cur:
            toks.append(bytes(cur))
            cur = bytearray()
    if cur:
        toks.append(bytes(cur))
    toks = toks[:MAX_TOKENS]
    out, masked = [], 0
    for t in toks:
        m, was = mask(t)
        out.append(m)
        masked += was
    return out, masked, data, len(raw)


def featurize(content: str, D: int) -> np.ndarray:
    """One content string -> float32 vector of width D + N_NUMERIC."""
    toks, masked, data, full_len = tokens(content)
    block = [0.0] * D
    grams = list(toks) + [a + b" " + b for a, b in zip(toks, toks[1:])]
    for g in grams:
        h = fnv1a(g)
        block[h % D] += -1.0 if h >> 31 else 1.0
    norm = math.sqrt(sum(v * v for v in block))
    if norm > 0:
        block = [v / norm for v in block]
    n = len(toks)
    upper = sum(1 for b in data if 65 <= b <= 90)
    letters = upper + sum(1 for b in data if 97 <= b <= 122)
    non_ascii = sum(1 for b in data if b >= 0x80)
    numeric = [math.log1p(full_len) / 8.0, math.log1p(n) / 5.0, masked / max(n, 1),
               upper / max(letters, 1), non_ascii / max(len(data), 1), 1.0 if n == 0 else 0.0]
    return np.array(block + numeric, dtype=np.float32)


def featurize_many(contents, D: int) -> np.ndarray:
    return np.stack([featurize(c, D) for c in contents]) if contents else np.zeros((0, D + N_NUMERIC), np.float32)


def structured_csv(system: str) -> str:
    d = os.path.join(LOGHUB_ROOT, system)
    name = [f for f in os.listdir(d) if f.endswith("_structured.csv") and not f.startswith(".")]
    return os.path.join(d, sorted(name)[0])


def raw_log(system: str) -> str:
    d = os.path.join(LOGHUB_ROOT, system)
    return os.path.join(d, sorted(f for f in os.listdir(d) if f.endswith(".log"))[0])


def load_lines():
    """All structured lines: dicts with system, content, event (system/EventId), severity
    (index or -1) and alert (0/1, or -1 where the system has no alert labels)."""
    rows = []
    for s in SYSTEMS:
        with open(structured_csv(s), encoding="utf-8", newline="") as fh:
            for r in csv.DictReader(fh):
                lm = LEVEL_MAP.get(s)
                sev = lm.get(r["Level"].strip(), -1) if lm else -1
                alert = (0 if r["Label"] == "-" else 1) if "Label" in r else -1
                rows.append({"system": s, "line": int(r["LineId"]), "content": r["Content"],
                             "event": f"{s}/{r['EventId']}", "severity": sev, "alert": alert})
    return rows


def recipe(D: int) -> dict:
    """The feature part of a sidecar: every constant the Rust featurizer needs."""
    return {"hash_dim": D, "hash": "fnv1a32", "hash_sign": "bit31", "bigrams": True,
            "cap_bytes": CAP_BYTES, "max_tokens": MAX_TOKENS, "long_token": LONG_TOKEN,
            "lowercase": "ascii", "token_bytes": "ascii_alnum_or_non_ascii",
            "masks": ["long:<long>", "digits:<num>", "0x_hex:<hex>", "hex6_mixed:<hex>", "digit_runs:0"],
            "normalize": "l2_hashed_block", "numeric": NUMERIC_NAMES}
