"""Sealing and opening envelopes: format, padding, tampering, keys, and seal.js under node."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from volna.collect import crypto
from volna.collect.crypto import KeyFileError, SealError

SEAL_JS = Path(crypto.__file__).parent / "static" / "seal.js"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def private():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def public(private):
    return private.public_key()


def point_of(key) -> bytes:
    n = key.public_numbers()
    return b"\x04" + n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")


def reference_seal(public, padded: bytes, *, version: int = 1) -> bytes:
    """The envelope as the format describes it, written here independently of crypto.seal."""
    eph = ec.generate_private_key(ec.SECP256R1())
    point = point_of(public)
    head = bytes([version]) + hashlib.sha256(point).digest()[:8] + point_of(eph.public_key())
    nonce = os.urandom(12)
    key = HKDF(hashes.SHA256(), 32, salt=b"\x00" * 32, info=b"volna seal v1" + head).derive(
        eph.exchange(ec.ECDH(), public)
    )
    return head + nonce + AESGCM(key).encrypt(nonce, padded, head + nonce)


def padded(text: bytes, bucket: int) -> bytes:
    return len(text).to_bytes(4, "big") + text + bytes(bucket - 4 - len(text))


# -- the format -------------------------------------------------------------------


def test_sizes_are_the_buckets_plus_a_fixed_overhead():
    assert crypto.BUCKETS == (1024, 4096, 16384, 65536)
    assert crypto.MAX_PLAINTEXT == 65532
    assert crypto.ENVELOPE_SIZES == (1126, 4198, 16486, 65638)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, 1126), (1, 1126), (1020, 1126), (1021, 4198), (4092, 4198), (4093, 16486),
     (65532, 65638)],
)  # fmt: skip
def test_envelope_length_reveals_only_the_bucket(private, public, size, expected):
    text = os.urandom(size)
    envelope = crypto.seal(public, text)
    assert len(envelope) == expected
    assert crypto.open_sealed(private, envelope) == text


def test_too_long_is_refused(public):
    with pytest.raises(SealError, match="65533 bytes, more than the 65532"):
        crypto.seal(public, bytes(65533))


def test_layout_and_fresh_randomness(public):
    a = crypto.seal(public, b"same answers")
    b = crypto.seal(public, b"same answers")
    assert a[0] == 1
    assert a[1:9] == hashlib.sha256(point_of(public)).digest()[:8] == crypto.key_id(public)
    assert a[9] == 4  # an uncompressed ephemeral point
    assert a[9:74] != b[9:74]  # a new ephemeral key every time
    assert a[74:86] != b[74:86]  # a new nonce every time
    assert a[86:] != b[86:]


def test_opens_an_envelope_written_from_the_specification(private, public):
    text = "Да, уехал в 2022 году".encode()
    assert crypto.open_sealed(private, reference_seal(public, padded(text, 1024))) == text


def test_the_python_padding_matches_the_specification():
    assert crypto.pad(b"abc") == b"\x00\x00\x00\x03abc" + bytes(1017)


@pytest.mark.parametrize(
    "bad",
    [
        (2000).to_bytes(4, "big") + b"x" * 10 + bytes(1010),  # length beyond the bucket
        padded(b"abc", 1024)[:-1] + b"\x01",  # non-zero fill
    ],
)
def test_malformed_padding_is_refused(private, public, bad):
    with pytest.raises(SealError, match="padding is malformed"):
        crypto.open_sealed(private, reference_seal(public, bad))


def test_unknown_version_is_refused(private, public):
    envelope = reference_seal(public, padded(b"x", 1024), version=2)
    with pytest.raises(SealError, match="format version 2, expected 1"):
        crypto.open_sealed(private, envelope)
    assert not crypto.looks_sealed(envelope, public)


# -- tampering and hostile input --------------------------------------------------


def test_other_key_is_named(public):
    other = ec.generate_private_key(ec.SECP256R1())
    envelope = crypto.seal(public, b"x")
    with pytest.raises(SealError, match=f"sealed to another key \\(key id {envelope[1:9].hex()}"):
        crypto.open_sealed(other, envelope)
    assert not crypto.looks_sealed(envelope, other.public_key())


@pytest.mark.parametrize("position", [9 + 20, 74 + 3, 86, 86 + 500, 1126 - 1])
def test_any_altered_byte_is_detected(private, public, position):
    envelope = bytearray(crypto.seal(public, b"answers"))
    envelope[position] ^= 0x01
    with pytest.raises(SealError, match=r"altered or damaged|another key"):
        crypto.open_sealed(private, bytes(envelope))


def test_altered_key_id_says_another_key(private, public):
    envelope = bytearray(crypto.seal(public, b"answers"))
    envelope[3] ^= 0xFF
    with pytest.raises(SealError, match="another key"):
        crypto.open_sealed(private, bytes(envelope))


def test_ephemeral_point_off_the_curve(private, public):
    envelope = bytearray(crypto.seal(public, b"answers"))
    envelope[10:74] = bytes(64)
    with pytest.raises(SealError, match="altered or damaged"):
        crypto.open_sealed(private, bytes(envelope))


def test_truncated_and_padded_envelopes(private, public):
    envelope = crypto.seal(public, b"answers")
    for broken in (envelope[:-1], envelope + b"\x00", envelope[:86], b""):
        with pytest.raises(SealError, match="not a sealed envelope"):
            crypto.open_sealed(private, broken)
        assert crypto.looks_sealed(broken, public) is False


def test_plaintext_of_envelope_size_is_not_taken_for_an_envelope(public):
    plain = json.dumps({"answers": {"q": "x" * 1200}}).encode()[:1126]
    assert len(plain) == 1126
    assert crypto.looks_sealed(plain, public) is False


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=1200), size=st.sampled_from([None, 1126, 4198]))
def test_garbage_raises_only_seal_error(private, public, data, size):
    if size is not None:  # garbage of exactly an envelope's length, with a plausible header
        data = (b"\x01" + crypto.key_id(public) + b"\x04" + data)[:size].ljust(size, b"\x00")
    with pytest.raises(SealError):
        crypto.open_sealed(private, data)
    assert crypto.looks_sealed(data, public) in (True, False)


@pytest.mark.parametrize("thing", [None, "text", 12, [1, 2], memoryview(b"x" * 1126), object()])
def test_looks_sealed_never_raises(public, thing):
    assert crypto.looks_sealed(thing, public) is False


def test_open_sealed_refuses_what_is_not_bytes(private):
    with pytest.raises(SealError, match="a str, not bytes"):
        crypto.open_sealed(private, "x" * 1126)


# -- keys ---------------------------------------------------------------------------


def test_keypair_files(tmp_path):
    private_pem, public_text = crypto.generate_keypair(PASSPHRASE)
    assert private_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    (tmp_path / "priv.pem").write_bytes(private_pem)
    (tmp_path / "pub.key").write_bytes(public_text)
    private = crypto.load_private_key(tmp_path / "priv.pem", PASSPHRASE)
    public = crypto.load_public_key(tmp_path / "pub.key")
    assert point_of(public) == point_of(private.public_key())
    header, point, *rest = public_text.decode().splitlines()
    assert rest == []
    assert header.endswith(f"key id {hashlib.sha256(point_of(public)).hexdigest()[:16]}")
    assert base64.urlsafe_b64decode(point + "=") == point_of(public)
    assert crypto.browser_key(public) == point
    # without the passphrase the file gives nothing away
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(private_pem, None)


def test_wrong_passphrase(tmp_path):
    (tmp_path / "priv.pem").write_bytes(crypto.generate_keypair(PASSPHRASE)[0])
    with pytest.raises(KeyFileError) as info:
        crypto.load_private_key(tmp_path / "priv.pem", PASSPHRASE + "!")
    assert str(info.value) == f"{tmp_path / 'priv.pem'}: wrong passphrase for this private key"


def test_empty_passphrase_is_refused():
    with pytest.raises(KeyFileError, match="passphrase is empty"):
        crypto.generate_keypair("")


def test_pem_public_key_is_read(tmp_path, public):
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    assert point_of(crypto.load_public_key(tmp_path / "pub.pem")) == point_of(public)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a public key"),
        (b"# volna public key\nAAAA\n", "not a public key"),
        (b"# volna public key\n" + b"B" * 87 + b"\n", "not a public key"),  # not on the curve
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid PEM"),
        (b"\xff\xfe garbage \x00", "not a public key"),
    ],
)
def test_malformed_public_key(tmp_path, content, message):
    path = tmp_path / "pub.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError) as info:
        crypto.load_public_key(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "\n" not in str(info.value)


def test_private_key_given_as_public_is_refused(tmp_path):
    path = tmp_path / "oops.key"
    path.write_bytes(crypto.generate_keypair(PASSPHRASE)[0])
    with pytest.raises(KeyFileError, match="this is a PRIVATE key"):
        crypto.load_public_key(path)


def test_other_curve_is_refused(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "p384.pem").write_bytes(pem)
    with pytest.raises(KeyFileError, match="not a P-256 key"):
        crypto.load_public_key(tmp_path / "p384.pem")


def test_missing_key_files(tmp_path):
    with pytest.raises(KeyFileError, match="no such public key file"):
        crypto.load_public_key(tmp_path / "absent.key")
    with pytest.raises(KeyFileError, match="no such private key file"):
        crypto.load_private_key(tmp_path / "absent.pem", PASSPHRASE)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        (tmp_path / "pub.key").write_bytes(crypto.generate_keypair(PASSPHRASE)[1])
        crypto.load_private_key(tmp_path / "pub.key", PASSPHRASE)


# -- seal.js under node -------------------------------------------------------------

NODE_DRIVER = """
require(process.argv[2]);
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", async () => {
  const job = JSON.parse(input);
  const out = { sealed: [], base64: [], errors: [] };
  for (const text of job.texts) {
    const env = await globalThis.volnaSeal(job.key, new TextEncoder().encode(text));
    out.sealed.push(Buffer.from(env).toString("base64"));
  }
  for (const hex of job.bytes) {
    out.base64.push(globalThis.volnaBase64url(Uint8Array.from(Buffer.from(hex, "hex"))));
  }
  for (const bad of job.bad) {
    try {
      await globalThis.volnaSeal(bad.key, new Uint8Array(bad.size));
      out.errors.push("");
    } catch (e) {
      out.errors.push(String(e.message));
    }
  }
  process.stdout.write(JSON.stringify(out));
});
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node (Node.js) is not installed")
def test_seal_js_envelopes_open_in_python(private, public, tmp_path):
    texts = ["", "yes", "Москва → Тбилиси, 2022 <script>alert(1)</script>", "ж" * 510, "x" * 1021]
    raw = [os.urandom(n) for n in (0, 1, 2, 3, 31, 65)]
    job = {
        "key": crypto.browser_key(public),
        "texts": texts,
        "bytes": [b.hex() for b in raw],
        "bad": [
            {"key": crypto.browser_key(public), "size": 65533},
            {"key": "AAAA", "size": 1},
        ],
    }
    driver = tmp_path / "driver.js"
    driver.write_text(NODE_DRIVER)
    done = subprocess.run(
        ["node", str(driver), str(SEAL_JS)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    for text, sealed in zip(texts, result["sealed"], strict=True):
        envelope = base64.b64decode(sealed)
        assert len(envelope) == (1126 if len(text.encode()) <= 1020 else 4198)
        assert crypto.looks_sealed(envelope, public)
        assert crypto.open_sealed(private, envelope).decode() == text
    assert result["base64"] == [base64.urlsafe_b64encode(b).decode().rstrip("=") for b in raw]
    assert "65533 bytes, more than the 65532" in result["errors"][0]
    assert "not an uncompressed P-256 public key" in result["errors"][1]
